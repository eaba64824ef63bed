// Reading and writing the safetensors format (Hugging Face): an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
// Reading checks everything before any tensor is used: the header's JSON, every dtype and
// shape, byte ranges inside the file and matching the shape, no overlaps. Errors name the file
// and the tensor. Tensors are converted to F32 on read (F32, F16 and BF16 are supported).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tollgate::gpu {

enum class dtype { f32, f16, bf16 };

struct tensor_info {
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets into the data section
  std::uint64_t end = 0;
  std::int64_t elements() const;
};

// An error while loading a model: what went wrong, naming the file and the tensor.
struct load_error {
  std::string message;
};
template <class T>
using load_result = basic_result<T, load_error>;

class safetensors_file {
 public:
  // Reads the whole file and checks its header.
  static load_result<safetensors_file> open(const std::string& path);

  const std::map<std::string, tensor_info>& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor as F32, checked to have `shape`.
  load_result<std::vector<float>> read(const std::string& name,
                                       const std::vector<std::int64_t>& shape) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string bytes_;        // the whole file
  std::size_t data_at_ = 0;  // where the data section starts
  std::map<std::string, tensor_info> tensors_;
};

// A tensor to write: F32 values stored as `type`.
struct tensor_to_write {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// Writes `tensors` (in the order given) to `path`; false with `error` set on failure.
bool write_safetensors(const std::string& path, const std::vector<tensor_to_write>& tensors,
                       std::string& error);

// Reads a whole file into `out`; false when it cannot be read.
bool read_file(const std::string& path, std::string& out);

// Conversions, exact for F32 -> BF16 -> F32 round trips of representable values (round to
// nearest even on the way down).
float bf16_to_f32(std::uint16_t v);
std::uint16_t f32_to_bf16(float v);
float f16_to_f32(std::uint16_t v);
std::uint16_t f32_to_f16(float v);

}  // namespace tollgate::gpu
