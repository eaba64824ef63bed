// The engine's scheduler: continuous batching on one engine thread. Requests wait in a queue;
// up to `max_sequences` run at once, admitted in order when the paged key/value cache can hold
// their worst case (prompt + max_tokens is reserved, blocks are taken as positions are
// written), so a running sequence never finds the cache full and what does not fit waits.
// Every iteration runs ONE batched forward pass over all running sequences: one generated
// token of each decoding sequence and a chunk of each prompt being read, within the engine's
// max_batch_tokens; so sequences join and leave between steps and a long prompt does not stall
// the others. A sequence's tokens do not depend on what runs beside it (the forward pass
// computes each position the same way in any batch; each sequence has its own generator).
// A cancelled sequence (its client went away) leaves at the next step and its blocks are freed.
//
// Prefix caching (on unless turned off): at admission a sequence takes the longest published
// prefix of its prompt from the cache (whole blocks, never the prompt's last position, so the
// first token's logits are always computed) and starts reading its prompt after it; after
// each forward pass its newly filled blocks (prompt or generated) are published for later
// requests. The positions reused are reported as the request's cached tokens.
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
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics.hpp"
#include "gpu/forward_engine.hpp"
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
  int cached_tokens = 0;  // prompt positions whose keys and values came from the prefix cache
};

struct generation_request {
  std::vector<int> prompt;
  sampling_params sampling;
  std::function<void(const generation_event&)> on_event;
  std::shared_ptr<std::atomic<bool>> cancelled;
};

// Picks the next token from `logits` with `p` and the generator state.
int sample_token(std::span<const float> logits, const sampling_params& p, std::uint64_t& rng_state);

// `bytes` as valid UTF-8: each byte that does not start a valid character becomes U+FFFD. An
// unfinished character at the end is left out, or (when `final`) replaced too; `consumed`, when
// given, receives how many bytes were used (the rest waits for more).
std::string valid_utf8(std::string_view bytes, bool final, std::size_t* consumed = nullptr);

struct prefix_cache_options {
  bool enabled = true;
  int cached_blocks_max = 0;  // unreferenced cached blocks kept at most (0: the cache's size)
};

class scheduler {
 public:
  // `max_sequences` is at most the engine's max_logit_rows and max_batch_tokens.
  scheduler(forward_engine& engine, const metering::tokenizer& tok, std::vector<int> eos_ids,
            int max_sequences, metrics::registry& registry,
            prefix_cache_options prefix = prefix_cache_options{});
  ~scheduler();

  // Whether a request of `prompt_tokens` + `max_tokens` can ever fit the key/value cache.
  bool fits(std::size_t prompt_tokens, int max_tokens) const;
  // Thread-safe: queues a request; false (nothing queued) when it can never fit.
  bool submit(generation_request r);
  // The engine thread's loop; returns after stop().
  void run();
  void stop();

 private:
  struct sequence;
  // Admits queued requests while slots and cache blocks allow (engine thread, under mu_).
  void admit();
  // One batched forward pass over the running sequences, then each one's next token.
  void iterate();
  void on_logits(sequence& s, std::span<const float> logits);
  void emit_text(sequence& s, bool final);
  void leave(sequence& s);

  forward_engine& engine_;
  const metering::tokenizer& tok_;
  std::vector<int> eos_ids_;
  int max_sequences_;
  prefix_cache_options prefix_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<generation_request> queue_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<sequence>> running_;  // engine thread only
  int reserved_blocks_ = 0;                         // engine thread only
  std::uint64_t evictions_seen_ = 0;                // engine thread only: counted so far
  std::vector<forward_item> items_;                 // engine thread only: this batch's positions
  std::vector<std::pair<sequence*, int>> in_batch_;  // and its sequences with their counts

  metrics::gauge& running_gauge_;
  metrics::gauge& queued_gauge_;
  metrics::gauge& kv_blocks_used_;
  metrics::gauge& kv_blocks_total_;
  metrics::gauge& kv_blocks_cached_;
  metrics::counter& kv_evictions_;
  metrics::counter& prompt_tokens_;
  metrics::counter& prompt_tokens_cached_;
  metrics::counter& generated_tokens_;
};

}  // namespace tollgate::gpu
