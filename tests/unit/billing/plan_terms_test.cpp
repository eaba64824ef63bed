// Unit tests of plan terms: worked examples (a seat plan prorated mid-month, an allowance with
// overage at graduated tiers, a commitment true-up, a token bundle drawn before credit), each
// with its source, the terms' checks, and a property test: with allowances, token bundles, seats
// and commitments in play, per-event charges still
// telescope to the period's pricing, credit draws balance and never go negative, and the
// invoice's total is its lines and fees, its total due that less the credits applied.
#include <catch2/catch.hpp>

#include <random>

#include "billing/billing_export.hpp"
#include "billing/credits.hpp"
#include "billing/invoicing.hpp"
#include "billing/period_pricing.hpp"
#include "billing/plan_terms.hpp"
#include "billing/rating.hpp"
#include "billing/token_bundles.hpp"
#include "core/json_dom.hpp"
#include "tests/unit/billing/book_helpers.hpp"

using namespace tollgate;
using namespace tollgate::billing;
using tollgate::billing::test::prices_of;

namespace {

constexpr std::int64_t nov_2026 = 1'793'491'200;  // 2026-11-01 00:00:00 UTC
constexpr std::int64_t nov_2026_day = nov_2026 / 86'400;

plan_terms terms_of(const std::string& json) {
  const auto doc = json::document::parse(json);
  REQUIRE(doc);
  auto t = parse_plan_terms(doc->root());
  REQUIRE(t);
  return *t;
}

rating_event event(std::int64_t at, std::int64_t input, std::int64_t output, bool batch = false) {
  rating_event e;
  e.tenant_id = "ten_1";
  e.request_id = "req";
  e.occurred_at_s = at;
  e.model = "m";
  e.batch = batch;
  e.input = input;
  e.output = output;
  return e;
}

// Stripe's graduated example (docs.stripe.com/products-prices/pricing-models#graduated-pricing,
// per 1M tokens here): units 1..5M at 7, 5M..10M at 6.5, beyond at 6 currency units.
const std::string stripe_tiers =
    R"([{"up_to":5000000,"rate":"7000000"},{"up_to":10000000,"rate":"6500000"},)"
    R"({"rate":"6000000"}])";

}  // namespace

TEST_CASE("worked example: a seat plan prorated by day when seats change mid-month") {
  // Source: ChatGPT Team's published price, USD 30 per user per month (openai.com/chatgpt/
  // pricing), prorated by day as Slack's Fair Billing Policy does (slack.com/help/articles/
  // 218915077): 5 seats from 1 November, 8 from 16 November (a 30-day month). 5 x 30 x 15/30 +
  // 8 x 30 x 15/30 = 75 + 120 = USD 195; with a USD 20 base fee the period's fees are USD 215.
  const plan_terms t = terms_of(R"({"base_fee_micros":20000000,"seat_fee_micros":30000000})");
  const std::vector<seat_change> changes{{nov_2026_day - 40, 5}, {nov_2026_day + 15, 8}};
  const std::int64_t days = seat_days(changes, nov_2026_day, 30);
  CHECK(days == 15 * 5 + 15 * 8);
  const auto fees = fee_lines(t, days, 30, 0);
  REQUIRE(fees.size() == 2);
  CHECK(fees[0].kind == "base_fee");
  CHECK(fees[0].amount_micros == 20'000'000);
  CHECK(fees[1].kind == "seats");
  CHECK(fees[1].quantity == 195);
  CHECK(fees[1].amount_micros == 195'000'000);

  // The stated rounding: one floor for the period. USD 25 a seat, one seat from day 11 of a
  // 31-day month: 25 x 21 / 31 = 16.935483870... -> 16,935,483 micro-units.
  const auto odd = fee_lines(terms_of(R"({"seat_fee_micros":25000000})"),
                             seat_days({{nov_2026_day + 10, 1}}, nov_2026_day, 31), 31, 0);
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].amount_micros == 16'935'483);
  // A seat count set twice on one day is the last one set (the store keeps one row a day);
  // a seat count dropped to zero stops the fee from that day.
  CHECK(seat_days({{nov_2026_day, 3}, {nov_2026_day + 10, 0}}, nov_2026_day, 30) == 30);
  CHECK(seat_days({}, nov_2026_day, 30) == 0);
}

TEST_CASE("worked example: an allowance, then overage rated from the first graduated tier") {
  // Source: GitHub Copilot's allowance with overage (docs.github.com/en/copilot/concepts/
  // billing/copilot-requests: a monthly allowance, then each extra request billed), here in
  // tokens on Stripe's graduated tiers: 1M input tokens included, 7M used. The 6M past the
  // allowance are rated from the first tier: 5M x 7 + 1M x 6.5 = 41.5 currency units (without
  // the allowance, 7M would cost 5M x 7 + 2M x 6.5 = 48).
  rating_plan plan;
  plan.versions = {
      {1, 0,
       prices_of(R"({"m":{"input":)" + stripe_tiers + R"(,"output":[{"rate":"1000000"}]}})")}};
  plan.terms = terms_of(R"({"allowances":[{"model":"m","token_class":"input","tokens":1000000}]})");
  accumulator_map acc;
  std::int64_t cost = 0;
  for (int i = 0; i < 10; ++i) {
    const auto rated = rate_event(plan, event(nov_2026 + i, 700'000, 0), acc);
    REQUIRE(rated);
    if (i == 0) CHECK(rated->cost_micros == 0);  // 700,000 tokens: inside the allowance
    cost += rated->cost_micros;
  }
  CHECK(cost == 41'500'000);

  // The invoice's lines: the included tokens at tier 0, then tiers 1 and 2 from zero.
  period_usage period;
  period.tier_mode = "graduated";
  period.tier_scope = "model";
  period.versions = {
      {1, R"({"m":{"input":)" + stripe_tiers + R"(,"output":[{"rate":"1000000"}]}})"}};
  period.terms = plan.terms;
  period.rows = {{1, "m", false, 7'000'000, 0, 0}};
  const auto priced = price_period(period);
  REQUIRE(priced.lines.size() == 3);
  CHECK(priced.lines[0].included);
  CHECK(priced.lines[0].tier == 0);
  CHECK(priced.lines[0].tokens == 1'000'000);
  CHECK(priced.lines[0].amount_micros == 0);
  CHECK(priced.lines[1].tier == 1);
  CHECK(priced.lines[1].tokens == 5'000'000);
  CHECK(priced.lines[1].amount_micros == 35'000'000);
  CHECK(priced.lines[2].tier == 2);
  CHECK(priced.lines[2].tokens == 1'000'000);
  CHECK(priced.lines[2].amount_micros == 6'500'000);
  CHECK(priced.total_micros == cost);
  // The allowance is per model and class: output and batch usage are priced as before (batch
  // from its own first tier: 1M x 7, no discount in this plan).
  CHECK(rate_event(plan, event(nov_2026, 0, 10), acc)->cost_micros == 10);
  CHECK(rate_event(plan, event(nov_2026, 1'000'000, 0, true), acc)->cost_micros == 7'000'000);
  const std::string json = priced_lines_json(priced.lines);
  CHECK(json.find(R"("tier":0,"tokens":1000000,"amount_micros":0,"included":true)") !=
        std::string::npos);
}

TEST_CASE("worked example: a token bundle drawn before credit") {
  // Source: issue 24 ("prepaid token packs bought at a discount", drawn before money credits),
  // on Stripe's graduated tiers above (7 currency units per 1M input tokens up to 5M). The
  // tenant bought 2M input tokens of m at a locked 5 per 1M (10 units, paid up front) and holds
  // 20 units of purchased credit; it uses 3 x 1M input tokens. The first 2M come from the bundle
  // (2 x 5 = 10 units, paid by the bundle; the price book's tiers do not move), the third 1M is
  // rated from the first tier (7 units) and paid by the credit, which keeps 13. Without the
  // bundle the credit would have paid 20 of 21 and 1 unit would be due.
  rating_plan plan;
  plan.versions = {
      {1, 0,
       prices_of(R"({"m":{"input":)" + stripe_tiers + R"(,"output":[{"rate":"1000000"}]}})")}};
  std::vector<token_bundle> bundles = {
      {"cg_bundle", "m", tc_input, 2'000'000, 2'000'000, 5'000'000, 0, std::nullopt, {}}};
  std::vector<credit_grant_balance> grants = {
      {"cg_money", 20'000'000, 0, std::nullopt, std::nullopt}};
  CHECK(bundle_value_micros(2'000'000, 5'000'000) == 10'000'000);  // the bundle's amount
  accumulator_map acc;
  std::int64_t bundle_paid = 0, credit_paid = 0, bundle_tokens = 0;
  for (int i = 0; i < 3; ++i) {
    rating_event e = event(nov_2026 + i, 1'000'000, 0);
    std::int64_t by_bundle = 0;
    for (const auto& d : cover_with_bundles(plan, e, acc, bundles)) {
      by_bundle += d.amount_micros;
      bundle_tokens += d.tokens;
    }
    const auto rated = rate_event(plan, e, acc);
    REQUIRE(rated);
    std::int64_t by_credit = 0;
    for (const auto& d : draw_credit(grants, "m", nov_2026 + i, rated->cost_micros)) {
      by_credit += d.amount_micros;
    }
    CHECK(by_bundle + rated->cost_micros == (i < 2 ? 5'000'000 : 7'000'000));
    bundle_paid += by_bundle;
    credit_paid += by_credit;
  }
  CHECK(bundle_paid == 10'000'000);
  CHECK(bundle_tokens == 2'000'000);
  CHECK(bundles[0].tokens_left == 0);
  CHECK(credit_paid == 7'000'000);
  CHECK(grants[0].balance_micros == 13'000'000);
  CHECK(acc.begin()->second.position == 1'000'000);  // the tiers moved by the rated 1M only

  // The invoice: 1M input priced at tier 1, the bundle's line, the bundle's credit first.
  period_usage period;
  period.tier_mode = "graduated";
  period.tier_scope = "model";
  period.versions = {
      {1, R"({"m":{"input":)" + stripe_tiers + R"(,"output":[{"rate":"1000000"}]}})"}};
  period.rows = {{1, "m", false, 3'000'000 - bundle_tokens, 0, 0}};
  const auto priced = price_period(period);
  CHECK(priced.total_micros == 7'000'000);
  fee_line bundle_line;
  bundle_line.kind = "token_bundle";
  bundle_line.quantity = bundle_tokens;
  bundle_line.unit_amount_micros = 5'000'000;
  bundle_line.amount_micros = bundle_paid;
  bundle_line.bundle_id = "cg_bundle";
  bundle_line.model = "m";
  bundle_line.token_class = "input";
  const auto a = invoice_amounts_of(priced, {}, {bundle_line},
                                    {{"2026-11", "cg_bundle", "bundle", bundle_paid},
                                     {"2026-11", "cg_money", "purchased", credit_paid}},
                                    "2026-11", 2);
  CHECK(a.total_micros == 17'000'000);
  CHECK(a.credits_micros == 17'000'000);
  CHECK(a.credits_returned_micros == 0);
  CHECK(a.total_due_micros == 0);
  CHECK(a.fees_json.find(R"("kind":"token_bundle","quantity":2000000)") != std::string::npos);
  CHECK(a.fees_json.find(R"("bundle_id":"cg_bundle","model":"m","token_class":"input")") !=
        std::string::npos);
  // Batch usage is not drawn from bundles.
  std::vector<token_bundle> more = {
      {"cg_b2", "m", tc_input, 10, 10, 5'000'000, 0, std::nullopt, {}}};
  rating_event batch_event = event(nov_2026, 5, 0, true);
  CHECK(cover_with_bundles(plan, batch_event, acc, more).empty());
  CHECK(more[0].tokens_left == 10);
  // A bundle shared with some of the tenant's projects pays for their usage only.
  std::vector<token_bundle> scoped = {
      {"cg_b3", "m", tc_input, 10, 10, 5'000'000, 0, std::nullopt, {"prj_a", "prj_c"}}};
  for (const char* other : {"prj_b", ""}) {
    rating_event e = event(nov_2026, 4, 0);
    e.project_id = other;
    CHECK(cover_with_bundles(plan, e, acc, scoped).empty());
  }
  rating_event shared = event(nov_2026, 4, 0);
  shared.project_id = "prj_c";
  const auto draws = cover_with_bundles(plan, shared, acc, scoped);
  REQUIRE(draws.size() == 1);
  CHECK(draws[0].tokens == 4);
  CHECK(scoped[0].tokens_left == 6);
}

TEST_CASE("a mirrored event draws pooled bundles only up to the cover its hold counted") {
  // docs/CREDITS.md, "credit_only plans, in real time": the pools reserved a covered hold's
  // tokens for it, so an event rated earlier draws no more of the pooled bundles than its own
  // cover; bundles shared with some projects only, and other classes, are reserved by no hold.
  rating_plan plan;
  plan.versions = {
      {1, 0,
       prices_of(R"({"m":{"input":[{"rate":"2000000"}],)"
                 R"("output":[{"rate":"8000000"}],"cached_input":[{"rate":"1000000"}]}})")}};
  accumulator_map acc;
  std::vector<token_bundle> bundles = {
      {"cg_in", "m", tc_input, 100, 100, 1'000'000, 0, std::nullopt, {}},
      {"cg_out", "m", tc_output, 100, 100, 1'000'000, 0, std::nullopt, {}},
      {"cg_prj", "m", tc_output, 100, 100, 1'000'000, 0, std::nullopt, {"prj_a"}},
      {"cg_cached", "m", tc_cached_input, 100, 100, 1'000'000, 0, std::nullopt, {}}};
  // Held with no cover (the pool was covered by a request in flight): nothing from the pooled
  // bundles; the project's bundle and the cached class still pay.
  rating_event e = event(nov_2026, 10, 8);
  e.project_id = "prj_a";
  e.cached_input = 3;
  const auto draws = cover_with_bundles(plan, e, acc, bundles, pooled_cover{});
  std::int64_t left[4];
  for (int i = 0; i < 4; ++i) left[i] = bundles[i].tokens_left;
  CHECK(left[0] == 100);
  CHECK(left[1] == 100);
  CHECK(left[2] == 92);
  CHECK(left[3] == 97);
  CHECK(draws.size() == 2);
  CHECK(e.input == 10);  // paid with the money its hold counted
  CHECK(e.output == 0);
  // Covered 6 input and 5 output tokens: the pooled bundles pay those, the project's bundle
  // (drawn after them) the rest of the output, money the rest of the input.
  rating_event f = event(nov_2026, 10, 8);
  f.project_id = "prj_a";
  cover_with_bundles(plan, f, acc, bundles, pooled_cover{6, 5});
  CHECK(bundles[0].tokens_left == 94);
  CHECK(bundles[1].tokens_left == 95);
  CHECK(bundles[2].tokens_left == 89);
  CHECK(f.input == 4);
  CHECK(f.output == 0);
  // Without a mirrored hold (no Redis), the bundles draw in drawdown order as before.
  rating_event g = event(nov_2026, 10, 8);
  cover_with_bundles(plan, g, acc, bundles);
  CHECK(bundles[0].tokens_left == 84);
  CHECK(bundles[1].tokens_left == 87);
  CHECK(g.input == 0);
  CHECK(g.output == 0);
  // Two pooled bundles share one cover; a project's bundle first in drawdown order pays
  // before them, and what it paid is not taken from the cover.
  std::vector<token_bundle> several = {
      {"cg_prj2", "m", tc_output, 2, 2, 1'000'000, 0, std::nullopt, {"prj_a"}},
      {"cg_out1", "m", tc_output, 3, 3, 1'000'000, 0, std::nullopt, {}},
      {"cg_out2", "m", tc_output, 100, 100, 1'000'000, 0, std::nullopt, {}}};
  rating_event k = event(nov_2026, 0, 10);
  k.project_id = "prj_a";
  const auto shared = cover_with_bundles(plan, k, acc, several, pooled_cover{0, 5});
  CHECK(shared.size() == 3);
  CHECK(several[0].tokens_left == 0);   // 2 from the project's bundle
  CHECK(several[1].tokens_left == 0);   // 3 of the cover from the first pooled bundle
  CHECK(several[2].tokens_left == 98);  // the cover's other 2 from the second
  CHECK(k.output == 3);                 // paid with money
  // A rollover grant is not pooled: an event held with no cover still draws it.
  std::vector<token_bundle> rolled = {
      {"cg_in2", "m", tc_input, 100, 100, 1'000'000, 0, std::nullopt, {}},
      {"cg_roll", "m", tc_input, 50, 50, 0, 0, std::nullopt, {}}};
  rolled[1].rollover = true;
  rating_event h = event(nov_2026, 10, 0);
  cover_with_bundles(plan, h, acc, rolled, pooled_cover{});
  CHECK(rolled[0].tokens_left == 100);
  CHECK(rolled[1].tokens_left == 40);
  CHECK(h.input == 0);
}

TEST_CASE("worked example: usage included in money, then overage") {
  // Source: Cursor's Pro plan as announced in June 2025 ("$20 of frontier model usage per
  // month at API pricing", cursor.com/blog/june-2025-pricing), on Anthropic's published
  // Claude Sonnet 4 rates ($3 per 1M input tokens, $15 per 1M output tokens). Three requests:
  // 2M in + 500K out ($13.50), 1M in + 400K out ($9.00), 100K in ($0.30). The first $20 of the
  // month's usage is included: the first request costs nothing, the second $2.50 (it crosses
  // the $20), the third $0.30; the month's usage comes to $22.80 less $20.00 included.
  rating_plan plan;
  plan.versions = {
      {1, 0, prices_of(R"({"m":{"input":[{"rate":"3000000"}],"output":[{"rate":"15000000"}]}})")}};
  plan.terms = terms_of(R"({"included_usage_micros":20000000,"commitment_micros":10000000})");
  accumulator_map acc;
  const auto a = rate_event(plan, event(nov_2026, 2'000'000, 500'000), acc);
  const auto b = rate_event(plan, event(nov_2026 + 1, 1'000'000, 400'000), acc);
  const auto c = rate_event(plan, event(nov_2026 + 2, 100'000, 0), acc);
  REQUIRE((a && b && c));
  CHECK(a->cost_micros == 0);
  CHECK(a->included_micros == 13'500'000);
  CHECK(b->cost_micros == 2'500'000);
  CHECK(b->included_micros == 6'500'000);
  CHECK(c->cost_micros == 300'000);
  CHECK(c->included_micros == 0);
  const auto& included = acc.at({"ten_1", "2026-11", "*", "included_usage", false});
  CHECK(included.position == 22'800'000);
  CHECK(included.charged_micros == 2'800'000);

  // The invoice: the usage lines ($22.80), the included line (-$20.00); the commitment of
  // $10.00 compares with what usage costs after the allowance ($2.80): a true-up of $7.20.
  period_usage period;
  period.tier_mode = "graduated";
  period.tier_scope = "model";
  period.versions = {
      {1, R"({"m":{"input":[{"rate":"3000000"}],"output":[{"rate":"15000000"}]}})"}};
  period.terms = plan.terms;
  period.rows = {{1, "m", false, 3'100'000, 0, 900'000}};
  const auto priced = price_period(period);
  CHECK(priced.total_micros == 2'800'000);
  REQUIRE(priced.lines.size() == 3);
  CHECK(priced.lines[2].token_class == "included_usage");
  CHECK(priced.lines[2].amount_micros == -20'000'000);
  CHECK(priced.lines[2].included);
  const auto fees = fee_lines(plan.terms, 0, 30, priced.total_micros);
  REQUIRE(fees.size() == 1);
  CHECK(fees[0].kind == "commitment_true_up");
  CHECK(fees[0].amount_micros == 7'200'000);
  const auto amounts = invoice_amounts_of(priced, {}, fees, {}, "2026-11", 2);
  CHECK(amounts.total_micros == 10'000'000);
  CHECK(amounts.total_minor == 1'000);
  CHECK(amounts.lines_json.find(R"("model":"*","token_class":"included_usage","batch":false,)"
                                R"("tier":0,"tokens":0,"amount_micros":-20000000,)"
                                R"("amount_minor":-2000,"included":true)") != std::string::npos);
  // Usage under the allowance costs nothing and shows the included line at its size.
  period.rows = {{1, "m", false, 1'000'000, 0, 0}};
  const auto small = price_period(period);
  CHECK(small.total_micros == 0);
  CHECK(small.lines.back().amount_micros == -3'000'000);
  // The terms read back with the allowance in money.
  CHECK(plan_terms_json(plan.terms) ==
        R"({"commitment_micros":10000000,"included_usage_micros":20000000})");
}

TEST_CASE("worked example: a commitment true-up when usage falls short") {
  // Source: a minimum commitment as Orb bills it (docs.withorb.com/product-catalog/
  // minimums-and-maximums: "if usage falls below the minimum, a true-up line is added"):
  // USD 500 committed, USD 320.45 used: a true-up of USD 179.55. Usage above the commitment
  // adds nothing.
  const plan_terms t = terms_of(R"({"commitment_micros":500000000})");
  const auto short_month = fee_lines(t, 0, 30, 320'450'000);
  REQUIRE(short_month.size() == 1);
  CHECK(short_month[0].kind == "commitment_true_up");
  CHECK(short_month[0].amount_micros == 179'550'000);
  CHECK(fee_lines(t, 0, 30, 500'000'000).empty());
  CHECK(fee_lines(t, 0, 30, 612'000'000).empty());

  // On the invoice: the usage line, the true-up, a credit; the total due is the rest.
  period_pricing priced;
  priced.lines.push_back(priced_line{"m", "input", false, 1, 100, 320'450'000, {1}});
  priced.total_micros = 320'450'000;
  const auto a = invoice_amounts_of(priced, {}, short_month,
                                    {{"2026-11", "cg_1", "promotional", 50'000'000}}, "2026-11", 2);
  CHECK(a.total_micros == 500'000'000);
  CHECK(a.total_minor == 50'000);
  CHECK(a.credits_micros == 50'000'000);
  CHECK(a.total_due_micros == 450'000'000);
  CHECK(a.fees_json ==
        R"([{"kind":"commitment_true_up","quantity":1,"unit_amount_micros":179550000,)"
        R"("amount_micros":179550000,"amount_minor":17955}])");
  CHECK(invoice_csv(R"({"number":"TG-1","period":"2026-11","currency":"USD","lines":[],)"
                    R"("fees":[{"kind":"seats","quantity":195,"amount_micros":195000000,)"
                    R"("amount_minor":19500}],"total_micros":195000000,"total_minor":19500,)"
                    R"("credits":[],"total_due_micros":195000000,"total_due_minor":19500})")
            .find("TG-1,2026-11,USD,seats,fee,,,195,195000000,19500\n") != std::string::npos);
}

TEST_CASE("fees and included tokens become Stripe invoice items that add up to the total due") {
  const std::string invoice =
      R"({"id":"inv_1","number":"TG-1","tenant_id":"ten_1","period":"2026-11","currency":"USD",)"
      R"("lines":[{"model":"m","token_class":"input","batch":false,"tier":0,"tokens":40,)"
      R"("amount_micros":0,"amount_minor":0,"included":true},{"model":"m","token_class":"input",)"
      R"("batch":false,"tier":1,"tokens":60,"amount_micros":1500000,"amount_minor":150}],)"
      R"("fees":[{"kind":"base_fee","quantity":1,"unit_amount_micros":20000000,)"
      R"("amount_micros":20000000,"amount_minor":2000},{"kind":"seats","quantity":195,)"
      R"("unit_amount_micros":30000000,"amount_micros":195000000,"amount_minor":19500}],)"
      R"("credits":[{"period":"2026-11","grant_id":"cg_1","kind":"purchased",)"
      R"("amount_micros":1000000,"amount_minor":100}],"total_due_minor":21550})";
  const std::string items = stripe_invoice_items_json(invoice);
  const auto doc = json::document::parse(items);
  REQUIRE(doc);
  const auto data = doc->root().find("data");
  REQUIRE(data.size() == 5);
  std::int64_t sum = 0;
  for (std::uint32_t i = 0; i < data.size(); ++i) sum += data.at(i).find("amount").as_int64();
  CHECK(sum == 21'550);
  CHECK(data.at(0).find("description").as_string() ==
        "m input, included in the allowance: 40 tokens");
  CHECK(data.at(2).find("description").as_string() == "Base fee");
  CHECK(data.at(3).find("description").as_string() == "Seats: 195 seat-days");
  CHECK(data.at(3).find("metadata").find("tollgate_kind").as_string() == "fee");
  CHECK(data.at(4).find("amount").as_int64() == -100);
}

TEST_CASE("plan terms are checked and canonical") {
  const auto doc = json::document::parse(
      R"({"base_fee_micros":1,"allowances":[{"model":"z","token_class":"output","tokens":5},)"
      R"({"model":"a","token_class":"cache_write","tokens":7}]})");
  REQUIRE(doc);
  const auto t = parse_plan_terms(doc->root());
  REQUIRE(t);
  // Sorted; any token class name fits (classes other branches add, such as cache_write).
  CHECK(plan_terms_json(*t) ==
        R"({"base_fee_micros":1,"allowances":[{"model":"a","token_class":"cache_write",)"
        R"("tokens":7},{"model":"z","token_class":"output","tokens":5}]})");
  CHECK(t->allowance_of("a", "cache_write") == 7);
  CHECK(t->allowance_of("a", "output") == 0);
  for (const char* bad :
       {R"({"base_fee_micros":-1})", R"({"seat_fee_micros":1000000000001})",
        R"({"commitment_micros":"5"})", R"({"allowances":{}})",
        R"({"allowances":[{"model":"m","token_class":"input","tokens":0}]})",
        R"({"allowances":[{"model":"m","token_class":"Input","tokens":1}]})",
        R"({"allowances":[{"model":"","token_class":"input","tokens":1}]})",
        R"({"allowances":[{"model":"m","token_class":"input","tokens":1,"x":1}]})",
        R"({"allowances":[{"model":"m","token_class":"input","tokens":1},)"
        R"({"model":"m","token_class":"input","tokens":2}]})"}) {
    INFO(bad);
    const auto d = json::document::parse(bad);
    REQUIRE(d);
    CHECK_FALSE(parse_plan_terms(d->root()));
  }
}

TEST_CASE("property: allowances, bundles, seats and commitments keep every figure exact") {
  std::mt19937_64 rng(24);
  const auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  for (int round = 0; round < 300; ++round) {
    INFO("round " << round);
    std::string tiers = "[";
    std::int64_t bound = 0;
    const int n = static_cast<int>(pick(1, 4));
    for (int i = 0; i < n; ++i) {
      tiers += i ? "," : "";
      tiers += i + 1 < n ? "{\"up_to\":" + std::to_string(bound += pick(1, 400)) + "," : "{";
      tiers += "\"rate\":\"" + format_rate(pick(0, 9'999'999'999)) +
               "\",\"flat_fee\":" + std::to_string(pick(0, 3)) + "}";
    }
    tiers += "]";
    const std::string prices = "{\"m\":{\"input\":" + tiers + ",\"output\":" + tiers + "}}";
    const std::string terms =
        "{\"commitment_micros\":" + std::to_string(pick(0, 20'000)) +
        ",\"included_usage_micros\":" + std::to_string(pick(0, 1) ? pick(0, 30'000) : 0) +
        ",\"seat_fee_micros\":" + std::to_string(pick(0, 9'999'999)) +
        ",\"allowances\":[{\"model\":\"m\",\"token_class\":\"input\","
        "\"tokens\":" +
        std::to_string(pick(1, 900)) + "}," +
        "{\"model\":\"m\",\"token_class\":\"output\",\"tokens\":" + std::to_string(pick(1, 900)) +
        "}]}";
    rating_plan plan;
    plan.batch_discount_bp = static_cast<int>(pick(0, 10'000));
    plan.versions = {{1, 0, prices_of(prices)}};
    plan.terms = terms_of(terms);
    period_usage period;
    period.tier_mode = "graduated";
    period.tier_scope = "model";
    period.batch_discount_bp = plan.batch_discount_bp;
    period.versions = {{1, prices}};
    period.terms = plan.terms;

    // Token bundles of input or output tokens at random locked prices, some expiring
    // mid-period, drawn before the credit.
    std::vector<token_bundle> bundles;
    for (std::int64_t b = pick(0, 3); b > 0; --b) {
      const std::int64_t tokens = pick(1, 2'000);
      std::optional<std::int64_t> expires;
      if (pick(0, 2) == 0) expires = nov_2026 + pick(1, 40);
      bundles.push_back({"cg_b" + std::to_string(b), "m", pick(0, 1) ? tc_input : tc_output, tokens,
                         tokens, pick(1, 9'999'999), 0, expires, {}});
    }
    std::int64_t bundle_micros = 0;
    std::int64_t bundle_tokens[2] = {0, 0};  // input, output
    std::int64_t interactive[2] = {0, 0};
    // Events in random order and sizes, credit drawn as they are rated.
    std::vector<credit_grant_balance> grants;
    std::int64_t granted = 0;
    for (std::int64_t g = pick(0, 3); g > 0; --g) {
      grants.push_back({"cg_" + std::to_string(g), pick(0, 5'000), 0, std::nullopt, std::nullopt});
      granted += grants.back().balance_micros;
    }
    accumulator_map acc;
    std::int64_t cost = 0;
    std::int64_t drawn = 0;
    for (std::int64_t i = pick(1, 40); i > 0; --i) {
      const std::int64_t in = pick(0, 300);
      const std::int64_t out = pick(0, 300);
      const bool batch = pick(0, 3) == 0;
      rating_event e = event(nov_2026 + i, in, out, batch);
      for (const auto& d : cover_with_bundles(plan, e, acc, bundles)) {
        CHECK(d.tokens > 0);
        CHECK(d.amount_micros >= 0);
        bundle_micros += d.amount_micros;
        bundle_tokens[d.token_class == tc_input ? 0 : 1] += d.tokens;
      }
      if (!batch) {
        interactive[0] += in;
        interactive[1] += out;
      }
      const auto rated = rate_event(plan, e, acc);
      REQUIRE(rated);
      CHECK(rated->cost_micros >= 0);
      cost += rated->cost_micros;
      std::int64_t paid = 0;
      for (const auto& d : draw_credit(grants, "m", nov_2026 + i, rated->cost_micros)) {
        paid += d.amount_micros;
      }
      CHECK(paid <= rated->cost_micros);
      drawn += paid;
      period.rows.push_back({1, "m", batch, e.input, 0, e.output});
    }
    // The charges telescope to the period's pricing, allowances included and the tokens the
    // bundles paid for left out.
    const auto priced = price_period(period);
    CHECK(cost == priced.total_micros);
    // Bundles: never below zero, drawn only past the allowance, and what each paid telescopes
    // to floor(drawn x price / 10^6) (a zero-sum transfer of tokens and money).
    std::int64_t bundle_value = 0;
    std::int64_t left_tokens[2] = {0, 0};
    for (const auto& b : bundles) {
      CHECK(b.tokens_left >= 0);
      bundle_value += bundle_value_micros(b.tokens - b.tokens_left, b.price_per_million_micros);
      left_tokens[b.token_class == tc_input ? 0 : 1] += b.tokens_left;
    }
    CHECK(bundle_value == bundle_micros);
    CHECK(bundle_tokens[0] <=
          std::max<std::int64_t>(0, interactive[0] - plan.terms.allowance_of("m", "input")));
    CHECK(bundle_tokens[1] <=
          std::max<std::int64_t>(0, interactive[1] - plan.terms.allowance_of("m", "output")));
    // Without expiry, a bundle is used up before usage past the allowance is charged.
    const bool none_expire = std::none_of(bundles.begin(), bundles.end(),
                                          [](const auto& b) { return b.expires_at_s.has_value(); });
    if (none_expire && left_tokens[0] > 0) {
      CHECK(bundle_tokens[0] ==
            std::max<std::int64_t>(0, interactive[0] - plan.terms.allowance_of("m", "input")));
    }
    // Credit: what the grants lost is what the events were paid (a zero-sum transfer), and no
    // grant goes below zero.
    std::int64_t left = 0;
    for (const auto& g : grants) {
      CHECK(g.balance_micros >= 0);
      left += g.balance_micros;
    }
    CHECK(granted - left == drawn);
    // Seats and the commitment on the invoice: the total is the lines and fees, the total due
    // that less the credits; the true-up tops usage up to exactly the commitment.
    std::vector<seat_change> changes;
    for (std::int64_t c = pick(0, 4), day = nov_2026_day - 3; c > 0; --c) {
      changes.push_back({day += pick(0, 12), pick(0, 50)});
    }
    const std::int64_t days = seat_days(changes, nov_2026_day, 30);
    const auto fees = fee_lines(plan.terms, days, 30, priced.total_micros);
    std::int64_t fee_total = 0;
    std::int64_t true_up = 0;
    for (const auto& f : fees) {
      CHECK(f.amount_micros > 0);
      fee_total += f.amount_micros;
      if (f.kind == "commitment_true_up") true_up = f.amount_micros;
      if (f.kind == "seats") CHECK(f.amount_micros <= plan.terms.seat_fee_micros * 50);
    }
    CHECK(std::max(priced.total_micros + true_up, plan.terms.commitment_micros) ==
          priced.total_micros + true_up);
    if (priced.total_micros < plan.terms.commitment_micros) {
      CHECK(priced.total_micros + true_up == plan.terms.commitment_micros);
    }
    std::vector<applied_credit> credits;
    std::vector<fee_line> lines_and_bundles = fees;
    if (bundle_micros > 0) {
      credits.push_back({"2026-11", "cg_b1", "bundle", bundle_micros});
      fee_line l;
      l.kind = "token_bundle";
      l.quantity = bundle_tokens[0] + bundle_tokens[1];
      l.amount_micros = bundle_micros;
      l.bundle_id = "cg_b1";
      lines_and_bundles.push_back(l);
    }
    if (drawn > 0) credits.push_back({"2026-11", "cg_1", "promotional", drawn});
    const auto a = invoice_amounts_of(priced, {}, lines_and_bundles, credits, "2026-11", 2);
    CHECK(a.credits_returned_micros == 0);
    CHECK(a.total_micros == priced.total_micros + fee_total + bundle_micros);
    CHECK(a.total_due_micros == a.total_micros - a.credits_micros);
    CHECK(a.total_due_micros >= 0);
  }
}
