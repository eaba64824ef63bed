// Unit tests of usage report queries: time parameters range-checked (no overflow), and the
// number of buckets one query may span bounded for JSON and CSV.
#include <catch2/catch.hpp>

#include "gateway/usage_report.hpp"

using namespace tollgate::gateway;

namespace {

constexpr std::int64_t now_s = 1'760'000'000;

tollgate::result<usage_request> parse(const std::string& query, bool finance = false,
                                      usage_limits limits = {}) {
  return parse_usage_request(*query_params::parse("/v1/usage?" + query), finance, now_s, limits);
}

}  // namespace

TEST_CASE("usage reports: time parameters are range-checked", "[usage_report]") {
  CHECK(parse("start_time=1759990000"));
  for (const char* bad : {"start_time=-1", "start_time=99999999999999999999",
                          "start_time=9223372036854775807", "start_time=253402300800",
                          "start_time=1e9", "start_time=", "start_time=abc"}) {
    INFO(bad);
    const auto r = parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 400);
    CHECK(r.error().param == "start_time");
  }
  for (const char* bad : {"start_time=1759990000&end_time=-5",
                          "start_time=1759990000&end_time=9223372036854775807",
                          "start_time=1759990000&end_time=253402300800",
                          "start_time=1759990000&end_time=1759990000"}) {
    INFO(bad);
    const auto r = parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 400);
    CHECK(r.error().param == "end_time");
  }
  const auto events = parse_events_request(
      *query_params::parse("/x?start_time=0&end_time=9223372036854775807"), now_s);
  CHECK_FALSE(events);
  CHECK(parse_events_request(*query_params::parse("/x?start_time=-3"), now_s).error().status ==
        400);
}

TEST_CASE("usage reports: a range of too many buckets is a 400 naming the limit",
          "[usage_report]") {
  usage_limits limits;
  limits.json_range_buckets_max = 100;
  limits.csv_range_buckets_max = 200;
  // 100 one-minute buckets: allowed; 101: refused.
  CHECK(parse("start_time=1759990000&end_time=1759996000&bucket_width=1m", false, limits));
  const auto r = parse("start_time=1759990000&end_time=1759996001&bucket_width=1m", false, limits);
  REQUIRE_FALSE(r);
  CHECK(r.error().status == 400);
  CHECK(r.error().message.find("at most 100") != std::string::npos);
  // CSV has its own bound.
  CHECK(parse("start_time=1759990000&end_time=1759996001&bucket_width=1m&format=csv", true,
              limits));
  const auto csv = parse("start_time=1759990000&end_time=1760002001&bucket_width=1m&format=csv",
                         true, limits);
  REQUIRE_FALSE(csv);
  CHECK(csv.error().message.find("at most 200") != std::string::npos);
  // The default bounds: start_time=0 by day is fine, by minute is not.
  CHECK(parse("start_time=0"));
  const auto minutes = parse("start_time=0&bucket_width=1m");
  REQUIRE_FALSE(minutes);
  CHECK(minutes.error().message.find("at most 100000") != std::string::npos);
}
