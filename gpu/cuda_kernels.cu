// The engine's CUDA kernels: see cuda_kernels.hpp.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/cuda_errors.hpp"
#include "gpu/cuda_kernels.hpp"

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

// One thread per (item, head, pair); item i is at positions[i].
__global__ void rope_kernel(float* v, int items, int heads, int head_dim, const int* positions,
                            const double* inv_freq) {
  const int half = head_dim / 2;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= items * heads * half) return;
  const int item = idx / (heads * half);
  const int h = (idx / half) % heads;
  const int i = idx % half;
  const double angle = positions[item] * inv_freq[i];
  const float c = static_cast<float>(cos(angle));
  const float s = static_cast<float>(sin(angle));
  float* x = v + (static_cast<size_t>(item) * heads + h) * head_dim;
  const float a = x[i];
  const float b = x[i + half];
  x[i] = a * c - b * s;
  x[i + half] = b * c + a * s;
}

__global__ void swiglu_kernel(float* gate, const float* up, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

// Position t's keys (values) of kv head kvh in the paged cache (gpu/kv_cache.hpp).
__device__ __forceinline__ size_t paged_at(const int* table, size_t block_stride, int block_size,
                                           int t, int kv_heads, int kvh, int head_dim) {
  return static_cast<size_t>(table[t / block_size]) * block_stride +
         (static_cast<size_t>(t % block_size) * kv_heads + kvh) * head_dim;
}

// One block per (item, query head): item i attends over positions [0, positions[i]] of the
// sequence whose block table starts at tables + table_offsets[i]. The scores are in shared
// memory, then a max and a sum reduction, then each thread accumulates output dimensions.
__global__ void attend_kernel(const float* q, const float* keys, const float* values,
                              const int* tables, const int* table_offsets, const int* positions,
                              size_t block_stride, int block_size, int q_heads, int kv_heads,
                              int head_dim, float* out) {
  extern __shared__ float shared[];
  const int item = blockIdx.x;
  const int h = blockIdx.y;
  const int length = positions[item] + 1;
  const int* table = tables + table_offsets[item];
  float* scores = shared;                   // [length]
  float* reduce = shared + length;          // [blockDim.x]
  const int kvh = h / (q_heads / kv_heads);
  const float scale = rsqrtf(static_cast<float>(head_dim));
  const float* qh = q + (static_cast<size_t>(item) * q_heads + h) * head_dim;
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
  float* o = out + (static_cast<size_t>(item) * q_heads + h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0;
    for (int t = 0; t < length; ++t) {
      acc += scores[t] / total *
             values[paged_at(table, block_stride, block_size, t, kv_heads, kvh, head_dim) + d];
    }
    o[d] = acc;
  }
}

// The forward pass's small steps, one thread per value.
__global__ void embed_kernel(const float* table, const int* tokens, int items, int hidden,
                             float* x) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<size_t>(items) * hidden) return;
  x[i] = table[static_cast<size_t>(tokens[i / hidden]) * hidden + i % hidden];
}

__global__ void add_bias_kernel(float* y, const float* bias, int rows, int n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < static_cast<size_t>(rows) * n) y[i] += bias[i % n];
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* out, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(x[i]);
}

__global__ void to_f16_kernel(const float* x, __half* out, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half(x[i]);
}

// Item i's key and value go to slot slots[i] (+ the layer's offset) of the paged cache.
__global__ void store_kv_kernel(const float* k, const float* v, int items, int kv_dim,
                                const long long* slots, size_t layer_offset, float* keys,
                                float* values) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<size_t>(items) * kv_dim) return;
  const size_t at = static_cast<size_t>(slots[i / kv_dim]) + layer_offset + i % kv_dim;
  keys[at] = k[i];
  values[at] = v[i];
}

__global__ void gather_rows_kernel(const float* x, const int* rows, int count, int n,
                                   float* out) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < static_cast<size_t>(count) * n) {
    out[i] = x[static_cast<size_t>(rows[i / n]) * n + i % n];
  }
}

unsigned blocks_for(size_t n, unsigned threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
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
  device_buffer<int> dp(std::vector<int>{position});
  launch::rope(dv.get(), 1, heads, head_dim, dp.get(), df.get(), nullptr);
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
  device_buffer<int> dt(block_table), offsets(std::vector<int>{0});
  device_buffer<int> positions(std::vector<int>{length - 1});
  launch::attend(dq.get(), dk.get(), dv.get(), dt.get(), offsets.get(), positions.get(),
                 block_stride, block_size, 1, q_heads, kv_heads, head_dim, length, out.get(),
                 nullptr);
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

namespace launch {

void rms_norm(const float* x, const float* w, int rows, int n, float eps, float* out,
              cudaStream_t stream) {
  const int threads = 256;
  rms_norm_kernel<<<rows, threads, threads * sizeof(double), stream>>>(x, w, n, eps, out);
  CUDA_CHECK(cudaGetLastError());
}

void rope(float* v, int items, int heads, int head_dim, const int* positions,
          const double* inv_freq, cudaStream_t stream) {
  const size_t pairs = static_cast<size_t>(items) * heads * (head_dim / 2);
  if (pairs == 0) return;
  rope_kernel<<<blocks_for(pairs, 256), 256, 0, stream>>>(v, items, heads, head_dim, positions,
                                                          inv_freq);
  CUDA_CHECK(cudaGetLastError());
}

void swiglu(float* gate, const float* up, size_t n, cudaStream_t stream) {
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(gate, up, static_cast<int>(n));
  CUDA_CHECK(cudaGetLastError());
}

size_t attend_shared_bytes(int max_length) {
  return (static_cast<size_t>(max_length) + 128) * sizeof(float);
}

void attend(const float* q, const float* keys, const float* values, const int* tables,
            const int* table_offsets, const int* positions, size_t block_stride, int block_size,
            int items, int q_heads, int kv_heads, int head_dim, int max_length, float* out,
            cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(items), static_cast<unsigned>(q_heads));
  attend_kernel<<<grid, 128, attend_shared_bytes(max_length), stream>>>(
      q, keys, values, tables, table_offsets, positions, block_stride, block_size, q_heads,
      kv_heads, head_dim, out);
  CUDA_CHECK(cudaGetLastError());
}

void embed(const float* table, const int* tokens, int items, int hidden, float* x,
           cudaStream_t stream) {
  const size_t n = static_cast<size_t>(items) * hidden;
  embed_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(table, tokens, items, hidden, x);
  CUDA_CHECK(cudaGetLastError());
}

void add_bias(float* y, const float* bias, int rows, int n, cudaStream_t stream) {
  const size_t total = static_cast<size_t>(rows) * n;
  add_bias_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(y, bias, rows, n);
  CUDA_CHECK(cudaGetLastError());
}

void add(float* x, const float* y, size_t n, cudaStream_t stream) {
  add_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

void to_bf16(const float* x, void* out, size_t n, cudaStream_t stream) {
  to_bf16_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, static_cast<__nv_bfloat16*>(out), n);
  CUDA_CHECK(cudaGetLastError());
}

void to_f16(const float* x, void* out, size_t n, cudaStream_t stream) {
  to_f16_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, static_cast<__half*>(out), n);
  CUDA_CHECK(cudaGetLastError());
}

void store_kv(const float* k, const float* v, int items, int kv_dim, const long long* slots,
              size_t layer_offset, float* keys, float* values, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(items) * kv_dim;
  store_kv_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(k, v, items, kv_dim, slots,
                                                          layer_offset, keys, values);
  CUDA_CHECK(cudaGetLastError());
}

void gather_rows(const float* x, const int* rows, int count, int n, float* out,
                 cudaStream_t stream) {
  const size_t total = static_cast<size_t>(count) * n;
  if (total == 0) return;
  gather_rows_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(x, rows, count, n, out);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace launch
}  // namespace tollgate::gpu::cuda
