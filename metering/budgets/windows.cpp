// Budget windows in time: see windows.hpp.
#include "metering/budgets/windows.hpp"

#include <algorithm>
#include <chrono>

namespace tollgate::metering {

namespace {

constexpr std::int64_t hour_ms = 3'600'000;
constexpr std::int64_t day_ms = 86'400'000;

// Rounds towards minus infinity (instants before the epoch included).
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

std::int64_t unix_ms(std::chrono::sys_days day) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(day.time_since_epoch()).count();
}

// The UTC day holding `now_ms` (integer date arithmetic, no gmtime/timegm on the request path).
std::chrono::sys_days day_of(std::int64_t now_ms) {
  using namespace std::chrono;
  return floor<days>(sys_time<milliseconds>(milliseconds(now_ms)));
}

// The first day of the calendar month (months_per_instance 1) or quarter (3) holding `now_ms`.
std::chrono::year_month_day first_of(std::int64_t now_ms, unsigned months_per_instance) {
  using namespace std::chrono;
  const year_month_day today{day_of(now_ms)};
  const unsigned m = static_cast<unsigned>(today.month());
  return today.year() / month((m - 1) / months_per_instance * months_per_instance + 1) / 1;
}

// The Monday starting the ISO week holding `now_ms`.
std::chrono::sys_days monday_of(std::int64_t now_ms) {
  using namespace std::chrono;
  const sys_days today = day_of(now_ms);
  return today - days(weekday(today).iso_encoding() - 1);
}

}  // namespace

std::int64_t bucket_length_ms(std::int64_t length_ms) {
  const std::int64_t twelfth =
      (length_ms + sliding_buckets_per_window - 1) / sliding_buckets_per_window;
  return std::max<std::int64_t>((twelfth + 999) / 1000 * 1000, 1000);
}

sliding_buckets buckets_at(std::int64_t length_ms, std::int64_t now_ms) {
  sliding_buckets b;
  b.length_ms = length_ms;
  b.bucket_ms = bucket_length_ms(length_ms);
  const std::int64_t newest = floor_div(now_ms, b.bucket_ms);
  const std::int64_t oldest = floor_div(now_ms - length_ms, b.bucket_ms);
  b.newest_start_ms = newest * b.bucket_ms;
  b.count = static_cast<int>(newest - oldest + 1);
  return b;
}

std::int64_t window_start_ms(const window_spec& w, std::int64_t now_ms) {
  using namespace std::chrono;
  if (w.sliding()) return buckets_at(w.length_ms, now_ms).newest_start_ms;
  switch (w.kind) {
    case budget_window::hour:
      return floor_div(now_ms, hour_ms) * hour_ms;
    case budget_window::day:
      return floor_div(now_ms, day_ms) * day_ms;
    case budget_window::week:
      return unix_ms(monday_of(now_ms));
    case budget_window::month:
      return unix_ms(sys_days(first_of(now_ms, 1)));
    case budget_window::quarter:
      return unix_ms(sys_days(first_of(now_ms, 3)));
    default:
      return 0;  // lifetime
  }
}

std::int64_t window_end_ms(const window_spec& w, std::int64_t now_ms) {
  using namespace std::chrono;
  if (w.sliding()) return buckets_at(w.length_ms, now_ms).leaves_at(0);
  switch (w.kind) {
    case budget_window::hour:
      return window_start_ms(w, now_ms) + hour_ms;
    case budget_window::day:
      return window_start_ms(w, now_ms) + day_ms;
    case budget_window::week:
      return unix_ms(monday_of(now_ms) + days(7));
    case budget_window::month:
      return unix_ms(sys_days(first_of(now_ms, 1) + months(1)));
    case budget_window::quarter:
      return unix_ms(sys_days(first_of(now_ms, 3) + months(3)));
    default:
      return 0;  // lifetime
  }
}

}  // namespace tollgate::metering
