// A small random model in memory (vocabulary 300, hidden 48, 2 layers, 4 query and 2 key/value
// heads): Llama style, or Qwen3 style with q/k/v biases and q/k norms. For the engine's tests
// (tests/unit/gpu) and the CUDA check (tests/gpu/cuda_check.cpp).
#pragma once
#include <random>
#include <vector>

#include "gpu/model.hpp"

namespace tollgate::test {

inline gpu::model_weights random_model(bool qwen_style) {
  gpu::model_weights w;
  auto& c = w.config;
  c.architecture = qwen_style ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
  c.vocab_size = 300;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 12;
  c.max_position_embeddings = 256;
  c.rope_theta = 10000;
  c.attention_bias = qwen_style;
  c.qk_norm = qwen_style;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  const auto fill = [&](std::vector<float>& v, std::size_t n) {
    v.resize(n);
    for (auto& x : v) x = u(rng);
  };
  const std::size_t h = 48, q = 48, kv = 24, inter = 80;
  fill(w.embed, 300 * h);
  fill(w.final_norm, h);
  fill(w.lm_head, 300 * h);
  w.layers.resize(2);
  for (auto& l : w.layers) {
    fill(l.input_norm, h);
    fill(l.q, q * h);
    fill(l.k, kv * h);
    fill(l.v, kv * h);
    fill(l.o, h * q);
    fill(l.post_norm, h);
    fill(l.gate, inter * h);
    fill(l.up, inter * h);
    fill(l.down, h * inter);
    if (qwen_style) {
      fill(l.q_bias, q);
      fill(l.k_bias, kv);
      fill(l.v_bias, kv);
      fill(l.q_norm, 12);
      fill(l.k_norm, 12);
    }
  }
  return w;
}

}  // namespace tollgate::test
