// `tollgate-infer bench-decode`: the engine's decode speed as served (the scheduler, its batched
// forward pass and greedy sampling, no HTTP) at several numbers of concurrent streams, and the
// bound this machine's memory bandwidth puts on one stream: every decode step reads all the
// weights once, so one stream cannot beat (memory-copy bandwidth) / (weight bytes per token).
// The bandwidth is measured in the same run, as STREAM's Copy counts it (bytes read + written
// per second, one thread per core). Used by tests/bench/engine_bench.mjs.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpu/forward_engine.hpp"

namespace tollgate::gpu {

struct decode_bench_options {
  std::string model_dir;
  std::vector<int> streams{1, 4, 16, 32};
  int tokens = 64;       // generated per stream (no eos: every stream runs to the end)
  int runs = 3;          // per stream count; the median is reported
  // Makes the forward pass (the CPU's or a CUDA device's) for each measurement.
  std::function<std::unique_ptr<forward_engine>(const model_weights&, const engine_limits&)>
      make_engine;
};

// Prints one JSON object on stdout; returns the process exit code.
int bench_decode(const decode_bench_options& options);

}  // namespace tollgate::gpu
