// The engine's CUDA kernels (gpu/cuda_kernels.cu, built with nvcc when /usr/local/cuda exists):
// RMSNorm, RoPE, SwiGLU, attention over the paged key/value cache, arg-max, and the matrix-vector
// product through cuBLAS; each has a CPU twin in gpu/cpu_kernels.hpp that tests compare it with
// (tests/gpu/cuda_check.cpp, which skips itself without a device). These host functions copy
// their inputs to the device, run one kernel and copy the result back. CUDA errors throw
// std::runtime_error naming the file and line. gpu/cuda_forward.cpp chains the launchers below
// into the forward pass.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

namespace tollgate::gpu::cuda {

// Whether a CUDA device can be used; `why` says why not.
bool device_available(std::string* why);

// `rows` vectors of n values, each normalized with `weight`.
std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& weight, int rows,
                            int n, float eps);
std::vector<float> rope(const std::vector<float>& v, int heads, int head_dim, int position,
                        const std::vector<double>& inv_freq);
std::vector<float> swiglu(const std::vector<float>& gate, const std::vector<float>& up);
// Attention over a paged key/value cache, laid out as gpu/cpu_kernels.hpp's attend() reads it.
std::vector<float> attend(const std::vector<float>& q, const std::vector<float>& keys,
                          const std::vector<float>& values, const std::vector<int>& block_table,
                          std::size_t block_stride, int block_size, int length, int q_heads,
                          int kv_heads, int head_dim);
// y = m x, m [rows, cols] row-major (cuBLAS SGEMV, F32 accumulate).
std::vector<float> matvec(const std::vector<float>& m, const std::vector<float>& x, int rows,
                          int cols);
int argmax(const std::vector<float>& values);

// The same kernels, and the forward pass's small steps, on device memory: launched on `stream`
// without waiting (gpu/cuda_forward.cpp chains them). Launch errors throw as above.
namespace launch {
void rms_norm(const float* x, const float* w, int rows, int n, float eps, float* out,
              cudaStream_t stream);
// Item i of `items` ([items][heads][head_dim]) rotated for position positions[i].
void rope(float* v, int items, int heads, int head_dim, const int* positions,
          const double* inv_freq, cudaStream_t stream);
void swiglu(float* gate, const float* up, std::size_t n, cudaStream_t stream);
// Item i attends over positions [0, positions[i]] of the sequence whose block table begins at
// tables + table_offsets[i]; `keys` and `values` point at the layer's floats of block 0.
void attend(const float* q, const float* keys, const float* values, const int* tables,
            const int* table_offsets, const int* positions, std::size_t block_stride,
            int block_size, int items, int q_heads, int kv_heads, int head_dim, int max_length,
            float* out, cudaStream_t stream);
// The shared memory attend() needs for `max_length` positions.
std::size_t attend_shared_bytes(int max_length);
void embed(const float* table, const int* tokens, int items, int hidden, float* x,
           cudaStream_t stream);
void add_bias(float* y, const float* bias, int rows, int n, cudaStream_t stream);
void add(float* x, const float* y, std::size_t n, cudaStream_t stream);
// F32 to BF16 (`out` holds n __nv_bfloat16).
void to_bf16(const float* x, void* out, std::size_t n, cudaStream_t stream);
// F32 to F16 (`out` holds n __half).
void to_f16(const float* x, void* out, std::size_t n, cudaStream_t stream);
// Item i's key and value to cache float offset slots[i] + layer_offset.
void store_kv(const float* k, const float* v, int items, int kv_dim, const long long* slots,
              std::size_t layer_offset, float* keys, float* values, cudaStream_t stream);
// out[j] = x[rows[j]] for rows of n floats.
void gather_rows(const float* x, const int* rows, int count, int n, float* out,
                 cudaStream_t stream);
}  // namespace launch

}  // namespace tollgate::gpu::cuda
