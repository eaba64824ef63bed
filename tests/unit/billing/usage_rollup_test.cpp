// Unit tests of the usage rollup's read plan and of usage buckets: which rollup periods a query
// reads (months, months less days, days), the intervals left to the events, calendar months.
#include <catch2/catch.hpp>

#include "billing/usage_rollup.hpp"

using namespace tollgate::billing;

namespace {

constexpr std::int64_t day = 86400;
constexpr std::int64_t nov = 20758;  // 2026-11-01, days since 1970-01-01
constexpr std::int64_t dec = nov + 30;
constexpr std::int64_t us = 1'000'000;

// A day with events from 01:00 to 23:00, and a month over the given days.
rollup_period day_row(std::int64_t d) {
  return {'d', d, (d * day + 3600) * us, (d * day + 82800) * us};
}
std::vector<rollup_period> month_with(std::int64_t month, std::int64_t first, std::int64_t last) {
  std::vector<rollup_period> out{
      {'m', month, (first * day + 3600) * us, (last * day + 82800) * us}};
  for (std::int64_t d = first; d <= last; ++d) out.push_back(day_row(d));
  return out;
}

usage_query monthly(std::int64_t from_s, std::int64_t to_s) {
  usage_query q;
  q.start_s = from_s;
  q.end_s = to_s;
  q.monthly = true;
  q.tenant_id = "ten_x";
  q.group_by = {"end_user"};
  return q;
}

int count(const rollup_plan& p, char grain, int sign) {
  int n = 0;
  for (const auto& c : p.periods) n += c.grain == grain && c.sign == sign;
  return n;
}

}  // namespace

TEST_CASE("usage buckets: calendar months from the range's start", "[usage_rollup]") {
  const auto q = monthly(nov * day + 5 * day + 7, dec * day + 40 * day);
  CHECK(usage_bucket_of(q, q.start_s + 10) == q.start_s);
  CHECK(usage_next_bucket(q, q.start_s) == dec * day);
  CHECK(usage_bucket_of(q, dec * day + 100) == dec * day);
  CHECK(usage_next_bucket(q, dec * day) == (dec + 31) * day);  // December has 31 days
  usage_query fixed;
  fixed.start_s = 1000;
  fixed.bucket_s = 3600;
  CHECK(usage_bucket_of(fixed, 1000 + 3600 * 5 + 12) == 1000 + 3600 * 5);
  CHECK(usage_next_bucket(fixed, 4600) == 8200);
}

TEST_CASE("rollup plan: a whole month is one month row and no events", "[usage_rollup]") {
  const auto plan = plan_rollup(monthly(nov * day, dec * day), month_with(nov, nov, nov + 29));
  CHECK(count(plan, 'm', 1) == 1);
  CHECK(plan.periods.size() == 1);
  CHECK(plan.raw.empty());
}

TEST_CASE("rollup plan: 30 days across a month's start are the month less its first day",
          "[usage_rollup]") {
  const auto plan =
      plan_rollup(monthly((nov + 1) * day, (dec + 1) * day), month_with(nov, nov, nov + 29));
  CHECK(count(plan, 'm', 1) == 1);
  REQUIRE(count(plan, 'd', -1) == 1);
  for (const auto& c : plan.periods) {
    CHECK(c.bucket_s == (nov + 1) * day);
    if (c.sign < 0) CHECK(c.day == nov);
  }
  // December 1st has no rollup row: read from the events.
  REQUIRE(plan.raw.size() == 1);
  CHECK(plan.raw[0] == std::pair<std::int64_t, std::int64_t>{dec * day, (dec + 1) * day});
}

TEST_CASE("rollup plan: a range starting inside a day reads that day from the events",
          "[usage_rollup]") {
  const auto plan =
      plan_rollup(monthly(nov * day + 7200, dec * day), month_with(nov, nov, nov + 29));
  CHECK(count(plan, 'm', 1) == 1);
  CHECK(count(plan, 'd', -1) == 1);
  REQUIRE(plan.raw.size() == 1);
  CHECK(plan.raw[0] == std::pair<std::int64_t, std::int64_t>{nov * day + 7200, (nov + 1) * day});
}

TEST_CASE("rollup plan: daily buckets read days; a few days of a month read as days",
          "[usage_rollup]") {
  auto q = monthly(nov * day, (nov + 10) * day);
  q.monthly = false;
  q.bucket_s = day;
  const auto daily = plan_rollup(q, month_with(nov, nov, nov + 29));
  CHECK(count(daily, 'd', 1) == 10);
  CHECK(count(daily, 'm', 1) == 0);
  CHECK(daily.raw.empty());
  // Monthly buckets, 3 of 30 days: the days, not the month less 27.
  const auto few =
      plan_rollup(monthly((nov + 3) * day, (nov + 6) * day), month_with(nov, nov, nov + 29));
  CHECK(count(few, 'd', 1) == 3);
  CHECK(count(few, 'm', 1) == 0);
}

TEST_CASE("rollup plan: a day whose events reach past the range's end is read from the events",
          "[usage_rollup]") {
  auto periods = month_with(nov, nov, nov + 1);
  const auto plan = plan_rollup(monthly(nov * day, (nov + 1) * day + 3600 * 12), periods);
  CHECK(count(plan, 'd', 1) == 1);
  REQUIRE(plan.raw.size() == 1);
  CHECK(plan.raw[0].first == (nov + 1) * day);
}
