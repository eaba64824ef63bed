// Unit tests of the cost preview: billing periods, lines per model, token class and batch flag
// priced on one accumulator across price book versions, the batch discount, unpriced usage.
#include <catch2/catch.hpp>

#include "billing/cost_preview.hpp"
#include "core/json_dom.hpp"

using namespace tollgate;
using namespace tollgate::billing;

TEST_CASE("billing periods are UTC calendar months") {
  const auto nov = period_bounds("2026-11");
  REQUIRE(nov);
  CHECK(nov->first == 1793491200);   // 2026-11-01
  CHECK(nov->second == 1796083200);  // 2026-12-01
  const auto dec = period_bounds("2026-12");
  REQUIRE(dec);
  CHECK(dec->second == 1798761600);  // 2027-01-01
  CHECK(period_of(1795345200) == "2026-11");
  CHECK(period_of(1796083200) == "2026-12");
  for (const char* bad : {"2026-13", "2026-00", "1969-12", "2026/11", "26-11", "2026-1", "", "abcd-ef"}) {
    INFO(bad);
    CHECK_FALSE(period_bounds(bad));
  }
}

TEST_CASE("the preview prices each line on one accumulator through the period's versions") {
  cost_preview_input in;
  in.tenant_id = "ten_a";
  in.period = "2026-11";
  in.book_id = "pb_x";
  in.currency = "USD";
  in.tier_mode = "graduated";
  in.tier_scope = "model";
  in.batch_discount_bp = 5000;
  // v1: input 1..100 tokens at 3 micro-units each, then 1; output flat 2. v2: input 5 after 100.
  in.versions = {
      {1, R"({"m":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"1000000"}],"output":[{"rate":"2000000"}]}})"},
      {2, R"({"m":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"5000000"}],"output":[{"rate":"2000000"}]}})"}};
  in.rows = {{0, "m", false, 7, 0, 7},      // before version 1: unpriced
             {1, "m", false, 80, 0, 10},    // input 80 x 3 = 240
             {1, "m", true, 40, 0, 3},      // batch: its own accumulator, half price
             {1, "other", false, 5, 0, 5},  // not in the book
             {2, "m", false, 50, 0, 1}};    // input 20 x 3 + 30 x 5 (v2's rate past 100) = 210
  auto doc = json::document::parse(cost_preview_json(in));
  REQUIRE(doc);
  const auto root = doc->root();
  const auto lines = root.find("lines");
  REQUIRE(lines.size() == 4);
  auto line = [&](std::string_view cls, bool batch) {
    for (std::uint32_t i = 0; i < lines.size(); ++i) {
      const auto l = lines.at(i);
      if (l.find("token_class").as_string() == cls && l.find("batch").as_bool() == batch) return l;
    }
    FAIL("no line");
    return lines.at(0);
  };
  CHECK(line("input", false).find("amount_micros").as_int64() == 240 + 210);
  CHECK(line("input", false).find("tokens").as_int64() == 130);
  CHECK(line("input", false).find("versions").size() == 2);
  CHECK(line("output", false).find("amount_micros").as_int64() == 22);
  CHECK(line("input", true).find("amount_micros").as_int64() == 60);  // 40 x 3 / 2
  CHECK(line("output", true).find("amount_micros").as_int64() == 3);  // 3 x 2 / 2
  CHECK(root.find("total_micros").as_int64() == 450 + 22 + 60 + 3);
  const auto unpriced = root.find("unpriced");
  REQUIRE(unpriced.size() == 2);
  CHECK(unpriced.at(0).find("model").as_string() == "m");
  CHECK(unpriced.at(0).find("tokens").as_int64() == 14);
  CHECK(unpriced.at(1).find("model").as_string() == "other");
}
