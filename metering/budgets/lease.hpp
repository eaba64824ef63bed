// Budget leases: a slice of one budget counter's remaining capacity, held in Redis as one hold
// (so the zero-overspend argument of holds is unchanged) and served to many requests from
// memory. This file is the pure part: the slice-size rule and the lease's in-memory accounting
// with atomic counters (shared by a gateway's I/O threads). The Redis side is lease_engine.hpp;
// gateway/budget_leases puts them on the request path (docs/BUDGETS.md, "Leases").
#pragma once
#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "metering/budgets/budget_rows.hpp"

namespace tollgate::metering {

// The slice a lease takes of a counter that has `available` left (limit - used - held) when
// `sharing` gateways (at least 1) lease it and the request at hand asks `amount`:
// available / (divisor x sharing), rounded down, when that exceeds `amount`; otherwise exactly
// `amount` (a per-request hold: near the limit nothing is leased beyond what a request asks).
// The reserve side of the Lua acquire script applies the same rule (tested against this one).
std::int64_t lease_slice(std::int64_t available, std::int64_t amount, std::int64_t sharing,
                         std::int64_t divisor);

// Whether a request under these budgets may be served from leases: none has alert thresholds
// (a threshold is crossed by the settlement that reaches it, which needs the per-request
// settle script) and none is a credit_only plan's credit (held per request, exactly). The
// others keep per-request holds.
bool leasable(std::span<const budget_info* const> applying);

// What the acquire script granted for one counter.
struct lease_grant {
  std::string counter_key;        // the counter (window instance or sliding bucket) it holds in
  std::string hold_field;         // its hold field there, "h<expiry ms>"
  std::int64_t hold_expiry_ms = 0;
  std::int64_t counter_ttl_ms = 0;  // the counter's time to live when granted
  std::int64_t slice = 0;         // the capacity held
  std::int64_t serve_until_ms = 0;  // no request is served from it at or after this instant
  // limit - (everything counted, this slice included) when granted: what the budget has left
  // for everyone else; plus this lease's unused part it is what this gateway can still use.
  std::int64_t remaining_after = 0;
  std::int64_t recall_seen = 0;   // the counter's recall count when granted
  std::int64_t asked = 0;         // the worst case of the request it was taken for
};

// Leases are replaced ahead of need, so that a request rarely finds none and waits for Redis:
// when a lease's unused part falls below 1/lease_renew_unused_divisor of its slice, or when it
// stops serving within `ahead_ms` while a lease taken now would serve longer
// (`next_serve_until_ms`: not so for a sliding window's bucket, which a lease never outlives).
constexpr std::int64_t lease_renew_unused_divisor = 4;
// ... `ahead_ms` being budgets.lease_ms divided by this.
constexpr std::int64_t lease_renew_ahead_divisor = 8;
bool lease_renewal_due(const lease_grant& grant, std::int64_t unused, std::int64_t now_ms,
                       std::int64_t ahead_ms, std::int64_t next_serve_until_ms);

// A lease's counter was far from its limit when the lease was granted if its slice covers at
// least this many requests the size of the one it was taken for: no gateway was close to
// holding per request (that starts below lease_divisor x gateways such requests). Leases far
// from their limits are flushed every budgets.lease_flush_far_ms instead of lease_flush_ms.
constexpr std::int64_t lease_far_requests = 64;
bool lease_far_from_limit(const lease_grant& grant);

// One lease's accounting. Invariant: the hold in Redis equals unused + in flight (the worst
// cases of the requests served and not finished) + settled and not yet flushed. A flush moves
// the settled part from the hold to `used` and, once the lease is closed, gives the unused
// part back.
class budget_lease {
 public:
  explicit budget_lease(lease_grant grant);

  const lease_grant& grant() const { return grant_; }

  // Serves a request of `amount` (its worst case) at `now_ms` if the lease is open, still in
  // its serving time and has that much unused. Safe from any thread.
  bool take(std::int64_t amount, std::int64_t now_ms);
  // A request served from it finished: `actual` is what it counts (its worst case returns to
  // the unused part, less `actual`).
  void finish(std::int64_t worst, std::int64_t actual);
  // A request served from it is given back without counting anything.
  void give_back(std::int64_t worst) { finish(worst, 0); }
  // No more requests are served; the unused part goes back at the next flush. Idempotent.
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // What the next flush sends: the usage settled since the last flush, and (closed leases
  // only) the unused part to give back. Taken out of the lease; a flush that fails keeps it
  // and sends it again (gateway/budget_leases).
  struct flush_part {
    std::int64_t settled = 0;
    std::int64_t returned = 0;
  };
  flush_part take_flush();

  // Unused capacity (0 once closed).
  std::int64_t unused() const;
  // Closed, with unused capacity that the next flush gives back.
  bool returnable() const {
    return closed() && unused_.load(std::memory_order_acquire) > -closed_offset;
  }
  std::int64_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  // Closed, nothing in flight, nothing left to flush: the lease can be forgotten.
  bool done() const;

 private:
  // Closing subtracts this from the unused counter, so that every take fails from then on and
  // what comes back afterwards (finished requests' unused worst cases) is still counted.
  static constexpr std::int64_t closed_offset = std::int64_t{1} << 62;

  lease_grant grant_;
  std::atomic<std::int64_t> unused_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::int64_t> settled_{0};
  std::atomic<bool> closing_{false};  // close() ran (or runs)
  std::atomic<bool> closed_{false};   // ... and has offset the unused part
};

}  // namespace tollgate::metering
