// Unit tests of pricing a period from ledger totals: billing periods, lines per model, token
// class, batch flag and tier priced on one accumulator across price book versions, the batch
// discount, unpriced usage, volume tiers, and minor-unit rounding that adds up.
#include <catch2/catch.hpp>

#include <limits>
#include <random>

#include "billing/period_pricing.hpp"
#include "billing/pricing.hpp"
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
  for (const char* bad :
       {"2026-13", "2026-00", "1969-12", "2026/11", "26-11", "2026-1", "", "abcd-ef"}) {
    INFO(bad);
    CHECK_FALSE(period_bounds(bad));
  }
}

TEST_CASE("the preview prices each line on one accumulator through the period's versions") {
  period_usage in;
  in.tenant_id = "ten_a";
  in.period = "2026-11";
  in.book_id = "pb_x";
  in.currency = "USD";
  in.tier_mode = "graduated";
  in.tier_scope = "model";
  in.batch_discount_bp = 5000;
  // v1: input 1..100 tokens at 3 micro-units each, then 1; output flat 2. v2: input 5 after 100.
  in.versions = {
      {1,
       R"({"m":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"1000000"}],"output":[{"rate":"2000000"}]}})"},
      {2,
       R"({"m":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"5000000"}],"output":[{"rate":"2000000"}]}})"}};
  in.rows = {{0, "m", false, 7, 0, 7},      // before version 1: unpriced
             {1, "m", false, 80, 0, 10},    // input 80 x 3 = 240
             {1, "m", true, 40, 0, 3},      // batch: its own accumulator, half price
             {1, "other", false, 5, 0, 5},  // not in the book
             {2, "m", false, 50, 0, 1}};    // input 20 x 3 + 30 x 5 (v2's rate past 100) = 210
  const std::string text = cost_preview_json(in);  // the document points into it
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  const auto root = doc->root();
  const auto lines = root.find("lines");
  REQUIRE(lines.size() == 5);
  auto line = [&](std::string_view cls, bool batch, int tier = 1) {
    for (std::uint32_t i = 0; i < lines.size(); ++i) {
      const auto l = lines.at(i);
      if (l.find("token_class").as_string() == cls && l.find("batch").as_bool() == batch &&
          l.find("tier").as_int64() == tier) {
        return l;
      }
    }
    FAIL("no line");
    return lines.at(0);
  };
  // Tier 1 (tokens 1..100) filled by both versions at 3; tier 2 by version 2 at 5.
  CHECK(line("input", false, 1).find("amount_micros").as_int64() == 300);
  CHECK(line("input", false, 1).find("tokens").as_int64() == 100);
  CHECK(line("input", false, 1).find("versions").size() == 2);
  CHECK(line("input", false, 2).find("amount_micros").as_int64() == 150);
  CHECK(line("input", false, 2).find("tokens").as_int64() == 30);
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

TEST_CASE("volume tiers: one line per accumulator at the tier reached, trued up") {
  period_usage in;
  in.tier_mode = "volume";
  in.tier_scope = "all_models";
  in.currency = "USD";
  in.versions = {
      {1,
       R"({"*":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"1000000","flat_fee":4}],"output":[{"rate":"1000000"}]}})"}};
  in.rows = {{1, "a", false, 60, 0, 0}, {1, "b", false, 60, 0, 0}};  // 120 tokens across models
  const auto p = price_period(in);
  REQUIRE(p.lines.size() == 1);
  CHECK(p.lines[0].model == "*");
  CHECK(p.lines[0].tier == 2);
  CHECK(p.lines[0].tokens == 120);
  CHECK(p.lines[0].amount_micros == 120 + 4);  // every token at the reached tier, plus its fee
  CHECK(p.total_micros == 124);
}

TEST_CASE("graduated tier lines add up to floor(F(total)) for random books and usage") {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::string tiers = "[";
    std::int64_t bound = 0;
    const int n = std::uniform_int_distribution<int>(1, 4)(rng);
    price_schedule s;
    for (int i = 0; i < n; ++i) {
      price_tier t;
      t.rate = std::uniform_int_distribution<std::int64_t>(0, 9'999'999'999)(rng);
      t.flat_fee_micros = std::uniform_int_distribution<std::int64_t>(0, 3)(rng);
      tiers += i ? "," : "";
      if (i + 1 < n) {
        bound += std::uniform_int_distribution<std::int64_t>(1, 500)(rng);
        t.up_to = bound;
        tiers += "{\"up_to\":" + std::to_string(bound) + ",";
      } else {
        tiers += "{";
      }
      tiers += "\"rate\":\"" + format_rate(t.rate) +
               "\",\"flat_fee\":" + std::to_string(t.flat_fee_micros) + "}";
      s.tiers.push_back(t);
    }
    tiers += "]";
    period_usage in;
    in.tier_mode = "graduated";
    in.tier_scope = "model";
    in.versions = {{1, "{\"m\":{\"input\":" + tiers + ",\"output\":" + tiers + "}}"}};
    std::int64_t total = 0;
    for (int r = 0; r < 5; ++r) {
      const std::int64_t q = std::uniform_int_distribution<std::int64_t>(0, 700)(rng);
      in.rows.push_back({1, "m", false, q, 0, 0});
      total += q;
    }
    const auto p = price_period(in);
    std::int64_t tokens = 0;
    for (const auto& l : p.lines) tokens += l.tokens;
    CHECK(tokens == total);
    CHECK(p.total_micros == price_micros(s, total));
  }
}

TEST_CASE("minor units: lines rounded by largest remainder add up to the rounded total") {
  CHECK(currency_minor_digits("USD") == 2);
  CHECK(currency_minor_digits("JPY") == 0);
  CHECK(currency_minor_digits("KWD") == 3);
  // 0.333334 + 0.333333 + 0.333333 = 1.000000: cents 33 + 33 + 33 = 99, one more cent goes to
  // the largest remainder (the first).
  auto m = to_minor_units({333'334, 333'333, 333'333}, 2);
  CHECK(m.total == 100);
  CHECK(m.amounts == std::vector<std::int64_t>{34, 33, 33});
  auto half = to_minor_units({5'000}, 2);  // half a cent rounds up
  CHECK(half.total == 1);
  CHECK(to_minor_units({4'999}, 2).total == 0);
  auto yen = to_minor_units({1'500'000, 2'500'000}, 0);
  CHECK(yen.total == 4);
  CHECK(yen.amounts[0] + yen.amounts[1] == 4);
  auto negative = to_minor_units({-1'234'567, 2'000'000}, 2);  // an adjustment line
  CHECK(negative.total == 77);
  CHECK(negative.amounts[0] + negative.amounts[1] == 77);
  std::mt19937_64 rng(5);
  for (int round = 0; round < 1000; ++round) {
    std::vector<std::int64_t> micros(std::uniform_int_distribution<int>(1, 30)(rng));
    for (auto& v : micros)
      v = std::uniform_int_distribution<std::int64_t>(-10'000'000, 900'000'000)(rng);
    const int digits = std::uniform_int_distribution<int>(0, 3)(rng);
    const auto r = to_minor_units(micros, digits);
    std::int64_t sum = 0;
    for (auto a : r.amounts) sum += a;
    CHECK(sum == r.total);
  }
}

TEST_CASE("late usage of a finalized period becomes one adjustment, not two") {
  period_pricing now;
  now.lines = {{"m", "input", false, 1, 100, 300, {1}},
               {"m", "input", false, 2, 30, 150, {1}},
               {"m", "output", false, 1, 10, 20, {1}}};
  const std::string invoiced =
      R"([{"model":"m","token_class":"input","batch":false,"tier":1,"tokens":100,"amount_micros":300},
          {"model":"m","token_class":"input","batch":false,"tier":2,"tokens":10,"amount_micros":50},
          {"model":"m","token_class":"output","batch":false,"tier":1,"tokens":10,"amount_micros":20}])";
  auto first = late_adjustments("2026-09", now, invoiced, {});
  REQUIRE(first.size() == 1);
  CHECK(first[0].token_class == "input");
  CHECK(first[0].tokens == 20);
  CHECK(first[0].amount_micros == 100);
  // Once another finalized invoice carries it, nothing is left to adjust; adjustments of other
  // periods do not count.
  const std::string carried =
      R"([{"period":"2026-09","model":"m","token_class":"input","batch":false,"tokens":20,"amount_micros":100},
          {"period":"2026-08","model":"m","token_class":"output","batch":false,"tokens":5,"amount_micros":9}])";
  CHECK(late_adjustments("2026-09", now, invoiced, {carried}).empty());
}

TEST_CASE("the forecast projects the tokens to the period's end, then prices them with the tiers") {
  period_usage in;
  in.tenant_id = "ten_a";
  in.period = "2026-11";
  in.book_id = "pb_x";
  in.currency = "USD";
  in.tier_mode = "graduated";
  in.tier_scope = "model";
  // input: 1..100 tokens at 3 micro-units each, then 1; output flat 2.
  in.versions = {
      {1,
       R"({"m":{"input":[{"up_to":100,"rate":"3000000"},{"rate":"1000000"}],"output":[{"rate":"2000000"}]}})"}};
  in.rows = {{1, "m", false, 80, 0, 10}};
  const period_progress half{15 * 86400, 30 * 86400};
  // Half the month gone, 80 input tokens so far: 160 by the end, 100 x 3 + 60 x 1 = 360 (the
  // cost so far, 240, doubled would be 480: the tiers apply to the projected volume); output
  // 10 -> 20 tokens, 40.
  const period_usage projected = forecast_usage(in, half);
  REQUIRE(projected.rows.size() == 1);
  CHECK(projected.rows[0].input == 160);
  CHECK(projected.rows[0].output == 20);
  const std::string text = cost_preview_json(in, half);
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  CHECK(doc->root().find("total_micros").as_int64() == 260);
  const auto forecast = doc->root().find("forecast");
  REQUIRE(forecast.is_object());
  CHECK(forecast.find("method").as_string() == "run_rate");
  CHECK(forecast.find("total_micros").as_int64() == 400);
  CHECK(forecast.find("elapsed_s").as_int64() == 15 * 86400);
  CHECK(forecast.find("lines").size() == 3);  // input tiers 1 and 2, output

  // Floors: 7 tokens a third of the way through -> 21; 1 token at 40% -> 2 (2.5 floored).
  in.rows = {{1, "m", false, 7, 0, 1}};
  const period_usage thirds = forecast_usage(in, {10, 30});
  CHECK(thirds.rows[0].input == 21);
  CHECK(thirds.rows[0].output == 3);
  CHECK(forecast_usage(in, {4, 10}).rows[0].output == 2);

  // The tokens to come go to the version in force now; earlier versions keep their own.
  in.versions.push_back({2, in.versions[0].prices_json});
  in.rows = {{1, "m", false, 30, 0, 0}, {2, "m", false, 10, 0, 0}};
  const period_usage split = forecast_usage(in, {1, 2});
  REQUIRE(split.rows.size() == 2);
  CHECK(split.rows[0].input == 30);
  CHECK(split.rows[1].input == 50);  // 10 + the 40 to come
  // A model seen only under version 1 gets a row for version 2.
  in.rows = {{1, "m", true, 5, 0, 0}};
  const period_usage fresh = forecast_usage(in, {1, 2});
  REQUIRE(fresh.rows.size() == 2);
  CHECK(fresh.rows[1].version == 2);
  CHECK(fresh.rows[1].batch);
  CHECK(fresh.rows[1].input == 5);

  // No overflow: a huge total is capped at INT64_MAX.
  in.rows = {{2, "m", false, std::numeric_limits<std::int64_t>::max() / 2, 0, 0}};
  CHECK(forecast_usage(in, {1, 1000}).rows[0].input == std::numeric_limits<std::int64_t>::max());

  // Nothing to forecast for a period that is over, or without progress.
  CHECK(cost_preview_json(in).find("\"forecast\":null") != std::string::npos);
  CHECK(forecast_usage(in, {30, 30}).rows[0].input == in.rows[0].input);
  CHECK(forecast_usage(in, {0, 30}).rows[0].input == in.rows[0].input);
}
