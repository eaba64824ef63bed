// The CUDA forward pass: see cuda_forward.hpp.
#include "gpu/cuda_forward.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/cuda_errors.hpp"
#include "gpu/cuda_kernels.hpp"

namespace tollgate::gpu {
namespace {

namespace launch = cuda::launch;

// Device memory owned for the engine's lifetime.
class device_memory {
 public:
  device_memory() = default;
  explicit device_memory(std::size_t bytes) : bytes_(bytes) {
    CUDA_CHECK(cudaMalloc(&p_, std::max<std::size_t>(bytes, 1)));
  }
  device_memory(device_memory&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  device_memory& operator=(device_memory&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~device_memory() {
    if (p_ != nullptr) cudaFree(p_);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

device_memory upload(const void* data, std::size_t bytes) {
  device_memory m(bytes);
  if (bytes > 0) CUDA_CHECK(cudaMemcpy(m.as<void>(), data, bytes, cudaMemcpyHostToDevice));
  return m;
}

device_memory upload(const std::vector<float>& v) {
  return upload(v.data(), v.size() * sizeof(float));
}

// A weight matrix [rows][cols] as cuBLAS reads it.
struct device_matrix {
  device_memory data;
  int rows = 0;
  int cols = 0;
  cuda_weights kind = cuda_weights::f32;
};

cudaDataType data_type(cuda_weights kind) {
  return kind == cuda_weights::bf16  ? CUDA_R_16BF
         : kind == cuda_weights::f16 ? CUDA_R_16F
                                     : CUDA_R_32F;
}

template <class T, class Convert>
device_memory upload_converted(const std::vector<float>& m, Convert convert) {
  std::vector<T> converted(m.size());
  for (std::size_t i = 0; i < m.size(); ++i) converted[i] = convert(m[i]);
  return upload(converted.data(), converted.size() * sizeof(T));
}

device_matrix upload_matrix(const std::vector<float>& m, int rows, int cols, cuda_weights kind,
                            std::size_t& bytes) {
  device_matrix out;
  out.rows = rows;
  out.cols = cols;
  out.kind = kind;
  switch (kind) {
    case cuda_weights::f32:
      out.data = upload(m);
      bytes += m.size() * sizeof(float);
      break;
    case cuda_weights::bf16:
      out.data = upload_converted<__nv_bfloat16>(m, [](float v) { return __float2bfloat16(v); });
      bytes += m.size() * sizeof(__nv_bfloat16);
      break;
    case cuda_weights::f16:
      out.data = upload_converted<__half>(m, [](float v) { return __float2half(v); });
      bytes += m.size() * sizeof(__half);
      break;
  }
  return out;
}

struct device_layer {
  device_memory input_norm, post_norm, q_bias, k_bias, v_bias, q_norm, k_norm;
  device_matrix q, k, v, o, gate, up, down;
};

class cuda_forward final : public forward_engine {
 public:
  cuda_forward(const model_weights& w, const engine_limits& limits, cuda_weights kind)
      : config_(w.config),
        limits_(limits),
        cache_(w.config.num_layers, w.config.num_kv_heads * w.config.head_dim, limits.kv_block_size,
               kv_blocks_for(w.config, limits), /*host_storage=*/false) {
    const auto& c = config_;
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    int shared_max = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&shared_max, cudaDevAttrMaxSharedMemoryPerBlock, device));
    if (launch::attend_shared_bytes(c.max_position_embeddings) >
        static_cast<std::size_t>(shared_max)) {
      throw std::runtime_error("the model's context (" + std::to_string(c.max_position_embeddings) +
                               " positions) needs more shared memory per block than the CUDA "
                               "attention kernel has");
    }
    CUBLAS_CHECK(cublasCreate(&blas_));
    try {
      upload_weights(w, kind);
      allocate_working_memory();
    } catch (...) {
      cublasDestroy(blas_);
      throw;
    }
  }
  ~cuda_forward() override { cublasDestroy(blas_); }

  const model_config& config() const override { return config_; }
  const engine_limits& limits() const override { return limits_; }
  kv_cache& cache() override { return cache_; }
  const char* device() const override { return "cuda"; }
  std::size_t weight_bytes_per_token() const override { return weight_bytes_; }

  // cudaMemcpy from device to device between two 256 MiB buffers, timed with events.
  double measure_copy_bandwidth() const override {
    const std::size_t bytes = std::size_t{256} << 20;
    device_memory from(bytes), to(bytes);
    CUDA_CHECK(cudaMemset(from.as<void>(), 1, bytes));
    cudaEvent_t start = nullptr, stop = nullptr;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<double> rates;
    for (int i = 0; i < 5; ++i) {
      CUDA_CHECK(cudaEventRecord(start));
      CUDA_CHECK(cudaMemcpy(to.as<void>(), from.as<void>(), bytes, cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaEventRecord(stop));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      rates.push_back(2.0 * static_cast<double>(bytes) / (static_cast<double>(ms) / 1e3));
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  }

  std::span<const float> forward(std::span<const forward_item> items) override {
    const int rows_wanted = check_items(items);
    const int n = static_cast<int>(items.size());
    if (n == 0) return {};
    const auto& c = config_;
    const int h = c.hidden_size, hd = c.head_dim, nq = c.num_heads, nkv = c.num_kv_heads;
    const int kv_dim = nkv * hd;

    // The batch's bookkeeping, to the device in one copy each.
    std::vector<int> tokens(n), positions(n), offsets(n), tables, logit_rows;
    std::vector<long long> slots(n);
    int max_length = 1;
    for (int i = 0; i < n; ++i) {
      const auto& it = items[static_cast<std::size_t>(i)];
      tokens[i] = it.token;
      positions[i] = it.position;
      offsets[i] = static_cast<int>(tables.size());
      tables.insert(tables.end(), it.seq->table.begin(), it.seq->table.end());
      const int block = it.seq->table[static_cast<std::size_t>(it.position / cache_.block_size())];
      slots[i] = static_cast<long long>(block) * static_cast<long long>(cache_.block_stride()) +
                 static_cast<long long>(it.position % cache_.block_size()) * kv_dim;
      max_length = std::max(max_length, it.position + 1);
      if (it.logits) logit_rows.push_back(i);
    }
    copy_in(d_tables_, tables);
    copy_in(d_tokens_, tokens);
    copy_in(d_positions_, positions);
    copy_in(d_offsets_, offsets);
    CUDA_CHECK(cudaMemcpy(d_slots_.as<void>(), slots.data(), slots.size() * sizeof(long long),
                          cudaMemcpyHostToDevice));
    copy_in(d_logit_rows_, logit_rows);

    float* x = x_.as<float>();
    float* normed = normed_.as<float>();
    launch::embed(embed_.as<float>(), d_tokens_.as<int>(), n, h, x, nullptr);
    for (int li = 0; li < c.num_layers; ++li) {
      const device_layer& l = layers_[static_cast<std::size_t>(li)];
      launch::rms_norm(x, l.input_norm.as<float>(), n, h, c.rms_norm_eps, normed, nullptr);
      matmul(l.q, normed, n, q_.as<float>(), l.q_bias);
      matmul(l.k, normed, n, k_.as<float>(), l.k_bias);
      matmul(l.v, normed, n, v_.as<float>(), l.v_bias);
      if (c.qk_norm) {
        launch::rms_norm(q_.as<float>(), l.q_norm.as<float>(), n * nq, hd, c.rms_norm_eps,
                         q_.as<float>(), nullptr);
        launch::rms_norm(k_.as<float>(), l.k_norm.as<float>(), n * nkv, hd, c.rms_norm_eps,
                         k_.as<float>(), nullptr);
      }
      launch::rope(q_.as<float>(), n, nq, hd, d_positions_.as<int>(), inv_freq_.as<double>(),
                   nullptr);
      launch::rope(k_.as<float>(), n, nkv, hd, d_positions_.as<int>(), inv_freq_.as<double>(),
                   nullptr);
      // Every position's key and value are stored before any attends (a prompt chunk's later
      // positions see its earlier ones).
      const std::size_t layer_offset = cache_.layer_stride() * static_cast<std::size_t>(li);
      launch::store_kv(k_.as<float>(), v_.as<float>(), n, kv_dim, d_slots_.as<long long>(),
                       layer_offset, keys_.as<float>(), values_.as<float>(), nullptr);
      launch::attend(q_.as<float>(), keys_.as<float>() + layer_offset,
                     values_.as<float>() + layer_offset, d_tables_.as<int>(), d_offsets_.as<int>(),
                     d_positions_.as<int>(), cache_.block_stride(), cache_.block_size(), n, nq, nkv,
                     hd, max_length, attn_.as<float>(), nullptr);
      matmul(l.o, attn_.as<float>(), n, proj_.as<float>(), {});
      launch::add(x, proj_.as<float>(), static_cast<std::size_t>(n) * h, nullptr);
      launch::rms_norm(x, l.post_norm.as<float>(), n, h, c.rms_norm_eps, normed, nullptr);
      matmul(l.gate, normed, n, gate_.as<float>(), {});
      matmul(l.up, normed, n, up_.as<float>(), {});
      launch::swiglu(gate_.as<float>(), up_.as<float>(),
                     static_cast<std::size_t>(n) * c.intermediate_size, nullptr);
      matmul(l.down, gate_.as<float>(), n, proj_.as<float>(), {});
      launch::add(x, proj_.as<float>(), static_cast<std::size_t>(n) * h, nullptr);
    }
    // Only the positions that asked go through the final norm and the output projection.
    const int rows = rows_wanted;
    if (rows == 0) {
      CUDA_CHECK(cudaDeviceSynchronize());
      return {};
    }
    launch::gather_rows(x, d_logit_rows_.as<int>(), rows, h, last_.as<float>(), nullptr);
    launch::rms_norm(last_.as<float>(), final_norm_.as<float>(), rows, h, c.rms_norm_eps, normed,
                     nullptr);
    matmul(output_, normed, rows, logits_.as<float>(), {});
    const std::size_t count = static_cast<std::size_t>(rows) * c.vocab_size;
    CUDA_CHECK(cudaMemcpy(logits_host_.data(), logits_.as<float>(), count * sizeof(float),
                          cudaMemcpyDeviceToHost));
    return {logits_host_.data(), count};
  }

 private:
  void upload_weights(const model_weights& w, cuda_weights kind) {
    const auto& c = config_;
    const int h = c.hidden_size, hd = c.head_dim;
    std::size_t& bytes = weight_bytes_;
    embed_ = upload(w.embed);
    bytes += static_cast<std::size_t>(h) * sizeof(float);  // one embedding row per token
    final_norm_ = upload(w.final_norm);
    bytes += w.final_norm.size() * sizeof(float);
    output_ = upload_matrix(w.output_matrix(), c.vocab_size, h, kind, bytes);
    inv_freq_ = [&] {
      const auto inv = rope_inverse_frequencies(c);
      return upload(inv.data(), inv.size() * sizeof(double));
    }();
    for (const auto& l : w.layers) {
      device_layer d;
      for (const auto* v :
           {&l.input_norm, &l.post_norm, &l.q_bias, &l.k_bias, &l.v_bias, &l.q_norm, &l.k_norm}) {
        bytes += v->size() * sizeof(float);
      }
      d.input_norm = upload(l.input_norm);
      d.post_norm = upload(l.post_norm);
      d.q_bias = upload(l.q_bias);
      d.k_bias = upload(l.k_bias);
      d.v_bias = upload(l.v_bias);
      d.q_norm = upload(l.q_norm);
      d.k_norm = upload(l.k_norm);
      d.q = upload_matrix(l.q, c.num_heads * hd, h, kind, bytes);
      d.k = upload_matrix(l.k, c.num_kv_heads * hd, h, kind, bytes);
      d.v = upload_matrix(l.v, c.num_kv_heads * hd, h, kind, bytes);
      d.o = upload_matrix(l.o, h, c.num_heads * hd, kind, bytes);
      d.gate = upload_matrix(l.gate, c.intermediate_size, h, kind, bytes);
      d.up = upload_matrix(l.up, c.intermediate_size, h, kind, bytes);
      d.down = upload_matrix(l.down, h, c.intermediate_size, kind, bytes);
      layers_.push_back(std::move(d));
    }
  }

  void allocate_working_memory() {
    const auto& c = config_;
    const std::size_t t = static_cast<std::size_t>(limits_.max_batch_tokens);
    const std::size_t r = static_cast<std::size_t>(limits_.max_logit_rows);
    const std::size_t f = sizeof(float);
    const std::size_t widest = static_cast<std::size_t>(
        std::max({c.hidden_size, c.num_heads * c.head_dim, c.intermediate_size}));
    x_ = device_memory(t * c.hidden_size * f);
    normed_ = device_memory(t * c.hidden_size * f);
    q_ = device_memory(t * c.num_heads * c.head_dim * f);
    k_ = device_memory(t * c.num_kv_heads * c.head_dim * f);
    v_ = device_memory(t * c.num_kv_heads * c.head_dim * f);
    attn_ = device_memory(t * c.num_heads * c.head_dim * f);
    proj_ = device_memory(t * c.hidden_size * f);
    gate_ = device_memory(t * c.intermediate_size * f);
    up_ = device_memory(t * c.intermediate_size * f);
    half_input_ = device_memory(t * widest * sizeof(__nv_bfloat16));  // BF16 or F16 input
    last_ = device_memory(r * c.hidden_size * f);
    logits_ = device_memory(r * c.vocab_size * f);
    logits_host_.resize(r * c.vocab_size);
    d_tokens_ = device_memory(t * sizeof(int));
    d_positions_ = device_memory(t * sizeof(int));
    d_offsets_ = device_memory(t * sizeof(int));
    d_slots_ = device_memory(t * sizeof(long long));
    d_logit_rows_ = device_memory(r * sizeof(int));
    // Each position's block table: at most the context's blocks.
    const std::size_t table_max =
        static_cast<std::size_t>(cache_.blocks_for(std::max(1, c.max_position_embeddings)));
    d_tables_ = device_memory(t * table_max * sizeof(int));
    keys_ = device_memory(cache_.bytes() / 2);
    values_ = device_memory(cache_.bytes() / 2);
  }

  static void copy_in(device_memory& to, const std::vector<int>& from) {
    if (from.empty()) return;
    CUDA_CHECK(
        cudaMemcpy(to.as<void>(), from.data(), from.size() * sizeof(int), cudaMemcpyHostToDevice));
  }

  // y[n][rows] = x[n][cols] m^T (+ bias): row-major m is column-major [cols x rows], so
  // y^T = op_T(m) x^T with F32 accumulation; BF16 and F16 matrices take the input in their
  // type.
  void matmul(const device_matrix& m, const float* x, int n, float* y, const device_memory& bias) {
    const float one = 1.0f, zero = 0.0f;
    const void* input = x;
    const std::size_t count = static_cast<std::size_t>(n) * m.cols;
    if (m.kind == cuda_weights::bf16) {
      launch::to_bf16(x, half_input_.as<void>(), count, nullptr);
      input = half_input_.as<void>();
    } else if (m.kind == cuda_weights::f16) {
      launch::to_f16(x, half_input_.as<void>(), count, nullptr);
      input = half_input_.as<void>();
    }
    const cudaDataType type = data_type(m.kind);
    CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, m.rows, n, m.cols, &one,
                              m.data.as<void>(), type, m.cols, input, type, m.cols, &zero, y,
                              CUDA_R_32F, m.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias.bytes() >= static_cast<std::size_t>(m.rows) * sizeof(float)) {  // none: 0 bytes
      launch::add_bias(y, bias.as<float>(), n, m.rows, nullptr);
    }
  }

  model_config config_;
  engine_limits limits_;
  kv_cache cache_;
  cublasHandle_t blas_ = nullptr;
  std::size_t weight_bytes_ = 0;
  device_memory embed_, final_norm_, inv_freq_;
  device_matrix output_;
  std::vector<device_layer> layers_;
  device_memory x_, normed_, q_, k_, v_, attn_, proj_, gate_, up_, half_input_, last_, logits_;
  device_memory d_tokens_, d_positions_, d_offsets_, d_slots_, d_logit_rows_, d_tables_;
  device_memory keys_, values_;
  std::vector<float> logits_host_;
};

}  // namespace

std::unique_ptr<forward_engine> make_cuda_forward(const model_weights& weights,
                                                  const engine_limits& limits,
                                                  cuda_weights matrices) {
  return std::make_unique<cuda_forward>(weights, limits, matrices);
}

}  // namespace tollgate::gpu
