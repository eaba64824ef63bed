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
#include "gpu/kv_cache.hpp"
#include "gpu/model.hpp"

namespace tollgate::gpu {

struct engine_limits {
  int max_batch_tokens = 256;  // positions one forward() may run
  int max_logit_rows = 32;     // positions of one forward() that may ask for logits
  int kv_block_size = 16;      // positions per cache block
  int kv_blocks = 0;           // cache blocks (0: as many as kv_cache_mb holds)
  int kv_cache_mb = 256;       // the cache's memory budget, keys and values together
};

// One position to run: `token` at `position` of `seq`, whose blocks must already hold it (the
// scheduler's kv_cache::ensure). A sequence's positions come in order within a batch.
struct forward_item {
  sequence_blocks* seq = nullptr;
  int token = 0;
  int position = 0;
  bool logits = false;  // whether this position's logits are wanted
};

class cpu_forward {
 public:
  // `threads`: for the matrix products (0 = one per core). forward() and the others are used
  // from one thread at a time.
  cpu_forward(const model_weights& weights, engine_limits limits = {}, unsigned threads = 0);
  ~cpu_forward();

  const model_config& config() const { return w_.config; }
  const engine_limits& limits() const { return limits_; }
  kv_cache& cache() { return cache_; }

  // Runs `items` (at most max_batch_tokens, at most max_logit_rows of them asking for logits)
  // and writes their keys and values into the cache. Returns the logits of the items that
  // asked, in item order, [rows][vocab], valid until the next call.
  std::span<const float> forward(std::span<const forward_item> items);

  // For tools and tests, on a sequence of the engine's cache: feeds `tokens` after what `seq`
  // holds, taking blocks as needed, and returns the logits at the last position ([vocab]);
  // `all_logits`, when given, receives those of every fed position. Throws std::length_error
  // when the cache is full.
  std::vector<float> feed(sequence_blocks& seq, const std::vector<int>& tokens,
                          std::vector<std::vector<float>>* all_logits = nullptr);
  // Greedy decoding: feeds the prompt, then the arg-max token until `max_new` tokens or an eos.
  std::vector<int> generate_greedy(const std::vector<int>& prompt, int max_new);

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
