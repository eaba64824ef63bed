// Usage report buckets: fixed widths from start_s, or UTC calendar months (see
// usage_queries.hpp). Pure date arithmetic, no database.
#include <algorithm>
#include <utility>

#include "billing/usage_queries.hpp"
#include "billing/usage_sql.hpp"

namespace tollgate::billing {

namespace {

constexpr std::int64_t day_s = 86400;

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}
// The first day (days since the epoch) of the month holding day `z`, and of the next month.
std::pair<std::int64_t, std::int64_t> month_of_day(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
  return {days_from_civil(y, m, 1),
          m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1)};
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

}  // namespace

std::int64_t usage_bucket_of(const usage_query& q, std::int64_t t) {
  if (!q.monthly) return q.start_s + floor_div(t - q.start_s, q.bucket_s) * q.bucket_s;
  return std::max(q.start_s, month_of_day(floor_div(t, day_s)).first * day_s);
}

std::int64_t usage_next_bucket(const usage_query& q, std::int64_t bucket_start) {
  if (!q.monthly) return bucket_start + q.bucket_s;
  return month_of_day(floor_div(bucket_start, day_s)).second * day_s;
}

namespace usage_sql {

std::int64_t next_month_day(std::int64_t day) {
  return month_of_day(day).second;
}

}  // namespace usage_sql

}  // namespace tollgate::billing
