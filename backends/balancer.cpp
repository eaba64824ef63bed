// Endpoint pick, passive health and retry budget: see balancer.hpp.
#include "backends/balancer.hpp"

#include <algorithm>
#include <numeric>

namespace tollgate::backends {

namespace {

// The candidate a weighted draw lands on (weights are at least 1).
std::size_t weighted_draw(std::span<const p2c_candidate> c, std::uint64_t r) {
  std::uint64_t total = 0;
  for (const auto& x : c) total += x.weight;
  if (total == 0) return 0;
  std::uint64_t at = r % total;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (at < c[i].weight) return i;
    at -= c[i].weight;
  }
  return c.size() - 1;
}

}  // namespace

std::size_t choose_p2c(std::span<const p2c_candidate> candidates, std::uint64_t r1,
                       std::uint64_t r2) {
  if (candidates.size() <= 1) return 0;
  // Drawn with replacement: with two endpoints a pair of draws is not always both of them,
  // so at any load a heavier endpoint keeps a share beyond what its in-flight count earns.
  const std::size_t a = weighted_draw(candidates, r1);
  const std::size_t b = weighted_draw(candidates, r2);
  // Fewer in flight per weight: in_flight_b / w_b < in_flight_a / w_a, without division
  // (in-flight counts and weights are far below 2^32).
  const auto& ca = candidates[a];
  const auto& cb = candidates[b];
  return cb.in_flight * ca.weight < ca.in_flight * cb.weight ? b : a;
}

std::int64_t ejection_ms(const ejection_policy& policy, std::uint32_t n) {
  std::uint64_t ms = policy.base_ms;
  for (std::uint32_t i = 1; i < n && ms < policy.max_ms; ++i) ms *= 2;
  return static_cast<std::int64_t>(std::min(ms, policy.max_ms));
}

void endpoint_health::record_success() {
  // Loads first: a healthy endpoint's success writes nothing to the shared line.
  if (consecutive_failures_.load(std::memory_order_relaxed) != 0) {
    consecutive_failures_.store(0, std::memory_order_relaxed);
  }
  if (ejections_in_row_.load(std::memory_order_relaxed) != 0) {
    ejections_in_row_.store(0, std::memory_order_relaxed);
  }
}

std::int64_t endpoint_health::record_failure(const ejection_policy& policy, mono_ms now) {
  if (policy.consecutive_failures == 0) return 0;
  std::int64_t until = ejected_until_ms_.load(std::memory_order_relaxed);
  if (now < until) return 0;  // ejected already (a request sent before the ejection failed)
  const std::uint32_t failures = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::uint32_t in_row = ejections_in_row_.load(std::memory_order_relaxed);
  const bool probation = in_row > 0;  // re-admitted, no success since
  if (failures < policy.consecutive_failures && !probation) return 0;
  const std::int64_t length = ejection_ms(policy, in_row + 1);
  // One thread ejects; the others' failures of the same moment see it ejected.
  if (!ejected_until_ms_.compare_exchange_strong(until, now + length, std::memory_order_relaxed)) {
    return 0;
  }
  ejections_in_row_.store(in_row + 1, std::memory_order_relaxed);
  consecutive_failures_.store(0, std::memory_order_relaxed);
  return length;
}

retry_budget::retry_budget(std::uint64_t percent, std::uint64_t min_retries, std::int64_t window_ms)
    : percent_(percent),
      min_retries_(min_retries),
      slice_ms_(std::max<std::int64_t>(1, window_ms / static_cast<std::int64_t>(slices))) {}

void retry_budget::advance(mono_ms now) {
  const std::int64_t slice = now / slice_ms_;
  if (current_slice_ < 0 || slice - current_slice_ >= static_cast<std::int64_t>(slices)) {
    requests_.fill(0);
    retries_.fill(0);
  } else {
    for (std::int64_t s = current_slice_ + 1; s <= slice; ++s) {
      requests_[static_cast<std::size_t>(s) % slices] = 0;
      retries_[static_cast<std::size_t>(s) % slices] = 0;
    }
  }
  if (slice > current_slice_) current_slice_ = slice;
}

void retry_budget::record_request(mono_ms now) {
  advance(now);
  ++requests_[static_cast<std::size_t>(current_slice_) % slices];
}

bool retry_budget::try_retry(mono_ms now) {
  advance(now);
  const std::uint64_t requests =
      std::accumulate(requests_.begin(), requests_.end(), std::uint64_t{0});
  const std::uint64_t retries = std::accumulate(retries_.begin(), retries_.end(), std::uint64_t{0});
  if (retries + 1 > min_retries_ + requests * percent_ / 100) return false;
  ++retries_[static_cast<std::size_t>(current_slice_) % slices];
  return true;
}

}  // namespace tollgate::backends
