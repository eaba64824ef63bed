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

// Each query (after a valid start_time) is a 400 naming its parameter.
void expect_400s(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [q, param] : cases) {
    INFO(q);
    const auto e = parse("start_time=1759990000&" + q);
    REQUIRE_FALSE(e);
    CHECK(e.error().status == 400);
    CHECK(e.error().type == "invalid_request_error");
    CHECK(e.error().param == param);
  }
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

TEST_CASE("usage reports: group_by takes attribution dimensions and any tag key",
          "[usage_report]") {
  const auto r = parse("start_time=1759990000&group_by=end_user,session,tag:team&group_by=model"
                       "&group_by=end_user");
  REQUIRE(r);
  CHECK(r->query.group_by ==
        std::vector<std::string>{"end_user", "session_id", "tag:team", "model"});
  // A tag key is percent-decoded after the query string is: a comma, a space, a percent sign.
  const auto odd = parse("start_time=1759990000&group_by=tag%3Acost%2520center%252Ceu,"
                         "tag:100%2525&group_by=tag:a%2Bb+c");
  REQUIRE(odd);
  CHECK(odd->query.group_by ==
        std::vector<std::string>{"tag:cost center,eu", "tag:100%", "tag:a+b c"});
  for (const char* bad : {"group_by=user", "group_by=tenant_id", "group_by=tag:",
                          "group_by=tag:%25ZZ", "group_by=tag:%2501", "group_by=Tag:x",
                          "group_by=tag:%25E2%2582"}) {
    INFO(bad);
    const auto e = parse(std::string("start_time=1759990000&") + bad);
    REQUIRE_FALSE(e);
    CHECK(e.error().status == 400);
    CHECK(e.error().type == "invalid_request_error");
    CHECK(e.error().param == "group_by");
  }
  // Finance may group by tenant; a tag key longer than 64 characters is refused.
  CHECK(parse("start_time=1759990000&group_by=tenant_id,tag:x", true));
  CHECK_FALSE(parse("start_time=1759990000&group_by=tag:" + std::string(65, 'k')));
}

TEST_CASE("usage reports: filters on end user, session and tags", "[usage_report]") {
  const auto r = parse("start_time=1759990000&end_user=alice%20b&session=s1&tag:team=search"
                       "&tag%3Acost%2520center=eu&tag:team=ads");
  REQUIRE(r);
  CHECK(r->query.end_user == "alice b");
  CHECK(r->query.session_id == "s1");
  using tags = std::vector<std::pair<std::string, std::string>>;
  CHECK(r->query.tag_filters == tags{{"cost center", "eu"}, {"team", "ads"}});
  expect_400s({{"tag:=x", "tag:"},
               {"tag:team=a%01b", "tag:team"},
               {"tag:%25zz=1", "tag:%zz"},
               {"tag:t=" + std::string(513, 'v'), "tag:t"}});
}

TEST_CASE("usage reports: order and group_limit", "[usage_report]") {
  using tollgate::billing::usage_order;
  const auto r = parse("start_time=1759990000&group_by=end_user&order=cost_desc&group_limit=20");
  REQUIRE(r);
  CHECK(r->query.order == usage_order::cost_desc);
  CHECK(r->query.group_limit == 20);
  CHECK(parse("start_time=1759990000&order=tokens_desc")->query.order == usage_order::tokens_desc);
  CHECK(parse("start_time=1759990000&order=requests_desc")->query.order ==
        usage_order::requests_desc);
  CHECK(parse("start_time=1759990000")->query.order == usage_order::keys);
  expect_400s({{"order=cost", "order"},
               {"order=COST_DESC", "order"},
               {"order=", "order"},
               {"group_limit=0", "group_limit"},
               {"group_limit=10001", "group_limit"},
               {"group_limit=2x", "group_limit"},
               {"group_limit=-1", "group_limit"}});
}

TEST_CASE("usage reports: calendar months (bucket_width=1mo)", "[usage_report]") {
  // 2025-10-09 to 2026-01-15: four month buckets, the first starting at start_time.
  const auto r = parse("start_time=1759990000&end_time=1768435200&bucket_width=1mo&limit=12");
  REQUIRE(r);
  CHECK(r->query.monthly);
  CHECK(r->bucket_limit == 12);
  CHECK(parse("start_time=1759990000&bucket_width=1mo")->bucket_limit == 1);
  CHECK_FALSE(parse("start_time=1759990000&bucket_width=1mo&limit=13"));
  // Pages start at a bucket: start_time, or the first second of a month (UTC).
  CHECK(parse("start_time=1759990000&end_time=1768435200&bucket_width=1mo&page=1761955200"));
  const auto bad =
      parse("start_time=1759990000&end_time=1768435200&bucket_width=1mo&page=1761955201");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().param == "page");
  usage_limits limits;
  limits.json_range_buckets_max = 3;
  const auto long_range =
      parse("start_time=1759990000&end_time=1768435200&bucket_width=1mo", false, limits);
  REQUIRE_FALSE(long_range);
  CHECK(long_range.error().message.find("at most 3") != std::string::npos);
}
