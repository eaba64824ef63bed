// The engine's scheduler: continuous batching at the step level on one engine thread.
// Requests wait in a queue; up to `max_sequences` run at once. Every iteration advances each
// running sequence by one step (a chunk of its prompt, or one generated token), so sequences
// join and leave between steps and a long prompt does not stall the others. Each sequence has
// its own key/value cache and random generator, so its tokens do not depend on what else runs.
// A cancelled sequence (its client went away) is dropped at the next step, its cache freed.
//
// Sampling: temperature (0 = greedy), top_k, top_p, a seed (the same seed gives the same
// tokens), stop strings, max_tokens, the model's eos ids. Usage is exact: prompt tokens are the
// ids run; completion tokens are the tokens generated, an eos token included (its text is not
// emitted).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/metrics.hpp"
#include "gpu/cpu_forward.hpp"
#include "metering/tokenizer.hpp"

namespace tollgate::gpu {

struct sampling_params {
  double temperature = 1.0;  // 0: greedy
  double top_p = 1.0;
  int top_k = 0;  // 0: all
  std::optional<std::uint64_t> seed;
  int max_tokens = 16;
  std::vector<std::string> stop;
};

// What a running request hears, on the engine thread: text as it is generated, then the end.
struct generation_event {
  std::string text;  // new text (may be empty)
  bool done = false;
  std::string finish_reason;  // "stop" or "length" when done
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

struct generation_request {
  std::vector<int> prompt;
  sampling_params sampling;
  std::function<void(const generation_event&)> on_event;
  std::shared_ptr<std::atomic<bool>> cancelled;
};

// Picks the next token from `logits` (modified in place) with `p` and the generator state.
int sample_token(std::vector<float>& logits, const sampling_params& p, std::uint64_t& rng_state);

// `bytes` as valid UTF-8: each byte that does not start a valid character becomes U+FFFD. An
// unfinished character at the end is left out, or (when `final`) replaced too; `consumed`, when
// given, receives how many bytes were used (the rest waits for more).
std::string valid_utf8(std::string_view bytes, bool final, std::size_t* consumed = nullptr);

class scheduler {
 public:
  scheduler(const cpu_forward& engine, const metering::tokenizer& tok, std::vector<int> eos_ids,
            int max_sequences, metrics::registry& registry);
  ~scheduler();

  // Thread-safe: queues a request.
  void submit(generation_request r);
  // The engine thread's loop; returns after stop().
  void run();
  void stop();

 private:
  struct sequence;
  void step(sequence& s);
  void emit_text(sequence& s, bool final);

  const cpu_forward& engine_;
  const metering::tokenizer& tok_;
  std::vector<int> eos_ids_;
  int max_sequences_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<generation_request> queue_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<sequence>> running_;  // engine thread only

  metrics::gauge& running_gauge_;
  metrics::gauge& queued_gauge_;
  metrics::gauge& kv_positions_;
  metrics::counter& prompt_tokens_;
  metrics::counter& generated_tokens_;
};

}  // namespace tollgate::gpu
