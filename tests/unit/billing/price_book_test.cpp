// Unit tests of price book parsing: rates as exact decimals, cached input defaulting to input,
// the all-models scope, canonical JSON that parses back to the same prices, clear errors.
#include <catch2/catch.hpp>

#include "billing/price_book.hpp"

using namespace tollgate;
using namespace tollgate::billing;

namespace {

basic_result<std::vector<model_prices>, std::string> parse(const std::string& text,
                                                           tier_mode mode = tier_mode::graduated,
                                                           tier_scope scope = tier_scope::model) {
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  return parse_model_prices(doc->root(), mode, scope);
}

}  // namespace

TEST_CASE("price books: models, tiers and rates parse exactly and round-trip") {
  const std::string text = R"({"m-b":{"input":[{"up_to":1000000,"rate":"150000"},{"rate":120000}],
    "output":[{"rate":"600000.5","flat_fee":25}]},"m-a":{"input":[{"rate":"0.000001"}],
    "cached_input":[{"rate":"75000"}],"output":[{"rate":"2"}]}})";
  auto r = parse(text);
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].model == "m-a");  // sorted
  CHECK((*r)[0].input.tiers[0].rate == 1);
  CHECK((*r)[0].cached_input.tiers[0].rate == 75'000'000'000);
  const auto& b = (*r)[1];
  REQUIRE(b.input.tiers.size() == 2);
  CHECK(b.input.tiers[0].up_to == 1'000'000);
  CHECK(b.input.tiers[1].rate == 120'000'000'000);
  CHECK(b.cached_input.tiers.size() == 2);  // defaults to the input schedule
  CHECK(b.output.tiers[0].rate == 600'000'500'000);
  CHECK(b.output.tiers[0].flat_fee_micros == 25);
  const std::string canonical = model_prices_json(*r);
  auto again = parse(canonical);
  REQUIRE(again);
  CHECK(model_prices_json(*again) == canonical);
  CHECK_THAT(canonical, Catch::Contains(R"("rate":"600000.5")"));
}

TEST_CASE("price books: bad input names what is wrong") {
  const std::pair<const char*, const char*> cases[] = {
      {R"({})", "non-empty"},
      {R"({"m":{"input":[{"rate":"1"}]}})", "models[\"m\"].output"},
      {R"({"m":{"input":[{"rate":1.5}],"output":[{"rate":"1"}]}})", "floating-point"},
      {R"({"m":{"input":[{"rate":"1.0000001"}],"output":[{"rate":"1"}]}})", "six fractional"},
      {R"({"m":{"input":[{"rate":"-1"}],"output":[{"rate":"1"}]}})", "input tier 1"},
      {R"({"m":{"input":[{"up_to":10,"rate":"1"}],"output":[{"rate":"1"}]}})", "unbounded"},
      {R"({"m":{"input":[{"up_to":10,"rate":"1"},{"up_to":5,"rate":"1"},{"rate":"1"}],"output":[{"rate":"1"}]}})",
       "tier 2"},
      {R"({"m":{"input":[{"rate":"1","flat_fee":-1}],"output":[{"rate":"1"}]}})", "flat_fee"},
      {R"({"m":{"input":[{"rate":"1","bogus":1}],"output":[{"rate":"1"}]}})", "unknown field"},
      {R"({"m":{"reasoning":[{"rate":"1"}],"input":[{"rate":"1"}],"output":[{"rate":"1"}]}})",
       "token class"},
      {R"({"*":{"input":[{"rate":"1"}],"output":[{"rate":"1"}]}})", "all_models"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    auto r = parse(text);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error(), Catch::Contains(expected));
  }
  auto all = parse(R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"1"}]}})", tier_mode::volume,
                   tier_scope::all_models);
  REQUIRE_FALSE(all);
  CHECK_THAT(all.error(), Catch::Contains("\"*\""));
  auto star = parse(R"({"*":{"input":[{"rate":"1"}],"output":[{"rate":"1"}]}})", tier_mode::volume,
                    tier_scope::all_models);
  REQUIRE(star);
  CHECK(star->at(0).input.mode == tier_mode::volume);
}
