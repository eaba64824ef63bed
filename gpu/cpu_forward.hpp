// The engine's CPU forward pass (the CPU twin of the CUDA kernels to come): RMSNorm, RoPE
// (with llama3 scaling), grouped-query attention over a sequence's key/value cache, SwiGLU,
// the output projection; F32 throughout. Tokens are fed one position at a time, so prefill and
// decode are the same code path. Dot products use AVX2/FMA where the CPU has them and large
// matrix-vector products are split over one thread per core (gpu/cpu_kernels). Deterministic:
// the same weights and tokens give the same logits, bit for bit, on one machine.
#pragma once
#include <memory>
#include <vector>

#include "gpu/cpu_kernels.hpp"
#include "gpu/model.hpp"

namespace tollgate::gpu {

// One sequence's keys and values, per layer, for positions [0, length).
struct sequence_cache {
  int length = 0;
  int capacity = 0;
  std::vector<std::vector<float>> keys;    // per layer: [capacity][kv_heads * head_dim]
  std::vector<std::vector<float>> values;  // per layer: the same
};

class cpu_forward {
 public:
  // `threads`: for the matrix-vector products (0 = one per core). feed() and the others are
  // used from one thread at a time.
  explicit cpu_forward(const model_weights& weights, unsigned threads = 0);
  ~cpu_forward();

  sequence_cache new_sequence(int capacity) const;
  // Feeds `tokens` after what `seq` holds; returns the logits at the last position ([vocab]).
  // `all_logits`, when given, receives the logits of every fed position, in order.
  std::vector<float> feed(sequence_cache& seq, const std::vector<int>& tokens,
                          std::vector<std::vector<float>>* all_logits = nullptr) const;
  // Greedy decoding: feeds the prompt, then the arg-max token until `max_new` tokens or an eos.
  std::vector<int> generate_greedy(const std::vector<int>& prompt, int max_new) const;

 private:
  std::vector<float> step(sequence_cache& seq, int token) const;
  // y[r] = m[r] . x (+ bias[r]); m is [rows, cols] row-major. Split by rows over the pool.
  void matvec(const std::vector<float>& m, const float* x, int rows, int cols, float* y,
              const std::vector<float>* bias = nullptr) const;

  const model_weights& w_;
  std::vector<double> inv_freq_;
  std::unique_ptr<row_pool> pool_;
};

}  // namespace tollgate::gpu
