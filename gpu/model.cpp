// Model folders: see model.hpp.
#include "gpu/model.hpp"

#include <cmath>
#include <map>
#include <memory>

#include "core/json_dom.hpp"

namespace tollgate::gpu {
namespace {

// Reads an integer field; `required` fields must be present and in [lo, hi].
bool int_field(json::value obj, std::string_view name, int lo, int hi, int& out, std::string& error,
               bool required = true) {
  const json::value v = obj.find(name);
  if (!v.valid() || v.is_null()) {
    if (required) error = "config.json: `" + std::string(name) + "` is missing";
    return !required;
  }
  if (!v.is_int64() || v.as_int64() < lo || v.as_int64() > hi) {
    error = "config.json: `" + std::string(name) + "` must be an integer in [" +
            std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return false;
  }
  out = static_cast<int>(v.as_int64());
  return true;
}

bool number_field(json::value obj, std::string_view name, double& out, std::string& error) {
  const json::value v = obj.find(name);
  if (!v.valid() || v.is_null()) return true;  // keeps the default
  if (!v.is_number()) {
    error = "config.json: `" + std::string(name) + "` must be a number";
    return false;
  }
  out = std::strtod(std::string(v.raw_number()).c_str(), nullptr);
  if (!std::isfinite(out) || out <= 0) {
    error = "config.json: `" + std::string(name) + "` must be positive";
    return false;
  }
  return true;
}

// eos_token_id: an integer or a list of them.
std::vector<int> token_ids(json::value v) {
  std::vector<int> out;
  if (!v.valid()) return out;
  if (v.is_int64()) out.push_back(static_cast<int>(v.as_int64()));
  if (v.is_array()) {
    v.for_each_element([&](json::value e) {
      if (e.is_int64()) out.push_back(static_cast<int>(e.as_int64()));
    });
  }
  return out;
}

}  // namespace

load_result<model_config> parse_model_config(std::string_view config_json,
                                             std::string_view generation_config_json) {
  json::parse_error perr;
  const auto doc = json::document::parse(config_json, &perr);
  if (!doc || !doc->root().is_object()) {
    return load_error{"config.json is not a JSON object (" + perr.message + ")"};
  }
  const json::value root = doc->root();
  model_config c;
  const json::value archs = root.find("architectures");
  if (archs.valid() && archs.is_array() && archs.size() > 0 && archs.at(0).is_string()) {
    c.architecture = std::string(archs.at(0).as_string());
  }
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "Qwen2ForCausalLM" &&
      c.architecture != "Qwen3ForCausalLM") {
    return load_error{"config.json: architecture `" + c.architecture +
                      "` is not supported (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)"};
  }
  std::string e;
  const int big = 1 << 24;
  if (!int_field(root, "vocab_size", 1, big, c.vocab_size, e) ||
      !int_field(root, "hidden_size", 1, 1 << 16, c.hidden_size, e) ||
      !int_field(root, "intermediate_size", 1, 1 << 18, c.intermediate_size, e) ||
      !int_field(root, "num_hidden_layers", 1, 1024, c.num_layers, e) ||
      !int_field(root, "num_attention_heads", 1, 1024, c.num_heads, e)) {
    return load_error{e};
  }
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.hidden_size / c.num_heads;
  c.max_position_embeddings = 2048;
  if (!int_field(root, "num_key_value_heads", 1, 1024, c.num_kv_heads, e, false) ||
      !int_field(root, "head_dim", 2, 1024, c.head_dim, e, false) ||
      !int_field(root, "max_position_embeddings", 1, big, c.max_position_embeddings, e, false)) {
    return load_error{e};
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return load_error{"config.json: num_attention_heads must be a multiple of num_key_value_heads"};
  }
  if (c.head_dim % 2 != 0 || c.head_dim * c.num_heads <= 0) {
    return load_error{"config.json: the head dimension must be even"};
  }
  double eps = c.rms_norm_eps;
  if (!number_field(root, "rms_norm_eps", eps, e) ||
      !number_field(root, "rope_theta", c.rope_theta, e)) {
    return load_error{e};
  }
  c.rms_norm_eps = static_cast<float>(eps);
  const json::value tie = root.find("tie_word_embeddings");
  c.tie_word_embeddings = tie.valid() && tie.is_bool() && tie.as_bool();
  const json::value bias = root.find("attention_bias");
  c.attention_bias =
      c.architecture == "Qwen2ForCausalLM" || (bias.valid() && bias.is_bool() && bias.as_bool());
  c.qk_norm = c.architecture == "Qwen3ForCausalLM";
  const json::value scaling = root.find("rope_scaling");
  if (scaling.valid() && scaling.is_object()) {
    const json::value type =
        scaling.find("rope_type").valid() ? scaling.find("rope_type") : scaling.find("type");
    const std::string_view kind = type.valid() && type.is_string() ? type.as_string() : "";
    if (kind == "llama3") {
      c.rope_llama3 = true;
      if (!number_field(scaling, "factor", c.rope_factor, e) ||
          !number_field(scaling, "low_freq_factor", c.rope_low_freq_factor, e) ||
          !number_field(scaling, "high_freq_factor", c.rope_high_freq_factor, e) ||
          !int_field(scaling, "original_max_position_embeddings", 1, big,
                     c.rope_original_max_position, e, false)) {
        return load_error{"rope_scaling: " + e};
      }
      if (c.rope_high_freq_factor <= c.rope_low_freq_factor) {
        return load_error{"config.json: rope_scaling high_freq_factor must exceed low_freq_factor"};
      }
    } else if (!kind.empty() && kind != "default") {
      return load_error{"config.json: rope_scaling type `" + std::string(kind) +
                        "` is not supported (llama3)"};
    }
  }
  c.bos_token_id = -1;
  if (const json::value bos = root.find("bos_token_id"); bos.valid() && bos.is_int64()) {
    c.bos_token_id = static_cast<int>(bos.as_int64());
  }
  c.eos_token_ids = token_ids(root.find("eos_token_id"));
  if (!generation_config_json.empty()) {
    const auto gen = json::document::parse(generation_config_json, &perr);
    if (!gen || !gen->root().is_object()) {
      return load_error{"generation_config.json is not a JSON object (" + perr.message + ")"};
    }
    auto eos = token_ids(gen->root().find("eos_token_id"));
    if (!eos.empty()) c.eos_token_ids = std::move(eos);
  }
  for (int id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size)
      return load_error{"eos_token_id " + std::to_string(id) + " is outside the vocabulary"};
  }
  return c;
}

std::vector<double> rope_inverse_frequencies(const model_config& c) {
  const int half = c.head_dim / 2;
  std::vector<double> inv(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i) {
    inv[static_cast<std::size_t>(i)] =
        1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
  }
  if (!c.rope_llama3) return inv;
  const double pi = 3.14159265358979323846;
  const double old_len = c.rope_original_max_position;
  const double low_wavelen = old_len / c.rope_low_freq_factor;
  const double high_wavelen = old_len / c.rope_high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * pi / f;
    if (wavelen > low_wavelen) {
      f = f / c.rope_factor;
    } else if (wavelen >= high_wavelen) {  // between the two: a smooth blend
      const double smooth = (old_len / wavelen - c.rope_low_freq_factor) /
                            (c.rope_high_freq_factor - c.rope_low_freq_factor);
      f = (1 - smooth) * f / c.rope_factor + smooth * f;
    }
  }
  return inv;
}

load_result<model_weights> load_model(const std::string& dir) {
  std::string config_text;
  if (!read_file(dir + "/config.json", config_text)) {
    return load_error{dir + "/config.json cannot be read"};
  }
  std::string generation_text;
  read_file(dir + "/generation_config.json", generation_text);  // optional
  auto config = parse_model_config(config_text, generation_text);
  if (!config) return config.error();
  model_weights w;
  w.config = std::move(*config);
  const model_config& c = w.config;

  // Which file holds each tensor: one file, or the shards of an index.
  std::map<std::string, std::string> file_of;
  std::string index_text;
  if (read_file(dir + "/model.safetensors.index.json", index_text)) {
    json::parse_error perr;
    const auto index = json::document::parse(index_text, &perr);
    const json::value map = index ? index->root().find("weight_map") : json::value{};
    if (!map.valid() || !map.is_object()) {
      return load_error{dir + "/model.safetensors.index.json has no weight_map"};
    }
    std::string bad;
    map.for_each_member([&](std::string_view name, json::value file) {
      if (!file.is_string() || file.as_string().find('/') != std::string_view::npos) {
        bad = std::string(name);
        return;
      }
      file_of[std::string(name)] = dir + "/" + std::string(file.as_string());
    });
    if (!bad.empty()) return load_error{"model.safetensors.index.json: bad file for `" + bad + "`"};
  }
  std::map<std::string, std::unique_ptr<safetensors_file>> files;
  const auto read = [&](const std::string& name, std::vector<std::int64_t> shape,
                        std::vector<float>& out) -> std::optional<load_error> {
    const auto mapped = file_of.find(name);
    const std::string path = mapped != file_of.end() ? mapped->second : dir + "/model.safetensors";
    auto& f = files[path];
    if (!f) {
      auto opened = safetensors_file::open(path);
      if (!opened) return opened.error();
      f = std::make_unique<safetensors_file>(std::move(*opened));
    }
    auto values = f->read(name, shape);
    if (!values) return values.error();
    out = std::move(*values);
    return std::nullopt;
  };
  const std::int64_t h = c.hidden_size;
  const std::int64_t q_out = static_cast<std::int64_t>(c.num_heads) * c.head_dim;
  const std::int64_t kv_out = static_cast<std::int64_t>(c.num_kv_heads) * c.head_dim;
  const std::int64_t inter = c.intermediate_size;
  if (auto e = read("model.embed_tokens.weight", {c.vocab_size, h}, w.embed)) return *e;
  if (auto e = read("model.norm.weight", {h}, w.final_norm)) return *e;
  if (!c.tie_word_embeddings) {
    if (auto e = read("lm_head.weight", {c.vocab_size, h}, w.lm_head)) return *e;
  }
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    auto& l = w.layers[static_cast<std::size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    struct item {
      std::string name;
      std::vector<std::int64_t> shape;
      std::vector<float>* out;
    };
    std::vector<item> items = {
        {p + "input_layernorm.weight", {h}, &l.input_norm},
        {p + "self_attn.q_proj.weight", {q_out, h}, &l.q},
        {p + "self_attn.k_proj.weight", {kv_out, h}, &l.k},
        {p + "self_attn.v_proj.weight", {kv_out, h}, &l.v},
        {p + "self_attn.o_proj.weight", {h, q_out}, &l.o},
        {p + "post_attention_layernorm.weight", {h}, &l.post_norm},
        {p + "mlp.gate_proj.weight", {inter, h}, &l.gate},
        {p + "mlp.up_proj.weight", {inter, h}, &l.up},
        {p + "mlp.down_proj.weight", {h, inter}, &l.down},
    };
    if (c.attention_bias) {
      items.push_back({p + "self_attn.q_proj.bias", {q_out}, &l.q_bias});
      items.push_back({p + "self_attn.k_proj.bias", {kv_out}, &l.k_bias});
      items.push_back({p + "self_attn.v_proj.bias", {kv_out}, &l.v_bias});
    }
    if (c.qk_norm) {
      items.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, &l.q_norm});
      items.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, &l.k_norm});
    }
    for (auto& it : items) {
      if (auto e = read(it.name, it.shape, *it.out)) return *e;
    }
  }
  return w;
}

}  // namespace tollgate::gpu
