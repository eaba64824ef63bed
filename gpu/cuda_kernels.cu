// The engine's CUDA kernels: see cuda_kernels.hpp.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/cuda_kernels.hpp"

#define CUDA_CHECK(call)                                                                    \
  do {                                                                                      \
    const cudaError_t err_ = (call);                                                        \
    if (err_ != cudaSuccess) {                                                              \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) +     \
                               ": " #call ": " + cudaGetErrorString(err_));                 \
    }                                                                                       \
  } while (0)

#define CUBLAS_CHECK(call)                                                                  \
  do {                                                                                      \
    const cublasStatus_t st_ = (call);                                                      \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) +     \
                               ": " #call ": cuBLAS status " + std::to_string(int(st_)));   \
    }                                                                                       \
  } while (0)

namespace tollgate::gpu::cuda {
namespace {

// Device memory for the lifetime of one call.
template <class T>
class device_buffer {
 public:
  explicit device_buffer(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T) + 1)); }
  explicit device_buffer(const std::vector<T>& host) : device_buffer(host.size()) {
    CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~device_buffer() { cudaFree(p_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  T* get() const { return p_; }
  std::vector<T> to_host() const {
    std::vector<T> out(n_);
    CUDA_CHECK(cudaMemcpy(out.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// One block per row; a shared-memory tree reduction of the sum of squares.
__global__ void rms_norm_kernel(const float* x, const float* w, int n, float eps, float* out) {
  extern __shared__ double partial[];
  const float* row = x + static_cast<size_t>(blockIdx.x) * n;
  float* o = out + static_cast<size_t>(blockIdx.x) * n;
  double sum = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += static_cast<double>(row[i]) * row[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(partial[0] / n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (row[i] * scale);
}

// One thread per (head, pair).
__global__ void rope_kernel(float* v, int heads, int head_dim, int position,
                            const double* inv_freq) {
  const int half = head_dim / 2;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= heads * half) return;
  const int h = idx / half;
  const int i = idx % half;
  const double angle = position * inv_freq[i];
  const float c = static_cast<float>(cos(angle));
  const float s = static_cast<float>(sin(angle));
  float* x = v + static_cast<size_t>(h) * head_dim;
  const float a = x[i];
  const float b = x[i + half];
  x[i] = a * c - b * s;
  x[i + half] = b * c + a * s;
}

__global__ void swiglu_kernel(float* gate, const float* up, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

// One block per query head: scores over the cached positions in shared memory, a max and sum
// reduction, then each thread accumulates some output dimensions.
// Position t's keys (values) of kv head kvh in the paged cache (gpu/kv_cache.hpp).
__device__ __forceinline__ size_t paged_at(const int* table, size_t block_stride, int block_size,
                                           int t, int kv_heads, int kvh, int head_dim) {
  return static_cast<size_t>(table[t / block_size]) * block_stride +
         (static_cast<size_t>(t % block_size) * kv_heads + kvh) * head_dim;
}

__global__ void attend_kernel(const float* q, const float* keys, const float* values,
                              const int* table, size_t block_stride, int block_size, int length,
                              int q_heads, int kv_heads, int head_dim, float* out) {
  extern __shared__ float shared[];
  float* scores = shared;              // [length]
  float* reduce = shared + length;     // [blockDim.x]
  const int h = blockIdx.x;
  const int kvh = h / (q_heads / kv_heads);
  const float scale = rsqrtf(static_cast<float>(head_dim));
  const float* qh = q + static_cast<size_t>(h) * head_dim;
  for (int t = threadIdx.x; t < length; t += blockDim.x) {
    const float* kt =
        keys + paged_at(table, block_stride, block_size, t, kv_heads, kvh, head_dim);
    float dot = 0;
    for (int d = 0; d < head_dim; ++d) dot += qh[d] * kt[d];
    scores[t] = dot * scale;
  }
  __syncthreads();
  float best = -FLT_MAX;
  for (int t = threadIdx.x; t < length; t += blockDim.x) best = fmaxf(best, scores[t]);
  reduce[threadIdx.x] = best;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) reduce[threadIdx.x] = fmaxf(reduce[threadIdx.x], reduce[threadIdx.x + s]);
    __syncthreads();
  }
  best = reduce[0];
  __syncthreads();
  float total = 0;
  for (int t = threadIdx.x; t < length; t += blockDim.x) {
    scores[t] = expf(scores[t] - best);
    total += scores[t];
  }
  reduce[threadIdx.x] = total;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) reduce[threadIdx.x] += reduce[threadIdx.x + s];
    __syncthreads();
  }
  total = reduce[0];
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0;
    for (int t = 0; t < length; ++t) {
      acc += scores[t] / total *
             values[paged_at(table, block_stride, block_size, t, kv_heads, kvh, head_dim) + d];
    }
    out[static_cast<size_t>(h) * head_dim + d] = acc;
  }
}

// One block: each thread scans a stride, then a tree reduction keeps the lowest index of the
// largest value (as the CPU's std::max_element does).
__global__ void argmax_kernel(const float* v, int n, int* result) {
  __shared__ float best[256];
  __shared__ int index[256];
  float b = -FLT_MAX;
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    if (v[i] > b) {
      b = v[i];
      bi = i;
    }
  }
  best[threadIdx.x] = b;
  index[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float o = best[threadIdx.x + s];
      const int oi = index[threadIdx.x + s];
      if (o > best[threadIdx.x] || (o == best[threadIdx.x] && oi < index[threadIdx.x])) {
        best[threadIdx.x] = o;
        index[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *result = index[0];
}

}  // namespace

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why != nullptr) {
      *why = err != cudaSuccess ? cudaGetErrorString(err) : std::string("no CUDA device");
    }
    return false;
  }
  return true;
}

std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& weight, int rows,
                            int n, float eps) {
  device_buffer<float> dx(x), dw(weight), out(x.size());
  const int threads = 256;
  rms_norm_kernel<<<rows, threads, threads * sizeof(double)>>>(dx.get(), dw.get(), n, eps,
                                                               out.get());
  CUDA_CHECK(cudaGetLastError());
  return out.to_host();
}

std::vector<float> rope(const std::vector<float>& v, int heads, int head_dim, int position,
                        const std::vector<double>& inv_freq) {
  device_buffer<float> dv(v);
  device_buffer<double> df(inv_freq);
  const int pairs = heads * (head_dim / 2);
  rope_kernel<<<(pairs + 255) / 256, 256>>>(dv.get(), heads, head_dim, position, df.get());
  CUDA_CHECK(cudaGetLastError());
  return dv.to_host();
}

std::vector<float> swiglu(const std::vector<float>& gate, const std::vector<float>& up) {
  device_buffer<float> dg(gate), du(up);
  const int n = static_cast<int>(gate.size());
  swiglu_kernel<<<(n + 255) / 256, 256>>>(dg.get(), du.get(), n);
  CUDA_CHECK(cudaGetLastError());
  return dg.to_host();
}

std::vector<float> attend(const std::vector<float>& q, const std::vector<float>& keys,
                          const std::vector<float>& values, const std::vector<int>& block_table,
                          size_t block_stride, int block_size, int length, int q_heads,
                          int kv_heads, int head_dim) {
  device_buffer<float> dq(q), dk(keys), dv(values), out(static_cast<size_t>(q_heads) * head_dim);
  device_buffer<int> dt(block_table);
  const int threads = 128;
  const size_t shared = (static_cast<size_t>(length) + threads) * sizeof(float);
  attend_kernel<<<q_heads, threads, shared>>>(dq.get(), dk.get(), dv.get(), dt.get(),
                                              block_stride, block_size, length, q_heads,
                                              kv_heads, head_dim, out.get());
  CUDA_CHECK(cudaGetLastError());
  return out.to_host();
}

std::vector<float> matvec(const std::vector<float>& m, const std::vector<float>& x, int rows,
                          int cols) {
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  std::vector<float> result;
  try {
    device_buffer<float> dm(m), dx(x), dy(static_cast<size_t>(rows));
    const float one = 1.0f, zero = 0.0f;
    // Row-major [rows, cols] is column-major [cols, rows]: y = op(A)^T x.
    CUBLAS_CHECK(cublasSgemv(handle, CUBLAS_OP_T, cols, rows, &one, dm.get(), cols, dx.get(), 1,
                             &zero, dy.get(), 1));
    result = dy.to_host();
  } catch (...) {
    cublasDestroy(handle);
    throw;
  }
  cublasDestroy(handle);
  return result;
}

int argmax(const std::vector<float>& values) {
  device_buffer<float> dv(values);
  device_buffer<int> out(1);
  argmax_kernel<<<1, 256>>>(dv.get(), static_cast<int>(values.size()), out.get());
  CUDA_CHECK(cudaGetLastError());
  return out.to_host()[0];
}

}  // namespace tollgate::gpu::cuda
