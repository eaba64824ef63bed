// The prefix cache benchmark: see prefix_bench.hpp.
#include "gpu/prefix_bench.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "core/json_text.hpp"
#include "core/metrics.hpp"
#include "gpu/infer_server.hpp"
#include "gpu/scheduler.hpp"

namespace tollgate::gpu {
namespace {

using clock_type = std::chrono::steady_clock;

std::string decimal(double x, int places) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", places, x);
  return text;
}

// `n` token ids from `seed`, inside the vocabulary and away from the special tokens.
std::vector<int> ids(int n, std::uint64_t seed, int vocab) {
  std::vector<int> out;
  const int range = std::max(1, std::min(vocab, 100000) - 1000);
  for (int i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(1000 + static_cast<int>((seed >> 33) % static_cast<std::uint64_t>(range)));
  }
  return out;
}

struct served {
  double ttft_s = 0;  // submit to the first token
  int prompt_tokens = 0;
  int cached_tokens = 0;
};

// One engine and scheduler, with the prefix cache on or off; runs prompts one at a time.
class bench_server {
 public:
  bench_server(const prefix_bench_options& o, const model_weights& w,
               const metering::tokenizer& tok, bool prefix) {
    engine_limits limits;  // the server's defaults
    engine_ = o.make_engine(w, limits);
    prefix_cache_options p;
    p.enabled = prefix;
    sched_ = std::make_unique<scheduler>(*engine_, tok, std::vector<int>{}, 8, registry_, p);
    runner_ = std::thread([this] { sched_->run(); });
  }
  ~bench_server() {
    sched_->stop();
    runner_.join();
  }
  bench_server(const bench_server&) = delete;
  bench_server& operator=(const bench_server&) = delete;

  served run(const std::vector<int>& prompt) {
    std::mutex mu;
    std::condition_variable cv;
    served out;
    bool first = false, done = false;
    generation_request r;
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 1;
    const auto start = clock_type::now();
    r.on_event = [&](const generation_event& e) {
      std::lock_guard lock(mu);
      if (!first) out.ttft_s = std::chrono::duration<double>(clock_type::now() - start).count();
      first = true;
      if (!e.done) return;
      out.prompt_tokens = e.prompt_tokens;
      out.cached_tokens = e.cached_tokens;
      done = true;
      cv.notify_one();
    };
    sched_->submit(std::move(r));
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
    return out;
  }
  const char* device() const { return engine_->device(); }

 private:
  metrics::registry registry_;
  std::unique_ptr<forward_engine> engine_;
  std::unique_ptr<scheduler> sched_;
  std::thread runner_;
};

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// Part 1 for one setting: {"ttft_ms", "prefill_tokens_per_s", "cold_ttft_ms", "cached_tokens"}.
std::string shared_prompt(const prefix_bench_options& o, const model_weights& w,
                          const metering::tokenizer& tok, bool prefix, std::string& device) {
  bench_server s(o, w, tok, prefix);
  device = s.device();
  const int vocab = w.config.vocab_size;
  const std::vector<int> system = ids(o.system_tokens, 1, vocab);
  std::vector<double> ttft;
  double cold = 0;
  int prompt = 0, cached = 0;
  for (int i = 0; i < o.requests; ++i) {
    std::vector<int> p = system;
    const auto user = ids(24, 1000 + static_cast<std::uint64_t>(i), vocab);
    p.insert(p.end(), user.begin(), user.end());
    const served r = s.run(p);
    if (i == 0) {
      cold = r.ttft_s;
      continue;
    }
    ttft.push_back(r.ttft_s);
    prompt = r.prompt_tokens;
    cached = r.cached_tokens;
  }
  const double t = median(ttft);
  json_object_writer out;
  out.add_raw("ttft_ms", decimal(t * 1000, 1))
      .add_raw("prefill_tokens_per_s", decimal(prompt / t, 0))
      .add_raw("first_request_ttft_ms", decimal(cold * 1000, 1))
      .add("prompt_tokens", prompt)
      .add("cached_tokens", cached);
  return out.finish();
}

// Part 2 for one setting: the wall time and the cached and prompt tokens.
std::string mixed(const prefix_bench_options& o, const model_weights& w,
                  const metering::tokenizer& tok, bool prefix) {
  bench_server s(o, w, tok, prefix);
  const int vocab = w.config.vocab_size;
  const std::vector<std::vector<int>> systems = {ids(1000, 11, vocab), ids(400, 12, vocab),
                                                 ids(150, 13, vocab)};
  std::uint64_t rng = 42;
  long prompt = 0, cached = 0;
  const auto start = clock_type::now();
  for (int i = 0; i < o.mixed_requests; ++i) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    const int pick = static_cast<int>((rng >> 33) % 8);  // 0-2: the first system prompt, ...
    const int user_tokens = 10 + static_cast<int>((rng >> 20) % 60);
    std::vector<int> p;
    if (pick < 3) {
      p = systems[0];
    } else if (pick < 5) {
      p = systems[1];
    } else if (pick < 6) {
      p = systems[2];
    } else {
      p = ids(300, 5000 + static_cast<std::uint64_t>(i), vocab);  // shares nothing
    }
    const auto user = ids(user_tokens, 9000 + static_cast<std::uint64_t>(i), vocab);
    p.insert(p.end(), user.begin(), user.end());
    const served r = s.run(p);
    prompt += r.prompt_tokens;
    cached += r.cached_tokens;
  }
  const double took = std::chrono::duration<double>(clock_type::now() - start).count();
  json_object_writer out;
  out.add_raw("wall_s", decimal(took, 2))
      .add("prompt_tokens", static_cast<std::int64_t>(prompt))
      .add("cached_tokens", static_cast<std::int64_t>(cached))
      .add_raw("hit_rate", decimal(prompt > 0 ? static_cast<double>(cached) / prompt : 0, 3));
  return out.finish();
}

}  // namespace

int bench_prefix(const prefix_bench_options& o) {
  auto folder = load_model_folder(o.model_dir);
  if (!folder) return 1;
  const model_weights& w = folder->weights;
  const auto& tok = *folder->tokenizer;
  std::string device;
  const std::string off = shared_prompt(o, w, tok, false, device);
  const std::string on = shared_prompt(o, w, tok, true, device);
  const std::string mixed_off = mixed(o, w, tok, false);
  const std::string mixed_on = mixed(o, w, tok, true);
  json_object_writer shared;
  shared.add("system_tokens", o.system_tokens).add_raw("off", off).add_raw("on", on);
  json_object_writer mix;
  mix.add("requests", o.mixed_requests).add_raw("off", mixed_off).add_raw("on", mixed_on);
  json_object_writer out;
  out.add("device", device)
      .add_raw("shared_system_prompt", shared.finish())
      .add_raw("mixed", mix.finish());
  std::printf("%s\n", out.finish().c_str());
  return 0;
}

}  // namespace tollgate::gpu
