// Unit tests of token banking (billing/allowance_rollover): period arithmetic, the terms'
// rollover_periods, which earlier periods roll into a period, a worked example over four
// months (with late usage of a settled month), and a property test: with rollovers in play,
// each month's per-event charges equal its pricing with the allowance less what rolled over,
// no rollover grant pays more tokens than it holds or pays after it expires, and what rolled
// over is exactly what the month left unused when it was settled; a rollover grant pays no
// context band's tokens; the cost preview lists only what paid for the period's own events.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "billing/allowance_rollover.hpp"
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
constexpr std::int64_t dec_2026 = 1'796'083'200;
constexpr std::int64_t jan_2027 = 1'798'761'600;
constexpr std::int64_t feb_2027 = 1'801'440'000;

basic_result<plan_terms, std::string> terms_of(const std::string& json) {
  const auto doc = json::document::parse(json);
  REQUIRE(doc);
  return parse_plan_terms(doc->root());
}

rating_event event(std::int64_t at, std::int64_t input) {
  rating_event e;
  e.tenant_id = "ten_1";
  e.request_id = "req";
  e.occurred_at_s = at;
  e.model = "m";
  e.input = input;
  return e;
}

// What the ledger writer does for one event (billing/ledger_rating.cpp): the first
// interactive event of a period settles the earlier periods' rollovers into grants, then
// bundles (rollover grants among them) pay what the allowance leaves, then the rest is rated.
struct banking_ledger {
  plan_history plans;
  accumulator_map acc;
  std::vector<token_bundle> bundles;
  std::set<std::string> settled;                     // periods whose first event was rated
  std::map<std::string, std::int64_t> charged;       // by period
  std::map<std::string, std::int64_t> rated_tokens;  // by period: tokens not paid by grants
  std::map<std::string, std::int64_t> grant_tokens;  // by grant: tokens it paid for

  std::int64_t rate(rating_event e) {
    const std::string period = period_of(e.occurred_at_s);
    if (settled.insert(period).second) {
      for (const auto& s : rollover_sources(plans, e.tenant_id, period)) {
        if (auto g = settle_rollover(e.tenant_id, s, acc[s.key])) {
          insert_in_drawdown_order(bundles, std::move(*g));
        }
      }
    }
    const rating_plan& plan = *plan_for_period(plans, period);
    for (const auto& d : cover_with_bundles(plan, e, acc, bundles)) {
      CHECK(d.amount_micros == 0);
      const token_bundle& b = bundles[d.bundle];
      CHECK(e.occurred_at_s >= b.effective_at_s);
      CHECK(e.occurred_at_s < b.expires_at_s.value());
      grant_tokens[b.grant_id] += d.tokens;
    }
    const auto rated = rate_event(plan, e, acc);
    REQUIRE(rated);
    charged[period] += rated->cost_micros;
    rated_tokens[period] += e.input;
    return rated->cost_micros;
  }
};

}  // namespace

TEST_CASE("periods shift by months across years and stop at the calendar's ends") {
  CHECK(shift_period("2026-11", 1) == "2026-12");
  CHECK(shift_period("2026-11", 2) == "2027-01");
  CHECK(shift_period("2026-11", -11) == "2025-12");
  CHECK(shift_period("2026-11", 0) == "2026-11");
  CHECK(shift_period("1970-01", -1) == std::nullopt);
  CHECK(shift_period("9999-12", 1) == std::nullopt);
  CHECK(shift_period("2026-13", 1) == std::nullopt);
  CHECK(shift_period("2026-1", 1) == std::nullopt);
}

TEST_CASE("an allowance's rollover_periods is checked and kept") {
  const auto t = terms_of(
      R"({"allowances":[{"model":"m","token_class":"input","tokens":5,"rollover_periods":3}]})");
  REQUIRE(t);
  CHECK(t->allowances[0].rollover_periods == 3);
  CHECK(t->rolls_over());
  CHECK(plan_terms_json(*t) ==
        R"({"allowances":[{"model":"m","token_class":"input","tokens":5,"rollover_periods":3}]})");
  const auto none = terms_of(R"({"allowances":[{"model":"m","token_class":"input","tokens":5}]})");
  REQUIRE(none);
  CHECK_FALSE(none->rolls_over());
  CHECK(plan_terms_json(*none).find("rollover") == std::string::npos);
  for (const char* bad :
       {R"("rollover_periods":13)", R"("rollover_periods":-1)", R"("rollover_periods":"2")",
        R"("rollover_periods":1.5)", R"("rollover_periods":null)"}) {
    INFO(bad);
    const auto r = terms_of(std::string(R"({"allowances":[{"model":"m","token_class":"input",)") +
                            R"("tokens":5,)" + bad + "}]}");
    REQUIRE_FALSE(r);
    CHECK(r.error().find("rollover_periods") != std::string::npos);
  }
}

TEST_CASE("the periods that roll into a period: within rollover_periods, from the first plan on") {
  rating_plan plan;
  plan.from_period = "2026-09";
  plan.terms =
      *terms_of(R"({"allowances":[)"
                R"({"model":"m","token_class":"input","tokens":1000,"rollover_periods":2},)"
                R"({"model":"m","token_class":"output","tokens":500}]})");
  const plan_history plans{plan};
  const auto dec = rollover_sources(plans, "ten_1", "2026-12");
  REQUIRE(dec.size() == 2);
  CHECK(dec[0].from_period == "2026-11");
  CHECK(dec[1].from_period == "2026-10");
  CHECK(dec[0].key == accumulator_key{"ten_1", "2026-11", "m", "input", false});
  CHECK(dec[0].allowance == 1000);
  CHECK(dec[0].periods == 2);
  CHECK(rollover_sources(plans, "ten_1", "2026-10").size() == 1);  // 2026-09 only
  CHECK(rollover_sources(plans, "ten_1", "2026-09").empty());      // nothing before the plan
  // A grant's id is the same wherever it is computed, and differs per period.
  CHECK(rollover_grant_id("ten_1", dec[0]) == rollover_grant_id("ten_1", dec[0]));
  CHECK(rollover_grant_id("ten_1", dec[0]) != rollover_grant_id("ten_1", dec[1]));
  CHECK(rollover_grant_id("ten_1", dec[0]).rfind("cg_rollover_", 0) == 0);
  CHECK(rollover_grant_id("ten_1", dec[0]).size() == 12 + 32);
}

TEST_CASE("worked example: unused allowance rolls over for two months, late usage pays") {
  // Source: issue 24 ("optional rollover of the unused part for a bounded number of periods
  // ('token banking'), recorded as transfers"), in the manner of a mobile plan's rollover
  // minutes. 1M input tokens included a month, unused tokens roll over for 2 months; overage at
  // 2 currency units per 1M. November uses 400K: 600K roll over (usable December and January).
  // A late November event of 100K arrives after December began: November's allowance is
  // frozen at what it had covered (400K), so it pays 0.2 units. December uses 1.5M: its own 1M,
  // then 500K of November's 600K, nothing charged. January uses 1.3M: its 1M, November's last
  // 100K, 200K charged (0.4 units). February: November's grant has expired; December left
  // nothing unused, so February pays beyond its own allowance.
  banking_ledger ledger;
  rating_plan plan;
  plan.from_period = "2026-11";
  plan.versions = {
      {1, 0, prices_of(R"({"m":{"input":[{"rate":"2000000"}],"output":[{"rate":"0"}]}})")}};
  plan.terms = *terms_of(R"({"allowances":[{"model":"m","token_class":"input","tokens":1000000,)"
                         R"("rollover_periods":2}]})");
  ledger.plans = {plan};
  CHECK(ledger.rate(event(nov_2026 + 10, 400'000)) == 0);
  CHECK(ledger.rate(event(dec_2026 + 10, 100'000)) == 0);  // settles November: 600K roll over
  const accumulator_key nov_input{"ten_1", "2026-11", "m", "input", false};
  CHECK(ledger.acc[nov_input].rolled_over == 600'000);
  REQUIRE(ledger.bundles.size() == 1);
  CHECK(ledger.bundles[0].tokens == 600'000);
  CHECK(ledger.bundles[0].effective_at_s == dec_2026);
  CHECK(ledger.bundles[0].expires_at_s == feb_2027);
  CHECK(ledger.rate(event(nov_2026 + 20, 100'000)) == 200'000);  // late November usage
  CHECK(ledger.rate(event(dec_2026 + 20, 1'400'000)) == 0);      // 900K own, 500K rolled over
  CHECK(ledger.bundles[0].tokens_left == 100'000);
  CHECK(ledger.rate(event(jan_2027 + 10, 1'300'000)) == 400'000);
  const accumulator_key dec_input{"ten_1", "2026-12", "m", "input", false};
  CHECK(ledger.acc[dec_input].rolled_over == 0);  // December used its whole allowance
  CHECK(ledger.bundles.size() == 1);
  CHECK(ledger.bundles[0].tokens_left == 0);
  CHECK(ledger.rate(event(feb_2027 + 10, 1'100'000)) == 200'000);

  // Each month's invoice prices its totals (less what grants paid for) with its allowance
  // less what rolled over: the same as its events were charged.
  for (const auto& [period, tokens] : ledger.rated_tokens) {
    INFO(period);
    period_usage usage;
    usage.tier_mode = "graduated";
    usage.tier_scope = "model";
    usage.versions = {{1, R"({"m":{"input":[{"rate":"2000000"}],"output":[{"rate":"0"}]}})"}};
    usage.terms = plan.terms;
    const auto rolled = ledger.acc[{"ten_1", period, "m", "input", false}].rolled_over;
    usage.terms.allowances[0].tokens -= rolled.value_or(0);
    usage.rows = {{1, "m", false, tokens, 0, 0}};
    CHECK(price_period(usage).total_micros == ledger.charged[period]);
  }
}

TEST_CASE("property: rollovers keep each month's charges equal to its pricing") {
  std::mt19937_64 rng(28);
  const auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const std::int64_t months[] = {nov_2026, dec_2026, jan_2027, feb_2027};
  const char* const names[] = {"2026-11", "2026-12", "2027-01", "2027-02"};
  for (int round = 0; round < 300; ++round) {
    INFO("round " << round);
    const std::string prices = R"({"m":{"input":[{"up_to":)" + std::to_string(pick(1, 500)) +
                               R"(,"rate":")" + format_rate(pick(0, 9'999'999'999)) +
                               R"("},{"rate":")" + format_rate(pick(0, 9'999'999'999)) +
                               R"("}],"output":[{"rate":"0"}]}})";
    const std::int64_t allowance = pick(1, 900);
    banking_ledger ledger;
    rating_plan plan;
    plan.from_period = "2026-11";
    plan.versions = {{1, 0, prices_of(prices)}};
    plan.terms = *terms_of(R"({"allowances":[{"model":"m","token_class":"input","tokens":)" +
                           std::to_string(allowance) + R"(,"rollover_periods":)" +
                           std::to_string(pick(0, 3)) + "}]}");
    ledger.plans = {plan};
    // Events month by month, now and then a late one of the month before.
    for (int m = 0; m < 4; ++m) {
      for (std::int64_t i = pick(0, 8); i > 0; --i) {
        const bool late = m > 0 && pick(0, 4) == 0;
        const std::int64_t at = (late ? months[m - 1] : months[m]) + 1000 + pick(0, 100'000);
        CHECK(ledger.rate(event(at, pick(0, 400))) >= 0);
      }
    }
    for (const auto& b : ledger.bundles) {
      CHECK(b.tokens_left >= 0);
      CHECK(ledger.grant_tokens[b.grant_id] == b.tokens - b.tokens_left);
    }
    for (int m = 0; m < 4; ++m) {
      const auto& state = ledger.acc[{"ten_1", names[m], "m", "input", false}];
      if (state.rolled_over && *state.rolled_over > 0) {
        // What rolled over is what the month had left when it was settled (its position only
        // grew after), in one grant from the next month on.
        CHECK(state.position + *state.rolled_over >= allowance);
        const auto next = period_bounds(*shift_period(names[m], 1))->first;
        CHECK(
            std::count_if(ledger.bundles.begin(), ledger.bundles.end(), [&](const token_bundle& b) {
              return b.effective_at_s == next && b.tokens == *state.rolled_over;
            }) == 1);
      }
      period_usage usage;
      usage.tier_mode = "graduated";
      usage.tier_scope = "model";
      usage.versions = {{1, prices}};
      usage.terms = plan.terms;
      usage.terms.allowances[0].tokens -= state.rolled_over.value_or(0);
      usage.rows = {{1, "m", false, ledger.rated_tokens[names[m]], 0, 0}};
      CHECK(price_period(usage).total_micros == ledger.charged[names[m]]);
    }
  }
}

TEST_CASE("a rollover grant pays only for base-price tokens, not a context band's") {
  // The allowance it came from never covered a long-context request's tokens, so its rollover
  // does not either; a token bundle of the same class does.
  rating_plan plan;
  plan.from_period = "2026-11";
  plan.versions = {{1, 0,
                    prices_of(R"({"m":{"input":[{"rate":"1000000"}],"output":[{"rate":"0"}],)"
                              R"("context_bands":[{"above":100,"input":[{"rate":"2000000"}],)"
                              R"("output":[{"rate":"0"}]}]}})")}};
  plan.terms = *terms_of(
      R"({"allowances":[{"model":"m","token_class":"input","tokens":50,"rollover_periods":1}]})");
  const plan_history plans{plan};
  accumulator_map acc;
  const auto sources = rollover_sources(plans, "ten_1", "2026-12");
  REQUIRE(sources.size() == 1);
  auto grant = settle_rollover("ten_1", sources[0], acc[sources[0].key]);
  REQUIRE(grant);
  CHECK(grant->tokens == 50);
  std::vector<token_bundle> bundles{*grant};
  rating_event long_prompt = event(dec_2026 + 10, 150);
  long_prompt.prompt_tokens = 150;  // above the band's 100
  CHECK(cover_with_bundles(plan, long_prompt, acc, bundles).empty());
  CHECK(bundles[0].tokens_left == 50);
  token_bundle bought;
  bought.grant_id = "cg_bought";
  bought.model = "m";
  bought.tokens = bought.tokens_left = 40;
  bought.price_per_million_micros = 1'000'000;
  insert_in_drawdown_order(bundles, bought);
  const auto draws = cover_with_bundles(plan, long_prompt, acc, bundles);
  REQUIRE(draws.size() == 1);
  CHECK(bundles[draws[0].bundle].grant_id == "cg_bought");
  CHECK(draws[0].tokens == 40);
  // A base-price request draws the rollover grant (December's own allowance first).
  rating_event short_prompt = event(dec_2026 + 20, 80);
  short_prompt.prompt_tokens = 80;
  const auto base = cover_with_bundles(plan, short_prompt, acc, bundles);
  REQUIRE(base.size() == 1);
  CHECK(base[0].tokens == 30);
  CHECK(bundles[base[0].bundle].rollover);
}

TEST_CASE("the cost preview lists what paid for the period's own events only") {
  period_usage usage;
  usage.tenant_id = "ten_1";
  usage.period = "2026-11";
  usage.tier_mode = "graduated";
  usage.tier_scope = "model";
  usage.versions = {{1, R"({"m":{"input":[{"rate":"1000000"}],"output":[{"rate":"0"}]}})"}};
  const auto line = [](std::string kind, std::int64_t tokens, std::int64_t micros,
                       std::string period) {
    fee_line f;
    f.kind = std::move(kind);
    f.quantity = tokens;
    f.amount_micros = micros;
    f.bundle_id = "cg_x";
    f.model = "m";
    f.token_class = "input";
    f.period = std::move(period);
    return f;
  };
  const std::vector<fee_line> lines = {
      line("token_bundle", 100, 10, ""), line("allowance_rollover_in", 5, 0, ""),
      line("allowance_rollover_out", 7, 0, ""), line("token_bundle", 40, 4, "2026-10")};
  const std::string text = cost_preview_json(usage, std::nullopt, lines);
  const auto doc = json::document::parse(text);
  REQUIRE(doc);
  const auto listed = doc->root().find("token_bundles");
  REQUIRE(listed.size() == 2);
  CHECK(listed.at(0).find("kind").as_string() == "token_bundle");
  CHECK(listed.at(1).find("kind").as_string() == "allowance_rollover_in");
  CHECK(doc->root().find("token_bundles_micros").as_int64() == 10);
}
