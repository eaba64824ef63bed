// The engine's CUDA kernels (gpu/cuda_kernels.cu, built with nvcc when /usr/local/cuda exists):
// RMSNorm, RoPE, SwiGLU, attention over the paged key/value cache, arg-max, and the matrix-vector
// product through cuBLAS; each has a CPU twin in gpu/cpu_kernels.hpp that tests compare it with
// (tests/gpu/cuda_check.cpp, which skips itself without a device). These host functions copy
// their inputs to the device, run one kernel and copy the result back. CUDA errors throw
// std::runtime_error naming the file and line. The CUDA forward pass that will chain them on
// device memory is not built yet (docs/ENGINE.md).
#pragma once
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

}  // namespace tollgate::gpu::cuda
