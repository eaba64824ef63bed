// tollgate-infer: the bundled inference engine's command line:
//   tollgate-infer make-model --preset tiny|small --tokenizer FILE --out DIR
//                  [--arch llama|qwen2|qwen3] [--dtype f32|bf16|f16] [--seed N]
//       writes a deterministic random model in Hugging Face's format (config.json,
//       model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json)
//   tollgate-infer logits --model DIR --ids 1,2,3 --out FILE [--threads N] [--timing]
//       runs the forward pass and writes every position's logits as raw little-endian F32
//   tollgate-infer generate --model DIR --ids 1,2,3 --max-tokens N [--threads N] [--timing]
//                  [--warm 1,2,3]
//       greedy decoding; prints the generated ids, comma-separated
//   tollgate-infer serve --model DIR [--listen 127.0.0.1:8000] [--name NAME]
//                  [--max-sequences N] [--threads N] [--engine-threads N]
//                  [--kv-cache-mb N | --kv-blocks N] [--kv-block-size N] [--max-batch-tokens N]
//                  [--prefix-cache on|off] [--prefix-cache-blocks N]
//       the OpenAI-compatible server (gpu/infer_server.hpp)
//   tollgate-infer bench-decode --model DIR [--streams 1,4,16,32] [--tokens N] [--runs N]
//       decode tokens/s at each number of concurrent streams, and the memory-bandwidth bound
//       (gpu/decode_bench.hpp)
//   tollgate-infer bench-prefix --model DIR [--system-tokens 2000] [--requests 4]
//                  [--mixed-requests 24] [--threads N]
//       time to first token and prefill throughput with a shared system prompt, the prefix
//       cache off and on, and the hit rate of a mixed workload (gpu/prefix_bench.hpp)
// Those that run the model take --device auto|cpu|cuda (auto: CUDA when this build has it and
// a device is there, else the CPU) and --cuda-weights bf16|f16|f32 (the matrices on the device).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "gpu/cpu_forward.hpp"
#ifdef TOLLGATE_HAVE_CUDA
#include "gpu/cuda_forward.hpp"
#include "gpu/cuda_kernels.hpp"
#endif
#include "gpu/decode_bench.hpp"
#include "gpu/infer_server.hpp"
#include "gpu/model.hpp"
#include "gpu/prefix_bench.hpp"
#include "gpu/safetensors.hpp"

using namespace tollgate;
using namespace tollgate::gpu;

namespace {

int usage() {
  std::fprintf(
      stderr,
      "usage: tollgate-infer make-model --preset tiny|small --tokenizer FILE --out DIR\n"
      "                      [--arch llama|qwen2|qwen3] [--dtype f32|bf16|f16] [--seed N]\n"
      "       tollgate-infer logits --model DIR --ids 1,2,3 --out FILE\n"
      "       tollgate-infer generate --model DIR --ids 1,2,3 --max-tokens N [--warm 1,2]\n"
      "       tollgate-infer serve --model DIR [--listen HOST:PORT] [--name NAME]\n"
      "                      [--max-sequences N] [--threads N] [--engine-threads N]\n"
      "                      [--kv-cache-mb N | --kv-blocks N] [--kv-block-size N]\n"
      "                      [--max-batch-tokens N] [--prefix-cache on|off]\n"
      "                      [--prefix-cache-blocks N]\n"
      "       tollgate-infer bench-decode --model DIR [--streams 1,4,16,32] [--tokens N]\n"
      "                      [--runs N] [--threads N]\n"
      "       tollgate-infer bench-prefix --model DIR [--system-tokens 2000] [--requests 4]\n"
      "                      [--mixed-requests 24] [--threads N]\n"
      "       (logits, generate, serve, bench-decode and bench-prefix also take --device\n"
      "        auto|cpu|cuda and --cuda-weights bf16|f16|f32)\n");
  return 2;
}

std::string flag(std::vector<std::string>& args, const std::string& name,
                 const std::string& fallback) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) {
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return v;
    }
  }
  return fallback;
}

bool parse_ids(const std::string& text, std::vector<int>& out) {
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (part.empty()) return false;
    char* end = nullptr;
    const long v = std::strtol(part.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > (1 << 24)) return false;
    out.push_back(static_cast<int>(v));
  }
  return !out.empty();
}

// splitmix64: a small, seedable generator, so a preset and a seed always give the same model.
struct random_source {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-a, a].
  float uniform(float a) {
    return static_cast<float>((static_cast<double>(next() >> 11) / 9007199254740992.0 * 2 - 1) * a);
  }
};

struct tokenizer_facts {
  int vocab_size = 0;
  int bos = -1;
  std::vector<int> eos;
  std::string bos_text, eos_text;
};

// The vocabulary size (largest id + 1) and the special tokens that begin and end turns.
bool inspect_tokenizer(const std::string& text, tokenizer_facts& f) {
  const auto doc = json::document::parse(text);
  if (!doc || !doc->root().is_object()) return false;
  const json::value vocab =
      doc->root().find("model").valid() ? doc->root().find("model").find("vocab") : json::value{};
  if (!vocab.valid() || !vocab.is_object()) return false;
  int max_id = -1;
  vocab.for_each_member([&](std::string_view, json::value id) {
    if (id.is_int64()) max_id = std::max<int>(max_id, static_cast<int>(id.as_int64()));
  });
  const json::value added = doc->root().find("added_tokens");
  if (added.valid() && added.is_array()) {
    added.for_each_element([&](json::value t) {
      const json::value id = t.find("id");
      const json::value content = t.find("content");
      if (!id.valid() || !id.is_int64() || !content.valid() || !content.is_string()) return;
      const int i = static_cast<int>(id.as_int64());
      max_id = std::max(max_id, i);
      const std::string_view c = content.as_string();
      if (c == "<|begin_of_text|>") {
        f.bos = i;
        f.bos_text = std::string(c);
      }
      if (c == "<|eot_id|>" || c == "<|end_of_text|>" || c == "<|im_end|>" ||
          c == "<|endoftext|>") {
        f.eos.push_back(i);
        if (f.eos_text.empty()) f.eos_text = std::string(c);
      }
    });
  }
  f.vocab_size = max_id + 1;
  return f.vocab_size > 0;
}

int make_model(std::vector<std::string> args) {
  const std::string preset = flag(args, "--preset", "tiny");
  const std::string tokenizer = flag(args, "--tokenizer", "");
  const std::string out = flag(args, "--out", "");
  const std::string arch = flag(args, "--arch", "llama");
  const std::string type = flag(args, "--dtype", "f32");
  const std::uint64_t seed = std::strtoull(flag(args, "--seed", "1").c_str(), nullptr, 10);
  if (!args.empty() || tokenizer.empty() || out.empty() ||
      (preset != "tiny" && preset != "small") ||
      (arch != "llama" && arch != "qwen2" && arch != "qwen3") ||
      (type != "f32" && type != "bf16" && type != "f16")) {
    return usage();
  }
  std::string tokenizer_text;
  tokenizer_facts facts;
  if (!read_file(tokenizer, tokenizer_text) || !inspect_tokenizer(tokenizer_text, facts)) {
    std::fprintf(stderr, "tollgate-infer: %s is not a tokenizer.json\n", tokenizer.c_str());
    return 1;
  }
  const bool tiny = preset == "tiny";
  // With Llama 3's 128k vocabulary: tiny is about 16M parameters (Llama, untied; the two
  // vocabulary matrices are nearly all of it), small about 110M.
  const int hidden = tiny ? 64 : 384;
  const int layers = tiny ? 2 : 8;
  const int heads = tiny ? 4 : 6;
  const int kv_heads = 2;
  const int inter = tiny ? 160 : 1024;
  const int head_dim = hidden / heads;
  const bool llama = arch == "llama";
  const dtype dt = type == "bf16" ? dtype::bf16 : type == "f16" ? dtype::f16 : dtype::f32;

  json_object_writer config;
  config.add_raw("architectures", llama             ? "[\"LlamaForCausalLM\"]"
                                  : arch == "qwen2" ? "[\"Qwen2ForCausalLM\"]"
                                                    : "[\"Qwen3ForCausalLM\"]");
  config.add("model_type", llama             ? "llama"
                           : arch == "qwen2" ? "qwen2"
                                             : "qwen3")
      .add("vocab_size", facts.vocab_size)
      .add("hidden_size", hidden)
      .add("intermediate_size", inter)
      .add("num_hidden_layers", layers)
      .add("num_attention_heads", heads)
      .add("num_key_value_heads", kv_heads)
      .add("head_dim", head_dim)
      .add("max_position_embeddings", 4096)
      .add_raw("rms_norm_eps", "1e-05")
      .add_raw("rope_theta", llama ? "500000.0" : "1000000.0")
      .add("tie_word_embeddings", !llama)
      .add("torch_dtype", type == "bf16"  ? "bfloat16"
                          : type == "f16" ? "float16"
                                          : "float32");
  if (llama) {
    config.add_raw("rope_scaling",
                   "{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
                   "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}");
  }
  if (facts.bos >= 0) config.add("bos_token_id", facts.bos);
  if (!facts.eos.empty()) config.add("eos_token_id", facts.eos.front());

  random_source rng{seed * 0x2545f4914f6cdd1dull + 1};
  std::vector<tensor_to_write> tensors;
  const auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float scale,
                       float offset = 0) {
    tensor_to_write t;
    t.name = name;
    t.type = dt;
    t.shape = std::move(shape);
    std::int64_t n = 1;
    for (auto d : t.shape) n *= d;
    t.values.resize(static_cast<std::size_t>(n));
    for (auto& v : t.values) v = offset + rng.uniform(scale);
    tensors.push_back(std::move(t));
  };
  const float w = tiny ? 0.15f : 0.04f;
  add("model.embed_tokens.weight", {facts.vocab_size, hidden}, 1.0f);
  for (int i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {hidden}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {heads * head_dim, hidden}, w);
    add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden}, w);
    add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden}, w);
    add(p + "self_attn.o_proj.weight", {hidden, heads * head_dim}, w);
    if (arch == "qwen2") {
      add(p + "self_attn.q_proj.bias", {heads * head_dim}, 0.1f);
      add(p + "self_attn.k_proj.bias", {kv_heads * head_dim}, 0.1f);
      add(p + "self_attn.v_proj.bias", {kv_heads * head_dim}, 0.1f);
    }
    if (arch == "qwen3") {
      add(p + "self_attn.q_norm.weight", {head_dim}, 0.1f, 1.0f);
      add(p + "self_attn.k_norm.weight", {head_dim}, 0.1f, 1.0f);
    }
    add(p + "post_attention_layernorm.weight", {hidden}, 0.1f, 1.0f);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, w);
    add(p + "mlp.up_proj.weight", {inter, hidden}, w);
    add(p + "mlp.down_proj.weight", {hidden, inter}, w);
  }
  add("model.norm.weight", {hidden}, 0.1f, 1.0f);
  if (llama) add("lm_head.weight", {facts.vocab_size, hidden}, w);

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  std::string error;
  if (!write_safetensors(out + "/model.safetensors", tensors, error)) {
    std::fprintf(stderr, "tollgate-infer: %s\n", error.c_str());
    return 1;
  }
  json_object_writer generation;
  if (facts.bos >= 0) generation.add("bos_token_id", facts.bos);
  std::string eos = "[";
  for (std::size_t i = 0; i < facts.eos.size(); ++i)
    eos += (i ? "," : "") + std::to_string(facts.eos[i]);
  generation.add_raw("eos_token_id", eos + "]");
  json_object_writer tok_config;
  tok_config.add("tokenizer_class", "PreTrainedTokenizerFast")
      .add("chat_template_family", llama ? "llama3" : "chatml");
  if (!facts.bos_text.empty()) tok_config.add("bos_token", facts.bos_text);
  if (!facts.eos_text.empty()) tok_config.add("eos_token", facts.eos_text);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"config.json", config.finish() + "\n"},
      {"generation_config.json", generation.finish() + "\n"},
      {"tokenizer_config.json", tok_config.finish() + "\n"},
      {"tokenizer.json", tokenizer_text}};
  for (const auto& [name, text] : files) {
    std::ofstream f(out + "/" + name, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) {
      std::fprintf(stderr, "tollgate-infer: cannot write %s/%s\n", out.c_str(), name.c_str());
      return 1;
    }
  }
  std::int64_t params = 0;
  for (const auto& t : tensors) params += static_cast<std::int64_t>(t.values.size());
  std::printf("{\"out\":\"%s\",\"parameters\":%lld,\"vocab_size\":%d}\n", out.c_str(),
              static_cast<long long>(params), facts.vocab_size);
  return 0;
}

// --device auto|cpu|cuda and --cuda-weights bf16|f16|f32 (every command that runs the model): how
// to make the forward pass. nullopt for a bad value.
using engine_maker =
    std::function<std::unique_ptr<forward_engine>(const model_weights&, const engine_limits&)>;

std::optional<engine_maker> engine_option(std::vector<std::string>& args, unsigned threads) {
  const std::string device = flag(args, "--device", "auto");
  const std::string weights = flag(args, "--cuda-weights", "bf16");
  if ((device != "auto" && device != "cpu" && device != "cuda") ||
      (weights != "bf16" && weights != "f16" && weights != "f32")) {
    return std::nullopt;
  }
  return engine_maker([device, weights, threads](const model_weights& w,
                                                 const engine_limits& limits)
                          -> std::unique_ptr<forward_engine> {
#ifdef TOLLGATE_HAVE_CUDA
    std::string why;
    if (device == "cuda" || (device == "auto" && cuda::device_available(&why))) {
      if (device == "cuda" && !cuda::device_available(&why)) {
        throw std::runtime_error("--device cuda: " + why);
      }
      try {
        return make_cuda_forward(w, limits,
                                 weights == "f32"   ? cuda_weights::f32
                                 : weights == "f16" ? cuda_weights::f16
                                                    : cuda_weights::bf16);
      } catch (const std::exception& e) {
        if (device == "cuda") throw;
        std::fprintf(stderr, "tollgate-infer: CUDA unusable (%s); running on the CPU\n",
                     e.what());
      }
    }
#else
    if (device == "cuda") {
      throw std::runtime_error("--device cuda: this tollgate-infer was built without CUDA");
    }
#endif
    return std::make_unique<cpu_forward>(w, limits, threads);
  });
}

int run_model(const std::string& command, std::vector<std::string> args) {
  const std::string dir = flag(args, "--model", "");
  const std::string ids_text = flag(args, "--ids", "");
  // generate --warm IDS: generates from IDS first, through the prefix cache, so that --ids
  // can reuse the blocks they share (the cached count goes to stderr as JSON).
  const std::string warm_text = flag(args, "--warm", "");
  const std::string out = flag(args, "--out", "");
  const int max_tokens = std::atoi(flag(args, "--max-tokens", "16").c_str());
  const unsigned threads = static_cast<unsigned>(std::atoi(flag(args, "--threads", "0").c_str()));
  // --timing: the forward pass's wall time on stderr as JSON (for tests/bench/engine_bench.mjs).
  const bool timing = std::find(args.begin(), args.end(), "--timing") != args.end();
  if (timing) args.erase(std::find(args.begin(), args.end(), "--timing"));
  const auto make_engine = engine_option(args, threads);
  std::vector<int> ids, warm;
  if (!make_engine || !args.empty() || dir.empty() || !parse_ids(ids_text, ids) || max_tokens < 1 ||
      (command == "logits" && out.empty()) ||
      (!warm_text.empty() && (command != "generate" || !parse_ids(warm_text, warm)))) {
    return usage();
  }
  auto model = load_model(dir);
  if (!model) {
    std::fprintf(stderr, "tollgate-infer: %s\n", model.error().message.c_str());
    return 1;
  }
  for (const auto* list : {&warm, &ids}) {
    for (int id : *list) {
      if (id >= model->config.vocab_size) {
        std::fprintf(stderr, "tollgate-infer: token id %d is outside the vocabulary (%d)\n", id,
                     model->config.vocab_size);
        return 1;
      }
    }
  }
  // A cache just big enough for this one sequence.
  engine_limits limits;
  limits.kv_blocks =
      static_cast<int>(std::max(ids.size(), warm.size()) + static_cast<std::size_t>(max_tokens)) /
          limits.kv_block_size +
      1;
  std::unique_ptr<forward_engine> engine_owner;
  try {
    engine_owner = (*make_engine)(*model, limits);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate-infer: %s\n", e.what());
    return 1;
  }
  forward_engine& engine = *engine_owner;
  const auto started = std::chrono::steady_clock::now();
  const auto report = [&](std::size_t tokens) {
    if (!timing) return;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    std::fprintf(stderr, "{\"forward_us\":%lld,\"tokens\":%zu,\"simd\":%s,\"device\":\"%s\"}\n",
                 static_cast<long long>(us), tokens, simd_enabled() ? "true" : "false",
                 engine.device());
  };
  if (command == "generate") {
    int cached = 0;
    if (!warm.empty()) engine.generate_greedy(warm, max_tokens);
    const auto generated = engine.generate_greedy(ids, max_tokens, &cached);
    report(generated.size());
    if (!warm.empty()) std::fprintf(stderr, "{\"cached_tokens\":%d}\n", cached);
    std::string line;
    for (std::size_t i = 0; i < generated.size(); ++i)
      line += (i ? "," : "") + std::to_string(generated[i]);
    std::printf("%s\n", line.c_str());
    return 0;
  }
  sequence_blocks seq;
  std::vector<std::vector<float>> all;
  engine.feed(seq, ids, &all);
  report(ids.size());
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  for (const auto& row : all) {
    f.write(reinterpret_cast<const char*>(row.data()),
            static_cast<std::streamsize>(row.size() * 4));
  }
  if (!f) {
    std::fprintf(stderr, "tollgate-infer: cannot write %s\n", out.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "make-model") return make_model(std::move(args));
  if (command == "logits" || command == "generate") return run_model(command, std::move(args));
  if (command == "bench-decode") {
    decode_bench_options o;
    o.model_dir = flag(args, "--model", "");
    const std::string streams = flag(args, "--streams", "1,4,16,32");
    o.tokens = std::atoi(flag(args, "--tokens", "64").c_str());
    o.runs = std::atoi(flag(args, "--runs", "3").c_str());
    const auto threads = static_cast<unsigned>(std::atoi(flag(args, "--threads", "0").c_str()));
    const auto make_engine = engine_option(args, threads);
    std::vector<int> counts;
    if (!make_engine || !args.empty() || o.model_dir.empty() || !parse_ids(streams, counts) ||
        o.tokens < 1 || o.runs < 1 ||
        std::any_of(counts.begin(), counts.end(), [](int n) { return n < 1 || n > 1024; })) {
      return usage();
    }
    o.streams = std::move(counts);
    o.make_engine = *make_engine;
    return bench_decode(o);
  }
  if (command == "bench-prefix") {
    prefix_bench_options o;
    o.model_dir = flag(args, "--model", "");
    o.system_tokens = std::atoi(flag(args, "--system-tokens", "2000").c_str());
    o.requests = std::atoi(flag(args, "--requests", "4").c_str());
    o.mixed_requests = std::atoi(flag(args, "--mixed-requests", "24").c_str());
    const auto threads = static_cast<unsigned>(std::atoi(flag(args, "--threads", "0").c_str()));
    const auto make_engine = engine_option(args, threads);
    if (!make_engine || !args.empty() || o.model_dir.empty() || o.system_tokens < 1 ||
        o.system_tokens > 3000 || o.requests < 2 || o.mixed_requests < 1) {
      return usage();
    }
    o.make_engine = *make_engine;
    return bench_prefix(o);
  }
  if (command == "serve") {
    serve_options o;
    o.model_dir = flag(args, "--model", "");
    o.model_name = flag(args, "--name", "");
    o.listen = flag(args, "--listen", o.listen);
    o.max_sequences = std::atoi(flag(args, "--max-sequences", "8").c_str());
    o.threads = std::atoi(flag(args, "--threads", "1").c_str());
    o.engine_threads = std::atoi(flag(args, "--engine-threads", "0").c_str());
    o.kv_cache_mb = std::atoi(flag(args, "--kv-cache-mb", "256").c_str());
    o.kv_block_size = std::atoi(flag(args, "--kv-block-size", "16").c_str());
    o.kv_blocks = std::atoi(flag(args, "--kv-blocks", "0").c_str());
    o.max_batch_tokens = std::atoi(flag(args, "--max-batch-tokens", "256").c_str());
    const std::string prefix = flag(args, "--prefix-cache", "on");
    o.prefix_cache = prefix == "on";
    o.prefix_cache_blocks = std::atoi(flag(args, "--prefix-cache-blocks", "0").c_str());
    const auto make_engine =
        engine_option(args, static_cast<unsigned>(std::max(0, o.engine_threads)));
    if (!make_engine || !args.empty() || o.model_dir.empty() || o.max_sequences < 1 ||
        o.max_sequences > 1024 || o.threads < 1 || o.threads > 64 || o.engine_threads < 0 ||
        o.engine_threads > 256 || o.kv_cache_mb < 1 || o.kv_cache_mb > 1 << 20 ||
        o.kv_block_size < 1 || o.kv_block_size > 1024 || o.kv_blocks < 0 ||
        o.max_batch_tokens < o.max_sequences || o.max_batch_tokens > 65536 ||
        (prefix != "on" && prefix != "off") || o.prefix_cache_blocks < 0) {
      return usage();
    }
    o.make_engine = *make_engine;
    return serve(o);
  }
  return usage();
}
