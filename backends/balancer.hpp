// The pure parts of spreading a request over an upstream's replicas: the weighted
// power-of-two-choices pick, each endpoint's passive health (ejection with exponential
// re-admission) and the retry budget. Time comes in as steady-clock milliseconds and random
// numbers as arguments, so tests drive them.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <span>

namespace tollgate::backends {

using mono_ms = std::int64_t;  // steady-clock milliseconds

// One endpoint as the pick sees it: its weight and the requests this thread has in flight there.
struct p2c_candidate {
  std::uint64_t weight = 1;
  std::uint64_t in_flight = 0;
};

// Two weighted random draws (with replacement, from `r1` and `r2`); the one with fewer
// requests in flight per unit of weight wins, the first on a tie. At rest (nothing in flight)
// traffic follows the weights; under load it leans to the least loaded per unit of weight.
std::size_t choose_p2c(std::span<const p2c_candidate> candidates, std::uint64_t r1,
                       std::uint64_t r2);

struct ejection_policy {
  std::uint64_t consecutive_failures = 5;  // 0: never ejected
  std::uint64_t base_ms = 10'000;
  std::uint64_t max_ms = 300'000;
};

// The ejection time of the n-th ejection in a row (n >= 1): base * 2^(n-1), at most max.
std::int64_t ejection_ms(const ejection_policy& policy, std::uint32_t n);

// An endpoint's health, shared by every I/O thread (atomics, no locks). Passive: failures in
// a row eject it; once its ejection time has passed it takes traffic again on probation, and
// its first failure then ejects it for twice as long; a success ends the probation and resets
// the backoff. Active: the health checker marks it down or up.
class endpoint_health {
 public:
  bool ejected(mono_ms now) const {
    return now < ejected_until_ms_.load(std::memory_order_relaxed);
  }
  bool available(mono_ms now) const { return !ejected(now) && !active_down(); }
  bool active_down() const { return active_down_.load(std::memory_order_relaxed); }
  void set_active_down(bool down) { active_down_.store(down, std::memory_order_relaxed); }

  void record_success();
  // Returns the ejection time in ms when this failure ejected the endpoint, else 0.
  std::int64_t record_failure(const ejection_policy& policy, mono_ms now);

  std::uint32_t ejections_in_row() const {
    return ejections_in_row_.load(std::memory_order_relaxed);
  }
  std::uint32_t consecutive_failures() const {
    return consecutive_failures_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint32_t> consecutive_failures_{0};
  std::atomic<std::uint32_t> ejections_in_row_{0};  // since the last success
  std::atomic<std::int64_t> ejected_until_ms_{0};
  std::atomic<bool> active_down_{false};
};

// One I/O thread's retry budget for one upstream: over a sliding window (ten slices), retries
// may be at most `percent` of the first attempts, plus `min_retries` (so a quiet thread can
// still retry). A brown-out thus adds at most that share of load. Not thread-safe.
class retry_budget {
 public:
  retry_budget(std::uint64_t percent, std::uint64_t min_retries, std::int64_t window_ms);
  void record_request(mono_ms now);
  // True (and the retry counted) when the budget allows one more retry now.
  bool try_retry(mono_ms now);

 private:
  static constexpr std::size_t slices = 10;
  void advance(mono_ms now);

  std::uint64_t percent_;
  std::uint64_t min_retries_;
  std::int64_t slice_ms_;
  std::int64_t current_slice_ = -1;  // now / slice_ms_ of the newest slice
  std::array<std::uint64_t, slices> requests_{};
  std::array<std::uint64_t, slices> retries_{};
};

}  // namespace tollgate::backends
