// CPU kernels for the forward pass: a dot product with AVX2/FMA when the processor has them
// (checked once, at run time; a scalar loop otherwise), RMSNorm, RoPE, SwiGLU and attention
// (the CPU twins of the CUDA kernels), and a pool of threads that splits a matrix-vector product
// by rows (one thread per core, the caller included).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tollgate::gpu {

// sum a[i] * b[i] for i < n.
float dot(const float* a, const float* b, int n);

// Rows [row_begin, row_end) of a matrix product: y[t * y_stride + r] = w[r] . x[t] (+ bias[r])
// for each of `tokens` inputs, w being [rows][cols] row-major and x [tokens][cols]. Each weight
// row is read once for up to four inputs at a time; the arithmetic of one (t, r) is the same
// whatever `tokens` is, so an input's results do not depend on what it is batched with.
void matmul_rows(const float* w, const float* x, int tokens, int cols, int row_begin, int row_end,
                 const float* bias, float* y, int y_stride);

// The CPU twins of the engine's kernels (the CUDA kernels in gpu/cuda_kernels.cu are checked
// against them).
// out = weight * x / sqrt(mean(x^2) + eps) over n values (out may be x).
void rms_norm(const float* x, const float* weight, int n, float eps, float* out);
// Rotates each of `heads` heads in place: pairs (i, i + head_dim/2) by position x inv_freq[i]
// (Hugging Face's rotate_half layout).
void rope(float* v, int heads, int head_dim, int position, const double* inv_freq);
// gate[i] = silu(gate[i]) * up[i].
void swiglu(float* gate, const float* up, int n);
// Attention of one query position over `length` cached positions in a paged cache (see
// gpu/kv_cache.hpp), grouped-query: q is [q_heads][head_dim]; position p's keys are the
// [kv_heads][head_dim] floats at keys + block_table[p / block_size] * block_stride +
// (p % block_size) * kv_heads * head_dim, values alike; out is [q_heads][head_dim]. `scores`
// is scratch of `length` floats. A contiguous cache is one block of `length` positions.
void attend(const float* q, const float* keys, const float* values, const int* block_table,
            std::size_t block_stride, int block_size, int length, int q_heads, int kv_heads,
            int head_dim, float* out, float* scores);
// The index of the largest of v[0..n) (n >= 1), the lowest one on a tie.
int argmax(const float* v, int n);
// Whether dot() uses AVX2/FMA on this machine.
bool simd_enabled();

// Runs fn(begin, end) over [0, rows) in chunks on all threads, returning when every chunk is
// done. Used from one thread at a time (the engine thread).
class row_pool {
 public:
  explicit row_pool(unsigned threads);
  ~row_pool();
  row_pool(const row_pool&) = delete;
  row_pool& operator=(const row_pool&) = delete;

  void run(int rows, const std::function<void(int, int)>& fn);
  // The same, telling fn which thread runs the chunk (0 .. threads() - 1), for per-thread
  // scratch memory.
  void run(int rows, const std::function<void(int, int, unsigned)>& fn);
  unsigned threads() const { return static_cast<unsigned>(workers_.size()) + 1; }

 private:
  void work(unsigned index);
  void take_chunks(unsigned index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  const std::function<void(int, int, unsigned)>* fn_ = nullptr;
  int rows_ = 0;
  int chunk_ = 1;
  std::atomic<int> next_{0};
  int busy_ = 0;  // workers still on the current job
};

}  // namespace tollgate::gpu
