// safetensors reading and writing: see safetensors.hpp.
#include "gpu/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::gpu {
namespace {

constexpr std::uint64_t header_bytes_max = 100u * 1024 * 1024;

std::size_t dtype_size(dtype t) {
  return t == dtype::f32 ? 4 : 2;
}

const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32:
      return "F32";
    case dtype::f16:
      return "F16";
    case dtype::bf16:
      return "BF16";
  }
  return "?";
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

}  // namespace

std::int64_t tensor_info::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

float bf16_to_f32(std::uint16_t v) {
  const std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t f32_to_bf16(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<std::uint16_t>((bits >> 16) | 0x40);  // NaN stays NaN
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(std::uint16_t v) {
  const std::uint32_t sign = static_cast<std::uint32_t>(v & 0x8000u) << 16;
  std::uint32_t exponent = (v >> 10) & 0x1fu;
  std::uint32_t mantissa = v & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t f32_to_f16(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::int32_t exponent = static_cast<std::int32_t>((bits >> 23) & 0xffu) - 127 + 15;
  std::uint32_t mantissa = bits & 0x7fffffu;
  if (((bits >> 23) & 0xffu) == 0xffu) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  }
  if (exponent >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow
  if (exponent <= 0) {
    if (exponent < -10) return sign;  // underflow to zero
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into exponent
  return static_cast<std::uint16_t>(sign | half);
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream b;
  b << in.rdbuf();
  out = std::move(b).str();
  return true;
}

load_result<safetensors_file> safetensors_file::open(const std::string& path) {
  safetensors_file f;
  f.path_ = path;
  if (!read_file(path, f.bytes_)) return load_error{path + ": cannot be opened"};
  const std::string& b = f.bytes_;
  if (b.size() < 8) return load_error{path + ": truncated (no header length)"};
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(b[i]);
  if (header_len > header_bytes_max || header_len > b.size() - 8) {
    return load_error{path + ": truncated or corrupt (header of " + std::to_string(header_len) +
                      " bytes in a file of " + std::to_string(b.size()) + ")"};
  }
  f.data_at_ = 8 + header_len;
  const std::string_view header(b.data() + 8, header_len);
  json::parse_error perr;
  const auto doc = json::document::parse(header, &perr);
  if (!doc || !doc->root().is_object()) {
    return load_error{path + ": the header is not a JSON object (" + perr.message + ")"};
  }
  const std::uint64_t data_size = b.size() - f.data_at_;
  std::string error;
  doc->root().for_each_member([&](std::string_view name, json::value v) {
    if (!error.empty() || name == "__metadata__") return;
    const std::string who = path + ": tensor `" + std::string(name) + "`";
    if (!v.is_object()) {
      error = who + " has no description";
      return;
    }
    tensor_info t;
    const json::value type = v.find("dtype");
    const std::string_view type_name = type.valid() && type.is_string() ? type.as_string() : "";
    if (type_name == "F32") {
      t.type = dtype::f32;
    } else if (type_name == "F16") {
      t.type = dtype::f16;
    } else if (type_name == "BF16") {
      t.type = dtype::bf16;
    } else {
      error = who + " has dtype `" + std::string(type_name) + "`; F32, F16 and BF16 are supported";
      return;
    }
    const json::value shape = v.find("shape");
    if (!shape.valid() || !shape.is_array() || shape.size() > 8) {
      error = who + " has no valid shape";
      return;
    }
    std::int64_t elements = 1;
    bool ok = true;
    shape.for_each_element([&](json::value d) {
      if (!d.is_int64() || d.as_int64() < 0 || d.as_int64() > (1ll << 40)) {
        ok = false;
        return;
      }
      t.shape.push_back(d.as_int64());
      if (elements > 0 && d.as_int64() > (1ll << 40) / elements) ok = false;
      elements *= d.as_int64();
    });
    const json::value offsets = v.find("data_offsets");
    if (!ok || !offsets.valid() || !offsets.is_array() || offsets.size() != 2 ||
        !offsets.at(0).is_int64() || !offsets.at(1).is_int64() || offsets.at(0).as_int64() < 0 ||
        offsets.at(1).as_int64() < offsets.at(0).as_int64()) {
      error = who + " has an invalid shape or data_offsets";
      return;
    }
    t.begin = static_cast<std::uint64_t>(offsets.at(0).as_int64());
    t.end = static_cast<std::uint64_t>(offsets.at(1).as_int64());
    if (t.end > data_size) {
      error = who + " lies past the end of the file (truncated?)";
      return;
    }
    if (t.end - t.begin != static_cast<std::uint64_t>(elements) * dtype_size(t.type)) {
      error = who + " has " + std::to_string(t.end - t.begin) + " bytes, but shape " +
              shape_text(t.shape) + " of " + dtype_name(t.type) + " needs " +
              std::to_string(static_cast<std::uint64_t>(elements) * dtype_size(t.type));
      return;
    }
    f.tensors_[std::string(name)] = std::move(t);
  });
  if (!error.empty()) return load_error{error};
  // No two tensors may share bytes.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& [name, t] : f.tensors_) {
    if (t.end > t.begin) ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return load_error{path + ": two tensors overlap in the data section"};
    }
  }
  return f;
}

load_result<std::vector<float>> safetensors_file::read(
    const std::string& name, const std::vector<std::int64_t>& shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) return load_error{path_ + ": tensor `" + name + "` is missing"};
  const tensor_info& t = it->second;
  if (t.shape != shape) {
    return load_error{path_ + ": tensor `" + name + "` has shape " + shape_text(t.shape) +
                      ", expected " + shape_text(shape)};
  }
  std::vector<float> out(static_cast<std::size_t>(t.elements()));
  const char* src = bytes_.data() + data_at_ + t.begin;
  switch (t.type) {
    case dtype::f32:
      std::memcpy(out.data(), src, out.size() * 4);
      break;
    case dtype::f16:
    case dtype::bf16:
      for (std::size_t i = 0; i < out.size(); ++i) {
        std::uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        out[i] = t.type == dtype::f16 ? f16_to_f32(v) : bf16_to_f32(v);
      }
      break;
  }
  return out;
}

bool write_safetensors(const std::string& path, const std::vector<tensor_to_write>& tensors,
                       std::string& error) {
  std::string header = "{";
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const std::uint64_t bytes = t.values.size() * dtype_size(t.type);
    json_object_writer w;
    w.add("dtype", dtype_name(t.type));
    std::string shape = "[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) shape += ",";
      shape += std::to_string(t.shape[d]);
    }
    w.add_raw("shape", shape + "]");
    w.add_raw("data_offsets",
              "[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]");
    if (i) header += ",";
    append_json_string(header, t.name);
    header += ":" + w.finish();
    offset += bytes;
  }
  header += "}";
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');  // aligned data, as writers do
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    error = path + ": cannot be written";
    return false;
  }
  char len[8];
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& t : tensors) {
    if (t.type == dtype::f32) {
      out.write(reinterpret_cast<const char*>(t.values.data()),
                static_cast<std::streamsize>(t.values.size() * 4));
      continue;
    }
    std::vector<std::uint16_t> half(t.values.size());
    for (std::size_t i = 0; i < half.size(); ++i) {
      half[i] = t.type == dtype::bf16 ? f32_to_bf16(t.values[i]) : f32_to_f16(t.values[i]);
    }
    out.write(reinterpret_cast<const char*>(half.data()),
              static_cast<std::streamsize>(half.size() * 2));
  }
  if (!out) {
    error = path + ": write failed";
    return false;
  }
  return true;
}

}  // namespace tollgate::gpu
