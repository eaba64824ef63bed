// The engine's scheduler and sampling: see scheduler.hpp.
#include "gpu/scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace tollgate::gpu {
namespace {

constexpr int prefill_chunk = 32;  // prompt tokens fed per sequence per iteration

std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

int sample_token(std::vector<float>& logits, const sampling_params& p, std::uint64_t& rng_state) {
  const int n = static_cast<int>(logits.size());
  if (p.temperature <= 0 || p.top_k == 1) {
    return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates by descending logit (ties by id, so the order is deterministic).
  std::vector<int> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const auto by_logit = [&](int a, int b) {
    const float la = logits[static_cast<std::size_t>(a)];
    const float lb = logits[static_cast<std::size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  const int k = p.top_k > 0 ? std::min(p.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  order.resize(static_cast<std::size_t>(k));
  const double top = logits[static_cast<std::size_t>(order[0])];
  std::vector<double> probs(order.size());
  double total = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    probs[i] = std::exp((logits[static_cast<std::size_t>(order[i])] - top) / p.temperature);
    total += probs[i];
  }
  // Nucleus: the smallest prefix whose probability reaches top_p.
  std::size_t keep = order.size();
  if (p.top_p < 1.0) {
    double running = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      running += probs[i] / total;
      if (running >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept_total = 0;
  for (std::size_t i = 0; i < keep; ++i) kept_total += probs[i];
  const double u =
      static_cast<double>(next_random(rng_state) >> 11) / 9007199254740992.0 * kept_total;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

std::string valid_utf8(std::string_view bytes, bool final) {
  static constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    const std::size_t need = c < 0x80             ? 1
                             : (c & 0xE0) == 0xC0 ? 2
                             : (c & 0xF0) == 0xE0 ? 3
                             : (c & 0xF8) == 0xF0 ? 4
                                                  : 0;
    if (need == 1) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // The continuation bytes, then the code point's range (no overlongs, no surrogates).
    std::uint32_t cp = need == 2 ? c & 0x1Fu : need == 3 ? c & 0x0Fu : c & 0x07u;
    std::size_t got = 1;
    bool ok = need != 0;
    while (ok && got < need && i + got < bytes.size()) {
      const auto d = static_cast<unsigned char>(bytes[i + got]);
      if ((d & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (d & 0x3Fu);
      ++got;
    }
    if (ok && got < need) {  // cut short by the end of the bytes so far
      if (!final) break;     // more tokens may complete it
      ok = false;
    }
    if (ok) {
      const std::uint32_t min = need == 2 ? 0x80 : need == 3 ? 0x800 : 0x10000;
      ok = cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok) {
      out.append(bytes.substr(i, need));
      i += need;
    } else {
      out.append(replacement);
      ++i;
    }
  }
  return out;
}

struct scheduler::sequence {
  generation_request req;
  sequence_cache cache;
  std::size_t fed = 0;  // prompt tokens fed so far
  std::vector<float> logits;
  std::vector<metering::token_id> generated;  // without a final eos
  int completion_tokens = 0;
  std::string text;         // decoded so far, valid UTF-8
  std::size_t emitted = 0;  // bytes of `text` sent
  std::uint64_t rng = 0;
  bool finished = false;
};

scheduler::scheduler(const cpu_forward& engine, const metering::tokenizer& tok,
                     std::vector<int> eos_ids, int max_sequences, metrics::registry& registry)
    : engine_(engine),
      tok_(tok),
      eos_ids_(std::move(eos_ids)),
      max_sequences_(max_sequences),
      running_gauge_(
          registry.add_gauge("tollgate_infer_sequences_running", "Sequences being generated now.")
              .get()),
      queued_gauge_(registry
                        .add_gauge("tollgate_infer_sequences_queued",
                                   "Requests waiting for a free sequence slot.")
                        .get()),
      kv_positions_(registry
                        .add_gauge("tollgate_infer_kv_positions_in_use",
                                   "Key/value cache positions reserved by running sequences.")
                        .get()),
      prompt_tokens_(registry
                         .add_counter("tollgate_infer_prompt_tokens_total",
                                      "Prompt tokens run through the model.")
                         .get()),
      generated_tokens_(registry
                            .add_counter("tollgate_infer_generated_tokens_total",
                                         "Tokens generated (rate() of it: tokens per second).")
                            .get()) {}

scheduler::~scheduler() = default;

void scheduler::submit(generation_request r) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(r));
    queued_gauge_.set(static_cast<std::int64_t>(queue_.size()));
  }
  wake_.notify_one();
}

void scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
}

void scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
      if (stopping_) return;
      // Sequences join between steps.
      while (!queue_.empty() && static_cast<int>(running_.size()) < max_sequences_) {
        auto s = std::make_unique<sequence>();
        s->req = std::move(queue_.front());
        queue_.pop_front();
        s->cache = engine_.new_sequence(static_cast<int>(s->req.prompt.size()) +
                                        s->req.sampling.max_tokens);
        s->rng = s->req.sampling.seed ? *s->req.sampling.seed
                                      : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                                            std::random_device{}();
        kv_positions_.add(s->cache.capacity);
        running_.push_back(std::move(s));
      }
      queued_gauge_.set(static_cast<std::int64_t>(queue_.size()));
    }
    running_gauge_.set(static_cast<std::int64_t>(running_.size()));
    for (auto& s : running_) step(*s);
    // Sequences leave between steps (finished, or cancelled by their client).
    const auto gone = std::remove_if(running_.begin(), running_.end(), [&](const auto& s) {
      const bool leave = s->finished || (s->req.cancelled && s->req.cancelled->load());
      if (leave) kv_positions_.sub(s->cache.capacity);
      return leave;
    });
    running_.erase(gone, running_.end());
    running_gauge_.set(static_cast<std::int64_t>(running_.size()));
  }
}

void scheduler::step(sequence& s) {
  if (s.finished || (s.req.cancelled && s.req.cancelled->load())) return;
  const auto& prompt = s.req.prompt;
  if (s.fed < prompt.size()) {
    const std::size_t n = std::min<std::size_t>(prefill_chunk, prompt.size() - s.fed);
    const std::vector<int> chunk(prompt.begin() + static_cast<std::ptrdiff_t>(s.fed),
                                 prompt.begin() + static_cast<std::ptrdiff_t>(s.fed + n));
    s.logits = engine_.feed(s.cache, chunk);
    s.fed += n;
    prompt_tokens_.inc(n);
    if (s.fed < prompt.size()) return;  // more prompt next time
  } else {
    s.logits = engine_.feed(s.cache, {static_cast<int>(s.generated.back())});
  }
  const int next = sample_token(s.logits, s.req.sampling, s.rng);
  ++s.completion_tokens;
  generated_tokens_.inc();
  const bool eos = std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end();
  if (!eos) s.generated.push_back(static_cast<metering::token_id>(next));
  std::string reason;
  if (eos) reason = "stop";
  if (reason.empty() && s.completion_tokens >= s.req.sampling.max_tokens) reason = "length";
  // The text so far: invalid bytes become U+FFFD; an unfinished character waits for the next
  // token, unless this is the last.
  s.text = valid_utf8(tok_.decode(s.generated).value_or(std::string()), !reason.empty());
  // A stop string ends the text where it begins.
  for (const auto& stop : s.req.sampling.stop) {
    if (stop.empty()) continue;
    const std::size_t from = s.emitted > stop.size() ? s.emitted - stop.size() : 0;
    const std::size_t at = s.text.find(stop, from);
    if (at != std::string::npos) {
      s.text.resize(at);
      reason = "stop";
    }
  }
  if (!reason.empty()) {
    emit_text(s, true);
    generation_event done;
    done.done = true;
    done.finish_reason = reason;
    done.prompt_tokens = static_cast<int>(prompt.size());
    done.completion_tokens = s.completion_tokens;
    s.finished = true;
    s.req.on_event(done);
    return;
  }
  emit_text(s, false);
}

void scheduler::emit_text(sequence& s, bool final) {
  std::size_t upto = s.text.size();
  if (!final) {
    // Hold back what could be the start of a stop string, cut at a character boundary.
    std::size_t longest = 0;
    for (const auto& stop : s.req.sampling.stop) longest = std::max(longest, stop.size());
    if (longest > 1) upto = upto > longest - 1 ? upto - (longest - 1) : 0;
    while (upto > 0 && upto < s.text.size() &&
           (static_cast<unsigned char>(s.text[upto]) & 0xC0) == 0x80) {
      --upto;
    }
  }
  if (upto <= s.emitted) return;
  generation_event e;
  e.text = s.text.substr(s.emitted, upto - s.emitted);
  s.emitted = upto;
  s.req.on_event(e);
}

}  // namespace tollgate::gpu
