// Unit tests of the hourly aggregate's read plan: which queries it answers, and the intervals
// of the range left to the events (partial hours at the ends, hours a bucket boundary cuts).
#include <catch2/catch.hpp>

#include "billing/usage_hourly.hpp"

using namespace tollgate::billing;

namespace {

constexpr std::int64_t hour = 3600;
constexpr std::int64_t day = 86400;
constexpr std::int64_t t0 = 20758 * day;  // 2026-11-01 00:00 UTC

usage_query query(std::int64_t from_s, std::int64_t to_s, std::int64_t bucket_s) {
  usage_query q;
  q.start_s = from_s;
  q.end_s = to_s;
  q.bucket_s = bucket_s;
  return q;
}

}  // namespace

TEST_CASE("hourly plan: whole hours read nothing from the events") {
  auto q = query(t0 + 5 * hour, t0 + 5 * hour + 30 * day, day);
  q.group_by = {"model"};
  const auto plan = hourly_plan(q);
  REQUIRE(plan);
  CHECK(plan->empty());
  q.group_by = {"tenant_id", "project_id", "api_key_id", "model"};
  q.tenant_id = "ten_a";
  q.model = "m";
  CHECK(hourly_plan(q));
  q.bucket_s = hour;
  CHECK(hourly_plan(q));
}

TEST_CASE("hourly plan: partial hours at the ends and hours a day boundary cuts") {
  // 00:20 on day 0 to 03:10 on day 3, daily buckets from 00:20: each boundary (00:20 of days
  // 1, 2 and 3) cuts that day's hour 00:00-01:00.
  const auto q = query(t0 + 1200, t0 + 3 * day + 3 * hour + 600, day);
  const auto plan = hourly_plan(q);
  REQUIRE(plan);
  const std::vector<time_span> want{{t0 + 1200, t0 + hour},
                                    {t0 + day, t0 + day + hour},
                                    {t0 + 2 * day, t0 + 2 * day + hour},
                                    {t0 + 3 * day, t0 + 3 * day + hour},
                                    {t0 + 3 * day + 3 * hour, t0 + 3 * day + 3 * hour + 600}};
  CHECK(*plan == want);
}

TEST_CASE("hourly plan: calendar months cut no hour") {
  auto q = query(t0 + 7 * hour + 5, t0 + 40 * day, 0);
  q.monthly = true;
  const auto plan = hourly_plan(q);
  REQUIRE(plan);
  CHECK(*plan == std::vector<time_span>{{t0 + 7 * hour + 5, t0 + 8 * hour}});
}

TEST_CASE("hourly plan: what it does not answer") {
  const auto base = query(t0, t0 + day, hour);
  for (const char* g : {"end_user", "session_id", "batch", "tag:team"}) {
    auto q = base;
    q.group_by = {g};
    CHECK_FALSE(hourly_plan(q));
  }
  auto q = base;
  q.end_user = "alice";
  CHECK_FALSE(hourly_plan(q));
  q = base;
  q.batch = true;
  CHECK_FALSE(hourly_plan(q));
  q = base;
  q.tag_filters = {{"team", "a"}};
  CHECK_FALSE(hourly_plan(q));
  CHECK_FALSE(hourly_plan(query(t0, t0 + day, 60)));        // minutes
  CHECK_FALSE(hourly_plan(query(t0, t0 + day, 5400)));      // not whole hours
  CHECK_FALSE(hourly_plan(query(t0 + 60, t0 + day, hour)));  // every hour cut: the events
  CHECK_FALSE(hourly_plan(query(t0, t0, hour)));             // empty
}

TEST_CASE("hourly plan: a range within one hour is read from the events") {
  const auto plan = hourly_plan(query(t0 + 60, t0 + 1800, hour));
  REQUIRE(plan);
  CHECK(*plan == std::vector<time_span>{{t0 + 60, t0 + 1800}});
}
