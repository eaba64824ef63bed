// Hugging Face model folders for the bundled engine: config.json (LlamaForCausalLM, including
// llama3 RoPE scaling and tied embeddings; Qwen2ForCausalLM with q/k/v bias; Qwen3ForCausalLM
// with q/k norm), generation_config.json (eos ids), and the weights in model.safetensors or
// shards listed by model.safetensors.index.json. Weights are converted to F32 once, at load.
// Every problem is a load_error naming the file and the field or tensor.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/safetensors.hpp"

namespace tollgate::gpu {

struct model_config {
  std::string architecture;  // LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections have a bias (Qwen2)
  bool qk_norm = false;         // RMSNorm on each head of q and k before RoPE (Qwen3)
  // rope_scaling {"rope_type": "llama3", ...}
  bool rope_llama3 = false;
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int rope_original_max_position = 8192;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
};

// Parses config.json (and generation_config.json when not empty, whose eos ids win).
load_result<model_config> parse_model_config(std::string_view config_json,
                                             std::string_view generation_config_json);

struct layer_weights {
  std::vector<float> input_norm;              // [hidden]
  std::vector<float> q, k, v, o;              // [out, in] row-major, as stored
  std::vector<float> q_bias, k_bias, v_bias;  // empty without attention_bias
  std::vector<float> q_norm, k_norm;          // [head_dim], empty without qk_norm
  std::vector<float> post_norm;               // [hidden]
  std::vector<float> gate, up, down;          // [inter, hidden], [inter, hidden], [hidden, inter]
};

struct model_weights {
  model_config config;
  std::vector<float> embed;       // [vocab, hidden]
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; empty when tied to embed
  std::vector<layer_weights> layers;
  const std::vector<float>& output_matrix() const { return lm_head.empty() ? embed : lm_head; }
};

// Loads a model folder (config.json, generation_config.json if present, the safetensors).
load_result<model_weights> load_model(const std::string& dir);

// The RoPE inverse frequencies of a config (head_dim / 2 of them), llama3 scaling applied.
std::vector<double> rope_inverse_frequencies(const model_config& c);

}  // namespace tollgate::gpu
