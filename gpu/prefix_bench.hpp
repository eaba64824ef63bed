// `tollgate-infer bench-prefix`: what the prefix cache gives, as served (the scheduler and its
// batched forward pass, greedy, no HTTP). Two parts:
//   1. A shared system prompt of `system_tokens` tokens, each request adding its own short user
//      part and generating one token, sent one after another, with the cache off and on: time
//      to first token (submit to the first token, median over the requests after the first)
//      and prefill throughput (prompt positions per second of that time). With the cache on, the
//      first request computes and publishes the system prompt; the others reuse it.
//   2. A mixed workload of `mixed_requests` requests (a fixed pseudo-random order): three system
//      prompts of different lengths shared by most requests, and prompts that share nothing;
//      the hit rate (cached prompt tokens / prompt tokens), and the wall time with the cache off
//      and on.
// Prints one JSON object on stdout. Used by tests/bench/engine_bench.mjs.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "gpu/forward_engine.hpp"

namespace tollgate::gpu {

struct prefix_bench_options {
  std::string model_dir;
  int system_tokens = 2000;  // the shared system prompt of part 1
  int requests = 4;          // part 1's requests per setting
  int mixed_requests = 24;   // part 2's requests
  std::function<std::unique_ptr<forward_engine>(const model_weights&, const engine_limits&)>
      make_engine;
};

// Returns the process exit code.
int bench_prefix(const prefix_bench_options& options);

}  // namespace tollgate::gpu
