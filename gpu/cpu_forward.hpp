// The engine's CPU forward pass (the CPU twin of the CUDA path): RMSNorm, RoPE (with llama3
// scaling), grouped-query attention over the paged key/value cache (gpu/kv_cache), SwiGLU, the
// output projection; F32 throughout. One call runs a batch of positions of any sequences (the
// prompt chunks and the decode steps of everything running), so each weight matrix is read
// once per batch: every matrix product is batched (gpu/cpu_kernels matmul_rows), split by rows
// over one thread per core. A position's results do not depend on what it is batched with or on
// the thread count. Working memory is allocated when the engine is made, for the largest batch.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "gpu/cpu_kernels.hpp"
#include "gpu/forward_engine.hpp"
#include "gpu/kv_cache.hpp"
#include "gpu/model.hpp"

namespace tollgate::gpu {

class cpu_forward : public forward_engine {
 public:
  // `threads`: for the matrix products (0 = one per core). forward() and the others are used
  // from one thread at a time.
  cpu_forward(const model_weights& weights, engine_limits limits = {}, unsigned threads = 0);
  ~cpu_forward() override;

  const model_config& config() const override { return w_.config; }
  const engine_limits& limits() const override { return limits_; }
  kv_cache& cache() override { return cache_; }
  const char* device() const override { return "cpu"; }
  std::size_t weight_bytes_per_token() const override;
  // One thread per core, each copying its share.
  double measure_copy_bandwidth() const override;
  std::span<const float> forward(std::span<const forward_item> items) override;

 private:
  // y[t][r] = m[r] . x[t] (+ bias[r]) for t < tokens; m is [rows, cols] row-major.
  void matmul(const std::vector<float>& m, const float* x, int tokens, int rows, int cols, float* y,
              const std::vector<float>* bias = nullptr) const;

  const model_weights& w_;
  engine_limits limits_;
  std::vector<double> inv_freq_;
  std::unique_ptr<row_pool> pool_;
  kv_cache cache_;
  // Working memory for max_batch_tokens positions.
  std::vector<float> x_, normed_, q_, k_, v_, attn_, proj_, gate_, up_, scores_, last_, logits_;
};

}  // namespace tollgate::gpu
