// Budget leases: the slice rule and the in-memory accounting. See lease.hpp.
#include "metering/budgets/lease.hpp"

#include <algorithm>
#include <utility>

namespace tollgate::metering {

std::int64_t lease_slice(std::int64_t available, std::int64_t amount, std::int64_t sharing,
                         std::int64_t divisor) {
  const std::int64_t parts =
      std::max<std::int64_t>(divisor, 1) * std::max<std::int64_t>(sharing, 1);
  const std::int64_t share = std::max<std::int64_t>(available, 0) / parts;
  return share > amount ? share : amount;
}

bool leasable(std::span<const budget_info* const> applying) {
  return std::none_of(applying.begin(), applying.end(), [](const budget_info* b) {
    return !b->alert_thresholds.empty() || b->metric == budget_metric::credit;
  });
}

bool lease_renewal_due(const lease_grant& grant, std::int64_t unused, std::int64_t now_ms,
                       std::int64_t ahead_ms, std::int64_t next_serve_until_ms) {
  if (unused < grant.slice / lease_renew_unused_divisor) return true;
  return now_ms + ahead_ms >= grant.serve_until_ms && next_serve_until_ms > grant.serve_until_ms;
}

bool lease_far_from_limit(const lease_grant& grant) {
  const std::int64_t asked = std::max<std::int64_t>(grant.asked, 1);
  // slice >= lease_far_requests x asked, without overflow.
  return grant.slice / lease_far_requests >= asked;
}

budget_lease::budget_lease(lease_grant grant) : grant_(std::move(grant)), unused_(grant_.slice) {}

bool budget_lease::take(std::int64_t amount, std::int64_t now_ms) {
  if (now_ms >= grant_.serve_until_ms) return false;
  // Counted in flight before the capacity is taken, so that done() cannot see the lease empty
  // while a take that succeeds is under way.
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  std::int64_t v = unused_.load(std::memory_order_relaxed);
  do {
    if (v < amount) {  // also every take once closed (v is far below 0)
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
      return false;
    }
  } while (!unused_.compare_exchange_weak(v, v - amount, std::memory_order_acq_rel));
  return true;
}

void budget_lease::finish(std::int64_t worst, std::int64_t actual) {
  // Settled first, then the unused part, then in flight: done() never sees a finished request
  // as gone before its usage is there to flush.
  settled_.fetch_add(actual, std::memory_order_acq_rel);
  unused_.fetch_add(worst - actual, std::memory_order_acq_rel);
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);
}

void budget_lease::close() {
  // The offset goes in before closed() says so: a flush that sees the lease closed finds the
  // unused part already offset, and gives back exactly it.
  if (!closing_.exchange(true, std::memory_order_acq_rel)) {
    unused_.fetch_sub(closed_offset, std::memory_order_acq_rel);
    closed_.store(true, std::memory_order_release);
  }
}

budget_lease::flush_part budget_lease::take_flush() {
  flush_part part;
  part.settled = settled_.exchange(0, std::memory_order_acq_rel);
  if (closed()) {
    // Everything above the offset is unused for good: give it back.
    part.returned = unused_.exchange(-closed_offset, std::memory_order_acq_rel) + closed_offset;
  }
  return part;
}

std::int64_t budget_lease::unused() const {
  return closed() ? 0 : std::max<std::int64_t>(unused_.load(std::memory_order_acquire), 0);
}

bool budget_lease::done() const {
  return closed() && in_flight_.load(std::memory_order_acquire) == 0 &&
         settled_.load(std::memory_order_acquire) == 0 &&
         unused_.load(std::memory_order_acquire) == -closed_offset;
}

}  // namespace tollgate::metering
