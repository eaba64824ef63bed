// The decode benchmark: see decode_bench.hpp.
#include "gpu/decode_bench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "core/json_text.hpp"
#include "core/metrics.hpp"
#include "gpu/cpu_kernels.hpp"
#include "gpu/infer_server.hpp"
#include "gpu/model.hpp"
#include "gpu/scheduler.hpp"
#include "metering/tokenizer.hpp"

namespace tollgate::gpu {
namespace {

using clock_type = std::chrono::steady_clock;

std::string one_decimal(double x) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f", x);
  return text;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// Generated tokens per second with `streams` sequences running at once: from submitting them
// to their last token (their 8-token prompts included).
double decode_rate(const decode_bench_options& o, const model_weights& w,
                   const metering::tokenizer& tok, int streams, std::string& device,
                   double& bandwidth, std::size_t& weight_bytes) {
  engine_limits limits;
  limits.max_logit_rows = streams;
  limits.max_batch_tokens = std::max(256, streams);
  const auto engine = o.make_engine(w, limits);
  device = engine->device();
  if (bandwidth == 0) {  // the bound, measured once on the device the engine runs on
    bandwidth = engine->measure_copy_bandwidth();
    weight_bytes = engine->weight_bytes_per_token();
  }
  metrics::registry registry;
  scheduler sched(*engine, tok, {}, streams, registry);  // no eos: every stream runs to the end
  std::thread runner([&sched] { sched.run(); });
  std::mutex mu;
  std::condition_variable all_done;
  int done = 0;
  long generated = 0;
  const auto start = clock_type::now();
  for (int s = 0; s < streams; ++s) {
    generation_request r;
    for (int i = 0; i < 8; ++i) r.prompt.push_back(1000 + (s * 131 + i * 17) % 100000);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = o.tokens;
    r.on_event = [&](const generation_event& e) {
      if (!e.done) return;
      std::lock_guard lock(mu);
      ++done;
      generated += e.completion_tokens;
      all_done.notify_one();
    };
    sched.submit(std::move(r));
  }
  std::unique_lock lock(mu);
  all_done.wait(lock, [&] { return done == streams; });
  const std::chrono::duration<double> took = clock_type::now() - start;
  lock.unlock();
  sched.stop();
  runner.join();
  return static_cast<double>(generated) / took.count();
}

}  // namespace

int bench_decode(const decode_bench_options& o) {
  auto folder = load_model_folder(o.model_dir);
  if (!folder) return 1;
  const model_weights* weights = &folder->weights;
  const auto& tok = folder->tokenizer;
  double bandwidth = 0;
  std::size_t weight_bytes = 0;
  std::string device;
  std::string results = "[";
  for (const int streams : o.streams) {
    std::vector<double> rates;
    for (int i = 0; i < o.runs; ++i) {
      rates.push_back(decode_rate(o, *weights, *tok, streams, device, bandwidth, weight_bytes));
    }
    json_object_writer r;
    r.add("streams", static_cast<std::int64_t>(streams))
        .add_raw("tokens_per_s", one_decimal(median(rates)));
    results += (results.size() > 1 ? "," : "") + r.finish();
  }
  results += "]";
  json_object_writer out;
  out.add("copy_bytes_per_s", static_cast<std::int64_t>(bandwidth))
      .add("weight_bytes_per_token", static_cast<std::int64_t>(weight_bytes))
      .add_raw("bound_tokens_per_s", one_decimal(bandwidth / static_cast<double>(weight_bytes)))
      .add("device", device)
      .add("simd", simd_enabled())
      .add_raw("results", results);
  std::printf("%s\n", out.finish().c_str());
  return 0;
}

}  // namespace tollgate::gpu
