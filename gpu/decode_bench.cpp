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

// Memory-copy bandwidth as STREAM's Copy counts it (bytes read + bytes written per second),
// with one thread per core copying its share of buffers far larger than the caches; the
// median of 5.
double copy_bandwidth() {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t bytes = std::size_t{512} << 20;
  std::vector<char> from(bytes, 1), to(bytes, 0);
  const std::size_t share = bytes / threads;
  std::vector<double> rates;
  for (int i = 0; i < 5; ++i) {
    const auto start = clock_type::now();
    std::vector<std::thread> copiers;
    for (unsigned t = 0; t < threads; ++t) {
      copiers.emplace_back([&, t] { std::memcpy(&to[t * share], &from[t * share], share); });
    }
    for (auto& c : copiers) c.join();
    const std::chrono::duration<double> took = clock_type::now() - start;
    rates.push_back(2.0 * static_cast<double>(share * threads) / took.count());
    from[static_cast<std::size_t>(i)] = to[bytes - 1 - static_cast<std::size_t>(i)];
  }
  return median(rates);
}

// The weights one decode step reads: every layer's matrices and vectors, the final norm and
// the output projection (the embedding contributes one row).
std::size_t weight_bytes_per_token(const model_weights& w) {
  std::size_t floats = w.final_norm.size() + w.output_matrix().size() +
                       static_cast<std::size_t>(w.config.hidden_size);
  for (const auto& l : w.layers) {
    for (const auto* v : {&l.input_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias,
                          &l.q_norm, &l.k_norm, &l.post_norm, &l.gate, &l.up, &l.down}) {
      floats += v->size();
    }
  }
  return floats * sizeof(float);
}

// Generated tokens per second with `streams` sequences running at once: from submitting them
// to their last token (their 8-token prompts included).
double decode_rate(const decode_bench_options& o, const model_weights& w,
                   const metering::tokenizer& tok, int streams, std::string& device) {
  engine_limits limits;
  limits.max_logit_rows = streams;
  limits.max_batch_tokens = std::max(256, streams);
  const auto engine = o.make_engine(w, limits);
  device = engine->device();
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
  auto weights = load_model(o.model_dir);
  if (!weights) {
    std::fprintf(stderr, "tollgate-infer: %s\n", weights.error().message.c_str());
    return 1;
  }
  auto tok = metering::tokenizer::load_hugging_face(o.model_dir + "/tokenizer.json");
  if (!tok) {
    std::fprintf(stderr, "tollgate-infer: %s/tokenizer.json: %s\n", o.model_dir.c_str(),
                 tok.error().message.c_str());
    return 1;
  }
  const double bandwidth = copy_bandwidth();
  const std::size_t weight_bytes = weight_bytes_per_token(*weights);
  std::string device;
  std::string results = "[";
  for (const int streams : o.streams) {
    std::vector<double> rates;
    for (int i = 0; i < o.runs; ++i) {
      rates.push_back(decode_rate(o, *weights, **tok, streams, device));
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
