// The engine's CPU forward pass (the CPU twin of the CUDA kernels to come): RMSNorm, RoPE
// (with llama3 scaling), grouped-query attention over a sequence's key/value cache, SwiGLU,
// the output projection; F32 throughout. Tokens are fed one position at a time, so prefill and
// decode are the same code path. Deterministic: the same weights and tokens give the same
// logits, bit for bit.
#pragma once
#include <vector>

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
  explicit cpu_forward(const model_weights& weights);

  sequence_cache new_sequence(int capacity) const;
  // Feeds `tokens` after what `seq` holds; returns the logits at the last position ([vocab]).
  // `all_logits`, when given, receives the logits of every fed position, in order.
  std::vector<float> feed(sequence_cache& seq, const std::vector<int>& tokens,
                          std::vector<std::vector<float>>* all_logits = nullptr) const;
  // Greedy decoding: feeds the prompt, then the arg-max token until `max_new` tokens or an eos.
  std::vector<int> generate_greedy(const std::vector<int>& prompt, int max_new) const;

 private:
  std::vector<float> step(sequence_cache& seq, int token) const;

  const model_weights& w_;
  std::vector<double> inv_freq_;
};

}  // namespace tollgate::gpu
