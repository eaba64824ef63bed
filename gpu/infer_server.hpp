// tollgate-infer's HTTP server, on core/http_server (the gateway's conventions: limits,
// timeouts, keep-alive, OpenAI error shapes, graceful shutdown):
//   POST /v1/chat/completions, POST /v1/completions (streaming with stream_options.include_usage),
//   GET /v1/models, POST /tokenize, GET /health, GET /metrics.
// Requests become generation requests for the scheduler (gpu/scheduler.hpp) running on its own
// engine thread; its events come back to the request's I/O thread. Chat prompts are rendered
// and tokenized with metering's prompt_counter, the function the gateway counts with, so the
// gateway's prompt count equals the engine's usage. A client that hangs up cancels its sequence.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gpu/forward_engine.hpp"
#include "gpu/model.hpp"
#include "metering/tokenizer.hpp"

namespace tollgate::gpu {

struct serve_options {
  std::string model_dir;
  std::string model_name;  // as /v1/models lists it; "" = the folder's name
  std::string listen = "127.0.0.1:8000";
  int max_sequences = 8;
  int threads = 1;          // HTTP I/O threads (the model runs on its own thread)
  int engine_threads = 0;   // threads of the forward pass (0: one per core)
  int kv_cache_mb = 256;    // the paged key/value cache's budget
  int kv_blocks = 0;        // or its size in blocks (0: from kv_cache_mb)
  int kv_block_size = 16;   // positions per cache block
  int max_batch_tokens = 256;  // positions one forward pass may run
  bool prefix_cache = true;    // reuse the keys and values of shared prompt prefixes
  int prefix_cache_blocks = 0;  // unreferenced cached blocks kept at most (0: no limit)
  // Makes the forward pass (the CPU's or a CUDA device's; gpu/infer_main.cpp decides).
  std::function<std::unique_ptr<forward_engine>(const model_weights&, const engine_limits&)>
      make_engine;
};

// A model folder as tollgate-infer's commands load it: the weights and its tokenizer.json. On
// a problem, says which on stderr (naming the file) and returns nullopt.
struct model_folder {
  model_weights weights;
  std::shared_ptr<const metering::tokenizer> tokenizer;
};
std::optional<model_folder> load_model_folder(const std::string& dir);

// Loads the model and serves until SIGTERM/SIGINT; returns the process exit code.
int serve(const serve_options& options);

}  // namespace tollgate::gpu
