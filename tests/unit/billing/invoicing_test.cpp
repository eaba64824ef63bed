// Unit tests of the invoice arithmetic without a database: lines and late adjustments rounded to
// minor units together and credits apart, the credit beyond the period's own charges cut at its
// edges (and only from the period's credits), and the invoice CSV's shape and escaping.
#include <catch2/catch.hpp>

#include <algorithm>

#include "billing/invoicing.hpp"
#include "billing/plan_terms.hpp"
#include "core/json_dom.hpp"

using namespace tollgate;
using namespace tollgate::billing;

namespace {

std::vector<std::int64_t> minor_amounts_of(const std::string& json_array) {
  std::vector<std::int64_t> out;
  auto doc = json::document::parse(json_array);
  REQUIRE(doc);
  const auto a = doc->root();
  for (std::uint32_t i = 0; i < a.size(); ++i) {
    out.push_back(a.at(i).find("amount_minor").as_int64());
  }
  return out;
}

}  // namespace

TEST_CASE("invoice amounts: lines and adjustments rounded together, credits apart, the rest due") {
  period_pricing priced;
  priced.lines = {{"m", "input", false, 1, 1000, 1'234'567, {1}},
                  {"m", "output", false, 1, 500, 2'345'678, {1}}};
  priced.total_micros = 3'580'245;
  const std::vector<late_adjustment> adjustments = {{"2026-10", "m", "input", false, 10, 5'000}};
  std::vector<applied_credit> credits = {{"2026-11", "cg_a", "purchased", 1'000'000},
                                         {"2026-10", "cg_b", "promotional", 4'999}};
  const auto a = invoice_amounts_of(priced, adjustments, {}, credits, "2026-11", 2);
  // 358.0245 + 0.5 = 358.5245 USD rounds to 359 cents; the floors (123 + 234 + 0) miss two,
  // which go to the largest remainders: the second line (0.5678) and the adjustment (0.5).
  CHECK(a.total_micros == 3'585'245);
  CHECK(a.total_minor == 359);
  CHECK(minor_amounts_of(a.lines_json) == std::vector<std::int64_t>{123, 235});
  CHECK(minor_amounts_of(a.adjustments_json) == std::vector<std::int64_t>{1});
  // The credits are within the period's charges: nothing goes back. Rounded on their own:
  // 1.004999 USD is 100 cents, the late 0.4999 cent rounds away.
  CHECK(a.credits_returned_micros == 0);
  CHECK(a.credits_micros == 1'004'999);
  CHECK(minor_amounts_of(a.credits_json) == std::vector<std::int64_t>{100, 0});
  CHECK(a.total_due_micros == 3'585'245 - 1'004'999);
  CHECK(a.total_due_minor == 259);

  auto doc = json::document::parse(a.credits_json);
  REQUIRE(doc);
  REQUIRE(doc->root().size() == 2);
  const auto first = doc->root().at(0);
  CHECK(first.find("period").as_string() == "2026-11");
  CHECK(first.find("grant_id").as_string() == "cg_a");
  CHECK(first.find("kind").as_string() == "purchased");
  CHECK(first.find("amount_micros").as_int64() == 1'000'000);
  CHECK(doc->root().at(1).find("grant_id").as_string() == "cg_b");

  // Yen has no minor digits: the minor amounts are whole units.
  const auto yen = invoice_amounts_of(priced, adjustments, {}, credits, "2026-11", 0);
  CHECK(yen.total_minor == 4);
  CHECK(yen.total_due_minor == 4 - 1);
}

TEST_CASE("the credit returned is measured against the period's own charges, not adjustments") {
  period_pricing priced;
  priced.lines = {{"m", "input", false, 1, 1000, 1'000, {1}}};
  priced.total_micros = 1'000;
  const std::vector<late_adjustment> adjustments = {{"2026-10", "m", "input", false, 10, 2'000}};
  const std::vector<applied_credit> credits = {{"2026-11", "cg_a", "purchased", 1'000},
                                               {"2026-11", "cg_b", "purchased", 500}};
  const auto a = invoice_amounts_of(priced, adjustments, {}, credits, "2026-11", 2);
  CHECK(a.total_micros == 3'000);
  CHECK(a.credits_returned_micros == 500);
  CHECK(a.credits_micros == 1'000);
  CHECK(a.total_due_micros == 2'000);
  auto doc = json::document::parse(a.credits_json);
  REQUIRE(doc);
  REQUIRE(doc->root().size() == 1);  // cg_b was cut to 0 and left out
  CHECK(doc->root().at(0).find("grant_id").as_string() == "cg_a");
}

TEST_CASE("a late bundle line of an earlier period does not hold back the period's excess") {
  // Volume tiers: the period's events drew 100 of money credit, the period comes to 80, so 20
  // goes back. A bundle's draw for late usage of October (30, with its credit) is listed too:
  // it is October's, so it neither raises November's charges nor is cut.
  period_pricing priced;
  priced.lines = {{"m", "input", false, 1, 1000, 80, {1}}};
  priced.total_micros = 80;
  fee_line late;
  late.kind = "token_bundle";
  late.quantity = 15;
  late.unit_amount_micros = 2'000'000;
  late.amount_micros = 30;
  late.bundle_id = "cg_bundle";
  late.model = "m";
  late.token_class = "input";
  late.period = "2026-10";
  const std::vector<applied_credit> credits = {{"2026-11", "cg_money", "purchased", 100},
                                               {"2026-10", "cg_bundle", "bundle", 30}};
  const auto a = invoice_amounts_of(priced, {}, {late}, credits, "2026-11", 2);
  CHECK(a.total_micros == 110);
  CHECK(a.credits_returned_micros == 20);
  CHECK(a.credits_micros == 110);
  CHECK(a.total_due_micros == 0);
  CHECK(a.fees_json.find(R"("period":"2026-10")") != std::string::npos);
}

TEST_CASE("credits beyond the period's charges are cut, the last in drawdown order first") {
  // The period's credits in drawdown order, then a late credit of an earlier period.
  std::vector<applied_credit> c = {{"2026-11", "cg_a", "purchased", 600},
                                   {"2026-11", "cg_b", "promotional", 400},
                                   {"2026-10", "cg_c", "purchased", 50}};
  auto amounts = [&] {
    std::vector<std::pair<std::string, std::int64_t>> out;
    for (const auto& x : c) out.emplace_back(x.grant_id, x.amount_micros);
    return out;
  };
  using v = std::vector<std::pair<std::string, std::int64_t>>;

  SECTION("charges equal to the credits: nothing goes back") {
    CHECK(cut_returned_credits(c, "2026-11", 1'000) == 0);
    CHECK(amounts() == v{{"cg_a", 600}, {"cg_b", 400}, {"cg_c", 50}});
  }
  SECTION("charges above the credits: nothing goes back") {
    CHECK(cut_returned_credits(c, "2026-11", 5'000) == 0);
    CHECK(amounts() == v{{"cg_a", 600}, {"cg_b", 400}, {"cg_c", 50}});
  }
  SECTION("one micro-unit over: from the last of the period's grants, not the late one") {
    CHECK(cut_returned_credits(c, "2026-11", 999) == 1);
    CHECK(amounts() == v{{"cg_a", 600}, {"cg_b", 399}, {"cg_c", 50}});
  }
  SECTION("exactly the last grant: it is dropped") {
    CHECK(cut_returned_credits(c, "2026-11", 600) == 400);
    CHECK(amounts() == v{{"cg_a", 600}, {"cg_c", 50}});
  }
  SECTION("more than the last grant: the one before gives the rest") {
    CHECK(cut_returned_credits(c, "2026-11", 300) == 700);
    CHECK(amounts() == v{{"cg_a", 300}, {"cg_c", 50}});
  }
  SECTION("no charges: all of the period's credit goes back, the late credit stays") {
    CHECK(cut_returned_credits(c, "2026-11", 0) == 1'000);
    CHECK(amounts() == v{{"cg_c", 50}});
  }
  SECTION("another period's invoice: only that period's credit counts") {
    CHECK(cut_returned_credits(c, "2026-10", 20) == 30);
    CHECK(amounts() == v{{"cg_a", 600}, {"cg_b", 400}, {"cg_c", 20}});
  }
  SECTION("no credits") {
    c.clear();
    CHECK(cut_returned_credits(c, "2026-11", 0) == 0);
    CHECK(c.empty());
  }
}

TEST_CASE("invoice CSV: one row per line, the total, credits negative, the total due") {
  const std::string invoice =
      R"({"object":"invoice","number":"TG-000007","period":"2026-11","currency":"USD",)"
      R"("lines":[{"model":"m,1","token_class":"input","batch":false,"tier":1,"tokens":100,)"
      R"("amount_micros":300000,"amount_minor":30},)"
      R"({"model":"say \"hi\"\nnow","token_class":"output","batch":true,"tier":2,"tokens":5,)"
      R"("amount_micros":10000,"amount_minor":1}],"total_micros":310000,"total_minor":31,)"
      R"("credits":[{"period":"2026-11","grant_id":"cg_a","kind":"purchased",)"
      R"("amount_micros":200000,"amount_minor":20}],)"
      R"("total_due_micros":110000,"total_due_minor":11})";
  CHECK(invoice_csv(invoice) ==
        "invoice_number,period,currency,model,token_class,batch,tier,tokens,amount_micros,"
        "amount_minor\n"
        "TG-000007,2026-11,USD,\"m,1\",input,false,1,100,300000,30\n"
        "TG-000007,2026-11,USD,\"say \"\"hi\"\"\nnow\",output,true,2,5,10000,1\n"
        "TG-000007,2026-11,USD,total,,,,,310000,31\n"
        "TG-000007,2026-11,USD,cg_a,credit,,,,-200000,-20\n"
        "TG-000007,2026-11,USD,total_due,,,,,110000,11\n");
}

TEST_CASE("invoice CSV of a draft: no number, no lines, no credits; bad JSON: the header") {
  const std::string header =
      "invoice_number,period,currency,model,token_class,batch,tier,tokens,amount_micros,"
      "amount_minor\n";
  CHECK(invoice_csv(R"({"number":null,"period":"2026-11","currency":"EUR","lines":[],)"
                    R"("total_micros":0,"total_minor":0,"credits":[],)"
                    R"("total_due_micros":0,"total_due_minor":0})") ==
        header + ",2026-11,EUR,total,,,,,0,0\n,2026-11,EUR,total_due,,,,,0,0\n");
  CHECK(invoice_csv("not json") == header);
  // Every row has the header's ten columns (no value here needs quoting).
  const std::string csv = invoice_csv(
      R"({"number":"TG-1","period":"2026-11","currency":"JPY","lines":[{"model":"m",)"
      R"("token_class":"cached_input","batch":false,"tier":3,"tokens":7,"amount_micros":1,)"
      R"("amount_minor":0}],"total_micros":1,"total_minor":0,"credits":[],)"
      R"("total_due_micros":1,"total_due_minor":0})");
  std::size_t rows = 0, at = 0;
  while (at < csv.size()) {
    const auto nl = csv.find('\n', at);
    REQUIRE(nl != std::string::npos);
    CHECK(std::count(csv.begin() + at, csv.begin() + nl, ',') == 9);
    ++rows;
    at = nl + 1;
  }
  CHECK(rows == 4);  // header, line, total, total due
}
