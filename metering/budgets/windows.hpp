// Budget windows in time: the UTC instance of a calendar window (hour, day, ISO week, month,
// quarter) that holds an instant, and the buckets a sliding window (minute, durations) is
// counted in. Pure integer arithmetic; the tenant's time zone comes from PostgreSQL instead
// (billing/budget_store, budget_info::zone_start_ms).
#pragma once
#include <cstdint>

#include "metering/budgets/budget_kinds.hpp"

namespace tollgate::metering {

// A sliding window of length L is counted in buckets of B = L / 12, rounded up to whole
// seconds, aligned on multiples of B since the epoch. Every bucket that overlaps the closed
// interval [now - L, now] counts whole: at most 13 buckets, since B >= L / 12
// (docs/BUDGETS.md argues why no interval of length L then holds more than the limit).
inline constexpr std::int64_t sliding_buckets_per_window = 12;
inline constexpr int sliding_buckets_max = sliding_buckets_per_window + 1;

// B for a window of `length_ms` (at least a second).
std::int64_t bucket_length_ms(std::int64_t length_ms);

// The buckets a sliding window counts at an instant, newest (the one holding the instant, where
// holds go) first.
struct sliding_buckets {
  std::int64_t length_ms = 0;  // L
  std::int64_t bucket_ms = 0;  // B
  std::int64_t newest_start_ms = 0;
  int count = 0;  // at most sliding_buckets_max

  // The start of bucket i (0: newest).
  std::int64_t start_of(int i) const { return newest_start_ms - i * bucket_ms; }
  // When bucket i stops overlapping the window (the window's start passes the bucket's end).
  std::int64_t leaves_at(int i) const { return start_of(i) + bucket_ms + length_ms; }
};
sliding_buckets buckets_at(std::int64_t length_ms, std::int64_t now_ms);

// Calendar windows: the first instant of the UTC instance holding `now_ms`, and the first
// instant after it (0 and 0 for lifetime). Sliding windows: the start of the bucket holding
// `now_ms`, and when that bucket leaves the window (when all that is counted at `now_ms` has
// left it).
std::int64_t window_start_ms(const window_spec& w, std::int64_t now_ms);
std::int64_t window_end_ms(const window_spec& w, std::int64_t now_ms);

}  // namespace tollgate::metering
