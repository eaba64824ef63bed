// Unit tests of the budget module's pure parts (metering/budgets/): the kinds' names (windows of
// any length included), the policy (which budgets apply, models, charges, spend pricing,
// refusals, x-ratelimit-* headers, batch admission, the listings' usage fields), reconcile's
// spans and report, and the alert decisions.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "metering/budgets/alerts.hpp"
#include "metering/budgets/policy.hpp"
#include "metering/budgets/reconcile.hpp"

using namespace tollgate::metering;

namespace {

constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();
// 2026-01-01T00:00:00Z, a day (and month) boundary.
constexpr std::int64_t t0 = 1'767'225'600'000;

budget_info budget(std::string id, budget_scope scope, std::string scope_id, budget_metric metric,
                   window_spec window, std::int64_t limit) {
  budget_info b;
  b.id = std::move(id);
  b.scope = scope;
  b.scope_id = std::move(scope_id);
  b.metric = metric;
  b.window = window;
  b.limit = limit;
  return b;
}

credit_rate rate(std::string model, std::int64_t input, std::int64_t output,
                 std::int64_t flat = 0) {
  credit_rate r;
  r.model = std::move(model);
  r.input = input;
  r.output = output;
  r.flat_fees_micros = flat;
  return r;
}

std::string header(const header_list& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

}  // namespace

TEST_CASE("budget kinds: names round-trip, anything else is refused") {
  for (auto m : {budget_metric::tokens, budget_metric::requests, budget_metric::spend,
                 budget_metric::credit}) {
    CHECK(parse_budget_metric(name_of(m)) == m);
  }
  for (auto s : {budget_scope::tenant, budget_scope::project, budget_scope::key}) {
    CHECK(parse_budget_scope(name_of(s)) == s);
  }
  for (auto w :
       {budget_window::minute, budget_window::hour, budget_window::day, budget_window::week,
        budget_window::month, budget_window::quarter, budget_window::lifetime}) {
    CHECK(parse_budget_window(name_of(window_spec(w))) == window_spec(w));
  }
  CHECK(name_of(budget_metric::spend) == "spend");
  CHECK(name_of(budget_scope::key) == "key");
  CHECK(name_of(window_spec(budget_window::lifetime)) == "lifetime");
  CHECK_FALSE(parse_budget_metric("Tokens"));
  CHECK_FALSE(parse_budget_metric("token"));
  CHECK_FALSE(parse_budget_metric(""));
  CHECK_FALSE(parse_budget_scope("api_key"));
  CHECK_FALSE(parse_budget_window("minute "));
  CHECK_FALSE(parse_budget_window("Week"));
  // The minute slides; the calendar windows do not.
  CHECK(window_spec(budget_window::minute).sliding());
  CHECK(window_spec(budget_window::minute).length_ms == 60'000);
  CHECK_FALSE(window_spec(budget_window::week).sliding());
  CHECK_FALSE(window_spec(budget_window::lifetime).sliding());
}

TEST_CASE("budget kinds: duration windows from 1m to 31d, named in their largest whole unit") {
  const auto w = parse_budget_window("90s");
  REQUIRE(w);
  CHECK(w->kind == budget_window::duration);
  CHECK(w->length_ms == 90'000);
  CHECK(w->sliding());
  CHECK(name_of(*w) == "90s");
  const std::vector<std::pair<std::string, std::string>> canonical{
      {"120s", "2m"},  {"15m", "15m"}, {"60m", "1h"}, {"90m", "90m"},
      {"3h", "3h"},    {"24h", "1d"},  {"2d", "2d"},  {"1m", "1m"},
      {"744h", "31d"}, {"31d", "31d"}, {"60s", "1m"}, {"44640m", "31d"}};
  for (const auto& [text, name] : canonical) {
    INFO(text);
    const auto parsed = parse_budget_window(text);
    REQUIRE(parsed);
    CHECK(name_of(*parsed) == name);
    CHECK(parse_budget_window(name_of(*parsed)) == parsed);  // the stored name reads back
  }
  // "1m" is a duration of one minute: it counts like the named minute.
  CHECK(parse_budget_window("1m")->length_ms == window_spec(budget_window::minute).length_ms);
  for (const char* bad : {"59s", "0m", "01m", "32d", "745h", "2678401s", "1.5h", "m", "1w", "1",
                          "-1m", "", " 1m", "1m ", "1M", "1000000000d", "9999999999s", "1h30m"}) {
    INFO(bad);
    CHECK_FALSE(parse_budget_window(bad));
  }
}

TEST_CASE("policy: tenant budgets apply to every caller, project and key ones to theirs") {
  const std::vector<budget_info> all{
      budget("bud_t", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 10),
      budget("bud_p", budget_scope::project, "prj_a", budget_metric::tokens, budget_window::day,
             10),
      budget("bud_k", budget_scope::key, "key_a", budget_metric::requests, budget_window::minute,
             5),
      budget("bud_p2", budget_scope::project, "prj_b", budget_metric::spend, budget_window::month,
             7)};
  CHECK(budget_applies(all[0], "", ""));
  CHECK(budget_applies(all[1], "prj_a", "key_x"));
  CHECK_FALSE(budget_applies(all[1], "prj_b", "key_a"));
  // A tenant-wide key ("" project) is under no project's budget.
  CHECK_FALSE(budget_applies(all[1], "", "key_a"));
  CHECK(budget_applies(all[2], "prj_b", "key_a"));
  // A key budget is matched on the key, never on a project of the same id.
  CHECK_FALSE(budget_applies(all[2], "key_a", "key_b"));

  const auto applying = applying_budgets(all, "prj_a", "key_a", "gpt-a");
  REQUIRE(applying.size() == 3);
  CHECK(applying[0] == &all[0]);  // pointers into the list, in its order
  CHECK(applying[1] == &all[1]);
  CHECK(applying[2] == &all[2]);
  CHECK(applying_budgets(all, "prj_b", "key_z", "gpt-a").size() == 2);
  CHECK(applying_budgets({}, "prj_a", "key_a", "gpt-a").empty());
}

TEST_CASE("policy: a budget limited to models counts only their requests; listings show it") {
  std::vector<budget_info> all{
      budget("bud_all", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 10),
      budget("bud_4o", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 10),
      budget("bud_k", budget_scope::key, "key_a", budget_metric::requests, budget_window::week, 5),
      budget("credit:ten_a", budget_scope::tenant, "", budget_metric::credit,
             budget_window::lifetime, 100)};
  all[1].models = std::vector<std::string>{"gpt-4o", "gpt-4o-mini"};
  all[2].models = std::vector<std::string>{"gpt-x"};
  CHECK(budget_counts_model(all[0], "anything"));
  CHECK(budget_counts_model(all[1], "gpt-4o"));
  CHECK(budget_counts_model(all[1], "gpt-4o-mini"));
  CHECK_FALSE(budget_counts_model(all[1], "gpt-4"));
  CHECK_FALSE(budget_counts_model(all[1], "GPT-4o"));  // model names are exact
  const auto for_4o = applying_budgets(all, "", "key_a", "gpt-4o");
  REQUIRE(for_4o.size() == 3);
  CHECK(for_4o[1] == &all[1]);
  CHECK(for_4o[2] == &all[3]);
  const auto for_other = applying_budgets(all, "", "key_a", "dev-echo");
  REQUIRE(for_other.size() == 2);
  CHECK(for_other[0] == &all[0]);
  CHECK(for_other[1] == &all[3]);
  // A caller is shown every budget that covers it, whatever its models, but not the credit
  // mirror; another key does not see this key's budget.
  const auto listed = listed_budgets(all, "", "key_a");
  REQUIRE(listed.size() == 3);
  CHECK(listed[2] == &all[2]);
  CHECK(listed_budgets(all, "", "key_b").size() == 2);
  // Budgets of end users, tags and sessions count the requests' attribution, not the key.
  std::vector<budget_info> with_user = all;
  with_user.push_back(budget("bud_u", budget_scope::end_user, "", budget_metric::tokens,
                             budget_window::day, 5));
  CHECK(listed_budgets(with_user, "", "key_a").size() == 3);
}

TEST_CASE("policy: a budget's rule carries its window instance in the tenant's zone") {
  budget_info b =
      budget("bud_d", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 1000);
  b.hard = false;
  b.alert_thresholds = {50, 100};
  const limit_rule utc = rule_of(b, t0 + 5);
  CHECK(utc.id == "bud_d");
  CHECK(utc.window == budget_window::day);
  CHECK(utc.limit == 1000);
  CHECK_FALSE(utc.hard);
  CHECK(utc.alert_percents == std::vector<int>{50, 100});
  CHECK(utc.fixed_end_ms == 0);
  CHECK(utc.start_at(t0 + 5) == t0);

  // A tenant at UTC+2: its day runs [t0 - 2h, t0 + 22h), the next ends at t0 + 46h.
  const std::int64_t h = 3'600'000;
  b.zone_start_ms = t0 - 2 * h;
  b.zone_end_ms = t0 + 22 * h;
  b.zone_next_end_ms = t0 + 46 * h;
  const limit_rule now = rule_of(b, t0 + 22 * h - 1);
  CHECK(now.fixed_start_ms == t0 - 2 * h);
  CHECK(now.fixed_end_ms == t0 + 22 * h);
  CHECK(now.start_at(t0 + 22 * h - 1) == t0 - 2 * h);
  // Past its end (the cache not refreshed yet): the next instance.
  const limit_rule next = rule_of(b, t0 + 22 * h);
  CHECK(next.fixed_start_ms == t0 + 22 * h);
  CHECK(next.fixed_end_ms == t0 + 46 * h);
  // Past that too: UTC windows again.
  const limit_rule late = rule_of(b, t0 + 46 * h);
  CHECK(late.fixed_end_ms == 0);
  CHECK(late.start_at(t0 + 46 * h) == t0 + 24 * h);
}

TEST_CASE("policy: the plan's rate for a model, or its book's \"*\" rate") {
  const std::vector<credit_rate> rates{rate("gpt-a", 1, 2), rate("*", 3, 4), rate("gpt-b", 5, 6)};
  REQUIRE(plan_rate_of(rates, "gpt-b"));
  CHECK(plan_rate_of(rates, "gpt-b")->input == 5);
  // The last match wins: "*" comes after gpt-a's own rate.
  CHECK(plan_rate_of(rates, "gpt-a")->input == 3);
  CHECK(plan_rate_of(rates, "other")->model == "*");
  CHECK_FALSE(plan_rate_of({rate("gpt-a", 1, 2)}, "gpt-b"));
  CHECK_FALSE(plan_rate_of({}, "gpt-a"));
}

TEST_CASE("policy: spend is priced by the plan when a budget carries one, else estimated") {
  budget_info spend = budget("bud_s", budget_scope::tenant, "", budget_metric::spend,
                             budget_window::month, 1'000'000);
  const budget_info tokens =
      budget("bud_t", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 100);
  // Estimate prices: 2.50 and 10.00 per million tokens.
  const spend_pricing estimated = spend_pricing_of(spend, "gpt-a", 2'500'000, 10'000'000);
  CHECK_FALSE(estimated.plan_priced);
  CHECK(estimated.input_price == 2'500'000);
  CHECK(spend_cost_micros(estimated, 1000, 1) == 2'510);

  // A plan: 5.00 per million input tokens (rate_e6), 20.00 output, a 7 micro-unit flat fee.
  spend.plan_rates = {rate("gpt-a", 5'000'000'000'000, 20'000'000'000'000, 7)};
  const spend_pricing planned = spend_pricing_of(spend, "gpt-a", 2'500'000, 10'000'000);
  CHECK(planned.plan_priced);
  CHECK(planned.input_price == 2'500'000);  // kept, though the plan prices
  CHECK(spend_cost_micros(planned, 1000, 1) == 5'000 + 20 + 7);
  // A model the book does not price costs nothing under it.
  const spend_pricing unpriced = spend_pricing_of(spend, "gpt-z", 2'500'000, 10'000'000);
  CHECK(unpriced.plan_priced);
  CHECK(spend_cost_micros(unpriced, 1000, 1000) == 0);

  // The first applying budget with a plan decides; a token budget has none.
  const std::vector<const budget_info*> with_plan{&tokens, &spend};
  CHECK(spend_pricing_for(with_plan, "gpt-a", 1, 1).plan_priced);
  CHECK(spend_pricing_for(with_plan, "gpt-a", 1, 1).plan_rate.output == 20'000'000'000'000);
  const std::vector<const budget_info*> without{&tokens};
  const spend_pricing none = spend_pricing_for(without, "gpt-a", 11, 12);
  CHECK_FALSE(none.plan_priced);
  CHECK(none.input_price == 11);
  CHECK(none.output_price == 12);
}

TEST_CASE("policy: spend charges are bounded for the scripts, spend costs are not") {
  spend_pricing p;
  p.input_price = 1'000'000'000'000;  // 10^6 micro-units per token
  const std::int64_t tokens = 4'000'000'000'000;
  CHECK(spend_cost_micros(p, tokens, 0) == 4'000'000'000'000'000'000);
  CHECK(spend_charge_micros(p, tokens, 0) == reservation_amount_max);
  CHECK(spend_charge_micros(p, 3, 0) == 3'000'000);
  p.plan_priced = true;
  p.plan_rate = rate("*", i64_max, i64_max);
  CHECK(spend_cost_micros(p, i64_max, i64_max) == i64_max);
  CHECK(spend_charge_micros(p, i64_max, i64_max) == reservation_amount_max);
  CHECK(spend_charge_micros(p, 0, 0) == 0);
}

TEST_CASE("policy: what each metric charges for the worst case and for actual usage") {
  spend_pricing p;
  p.input_price = 1'000'000;  // 1 micro-unit per token
  p.output_price = 2'000'000;
  worst_case_tokens worst;
  worst.prompt_tokens = 30;
  worst.completion_tokens = 70;
  const request_amounts held = worst_case_amounts(worst, p);
  CHECK(held.tokens == 100);
  CHECK(held.requests == 1);
  CHECK(held.spend_micros == 30 + 140);
  CHECK(charge_of(budget_metric::tokens, held) == 100);
  CHECK(charge_of(budget_metric::requests, held) == 1);
  CHECK(charge_of(budget_metric::spend, held) == 170);
  CHECK(charge_of(budget_metric::credit, held) == 170);

  const request_amounts used = actual_amounts(30, 5, p);
  CHECK(used.tokens == 35);
  CHECK(used.requests == 1);
  CHECK(used.spend_micros == 40);
  // Token sums saturate instead of wrapping.
  CHECK(actual_amounts(i64_max, i64_max, p).tokens == reservation_amount_max);
  CHECK(actual_amounts(i64_max, i64_max, p).spend_micros == reservation_amount_max);
  worst.prompt_tokens = i64_max;
  CHECK(worst_case_amounts(worst, p).tokens == reservation_amount_max);
}

TEST_CASE("policy: a plan-priced settlement names its spend and credit counters") {
  const std::vector<budget_metric> metrics{budget_metric::tokens, budget_metric::spend,
                                           budget_metric::credit, budget_metric::requests};
  const std::vector<std::string> keys{"k_tokens", "k_spend", "k_credit", "k_requests"};
  spend_pricing p;
  p.plan_priced = true;
  p.plan_rate = rate("*", 1'000'000'000'000, 2'000'000'000'000);  // 1 and 2 per token

  usage_record rec;
  rec.prompt_tokens = 10;
  rec.completion_tokens = 4;
  describe_settled_spend(metrics, keys, p, rec);
  CHECK(rec.spend_counters == std::vector<std::string>{"k_spend"});
  CHECK(rec.credit_counters == std::vector<std::string>{"k_credit"});
  CHECK(rec.settled_spend_micros == 18);

  // Without a plan the ledger counts what the settlement did: nothing to correct.
  usage_record plain;
  plain.prompt_tokens = 10;
  p.plan_priced = false;
  describe_settled_spend(metrics, keys, p, plain);
  CHECK(plain.spend_counters.empty());
  CHECK(plain.credit_counters.empty());
  CHECK(plain.settled_spend_micros == -1);

  // No spend or credit charge: nothing either, even with a plan.
  usage_record tokens_only;
  p.plan_priced = true;
  describe_settled_spend(std::vector<budget_metric>{budget_metric::tokens}, keys, p, tokens_only);
  CHECK(tokens_only.spend_counters.empty());
  CHECK(tokens_only.settled_spend_micros == -1);

  // Charges without a counter key (a shorter ticket) are left out.
  usage_record short_ticket;
  describe_settled_spend(metrics, std::vector<std::string>{"k_tokens", "k_spend"}, p, short_ticket);
  CHECK(short_ticket.spend_counters == std::vector<std::string>{"k_spend"});
  CHECK(short_ticket.credit_counters.empty());
}

TEST_CASE("policy: a batch is refused by hard budgets other than sliding ones") {
  budget_info b =
      budget("bud", budget_scope::tenant, "", budget_metric::tokens, budget_window::hour, 10);
  CHECK(refuses_batches(b));
  b.window = budget_window::quarter;
  CHECK(refuses_batches(b));
  b.window = budget_window::minute;
  CHECK_FALSE(refuses_batches(b));
  b.window = window_spec::duration_of(2 * 86'400'000);
  CHECK_FALSE(refuses_batches(b));
  b.window = budget_window::lifetime;
  b.hard = false;
  CHECK_FALSE(refuses_batches(b));
}

TEST_CASE("policy: a batch's worst case per metric, summed over its models") {
  const std::vector<batch_share> shares{{"gpt-a", 1'000'000, 2'000'000, 3, 100, 50},
                                        {"gpt-b", 3'000'000, 0, 2, 10, 1000}};
  budget_info b =
      budget("bud", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 0);
  CHECK(batch_charge(b, shares) == 150 + 1010);
  // A budget limited to models counts only their lines.
  b.models = std::vector<std::string>{"gpt-b"};
  CHECK(batch_charge(b, shares) == 1010);
  b.models = std::vector<std::string>{"gpt-c"};
  CHECK(batch_charge(b, shares) == 0);
  b.models.reset();
  b.metric = budget_metric::requests;
  CHECK(batch_charge(b, shares) == 5);
  b.metric = budget_metric::spend;
  CHECK(batch_charge(b, shares) == (100 + 100) + 30);
  // With a plan only the models its book prices cost anything.
  b.plan_rates = {rate("gpt-b", 2'000'000'000'000, 1'000'000'000'000, 5)};
  CHECK(batch_charge(b, shares) == 20 + 1000 + 5);
  b.metric = budget_metric::credit;
  CHECK(batch_charge(b, shares) == 1025);
  CHECK(batch_charge(b, {}) == 0);
  // The sum saturates at INT64_MAX, unbounded by the scripts' limit.
  b.plan_rates.clear();
  b.metric = budget_metric::spend;
  const std::vector<batch_share> huge{{"m", 1'000'000'000'000, 0, 1, i64_max / 2, 0},
                                      {"m", 1'000'000'000'000, 0, 1, i64_max / 2, 0}};
  CHECK(batch_charge(b, huge) == i64_max);
  b.metric = budget_metric::requests;
  CHECK(batch_charge(b, huge) == 2);
}

TEST_CASE("policy: reset times in OpenAI's format, rounded up to seconds") {
  CHECK(reset_text(0) == "0s");
  CHECK(reset_text(1) == "1s");
  CHECK(reset_text(1000) == "1s");
  CHECK(reset_text(1001) == "2s");
  CHECK(reset_text(59'999) == "1m0s");
  CHECK(reset_text(360'000) == "6m0s");
  CHECK(reset_text(3'600'000) == "1h0m0s");
  CHECK(reset_text(7'384'000) == "2h3m4s");
  CHECK(reset_text(9'000'000'000'000'000'000) == "2500000000000h0m0s");
}

TEST_CASE("policy: refusals name the budget; sliding windows are rate limits") {
  const budget_info minute = budget("bud_m", budget_scope::key, "key_a", budget_metric::tokens,
                                    budget_window::minute, 100);
  const auto rate_limited = budget_refusal(minute, 16, 19, 1500);
  CHECK(rate_limited.status == 429);
  CHECK(rate_limited.type == "tokens");
  CHECK(rate_limited.code == "rate_limit_exceeded");
  CHECK(rate_limited.retry_after_s == 2);
  CHECK(rate_limited.message ==
        "Budget bud_m (100 tokens per minute, key key_a) has 16 left; this request needs 19. "
        "Usage leaves the window in 2s.");
  const budget_info sliding = budget("bud_s", budget_scope::tenant, "", budget_metric::requests,
                                     window_spec::duration_of(5'400'000), 10);
  const auto slid = budget_refusal(sliding, 0, 1, 600'000);
  CHECK(slid.type == "requests");
  CHECK(slid.code == "rate_limit_exceeded");
  CHECK(slid.retry_after_s == 600);
  CHECK(slid.message ==
        "Budget bud_s (10 requests per 90m, tenant) has 0 left; this request needs 1. Usage "
        "leaves the window in 10m0s.");
  const budget_info week =
      budget("bud_w", budget_scope::tenant, "", budget_metric::tokens, budget_window::week, 10);
  const auto weekly = budget_refusal(week, 2, 3, 86'400'000);
  CHECK(weekly.code == "insufficient_quota");
  CHECK(weekly.message ==
        "Budget bud_w (10 tokens per week, tenant) has 2 left; this request needs 3. The window "
        "reopens in 24h0m0s.");

  const budget_info day =
      budget("bud_d", budget_scope::tenant, "", budget_metric::spend, budget_window::day, 5000);
  const auto quota = budget_refusal(day, -3, 40, 42'275'000, "this batch's worst case");
  CHECK(quota.status == 429);
  CHECK(quota.type == "insufficient_quota");
  CHECK(quota.code == "insufficient_quota");
  CHECK(quota.retry_after_s == 42'275);
  CHECK(quota.message ==
        "Budget bud_d (5000 micro-units of spend per day, tenant) has -3 left; this batch's "
        "worst case needs 40. The window reopens in 11h44m35s.");

  const budget_info lifetime = budget("bud_l", budget_scope::project, "prj_a",
                                      budget_metric::requests, budget_window::lifetime, 9);
  const auto total = budget_refusal(lifetime, 0, 1, 0);
  CHECK(total.retry_after_s == 0);
  CHECK(total.message ==
        "Budget bud_l (9 requests in total, project prj_a) has 0 left; this request needs 1.");

  const budget_info credit = budget("credit:ten_a", budget_scope::tenant, "", budget_metric::credit,
                                    budget_window::lifetime, 100);
  const auto paid = budget_refusal(credit, -5, 250, 60'000);
  CHECK(paid.status == 402);
  CHECK(paid.type == "insufficient_quota");
  CHECK(paid.code == "insufficient_quota");
  CHECK(paid.retry_after_s == 0);
  CHECK(paid.message ==
        "Your prepaid credit is used up: 0 micro-units left, and this request may cost up to "
        "250. Buy more credit to continue.");
}

TEST_CASE("policy: x-ratelimit headers from the tightest token and request budgets") {
  const budget_info tok_day =
      budget("a", budget_scope::tenant, "", budget_metric::tokens, budget_window::day, 1000);
  const budget_info tok_min =
      budget("b", budget_scope::key, "k", budget_metric::tokens, budget_window::minute, 100);
  const budget_info req_hour =
      budget("c", budget_scope::tenant, "", budget_metric::requests, budget_window::hour, 50);
  const budget_info spend =
      budget("d", budget_scope::tenant, "", budget_metric::spend, budget_window::day, 1);
  const std::vector<const budget_info*> applying{&tok_day, &tok_min, &req_hour, &spend};
  const std::int64_t now = t0 + 24'000;  // 24 s into a minute

  const auto headers = ratelimit_headers(applying, std::vector<std::int64_t>{900, 40, 7, -10}, now);
  CHECK(headers.size() == 5);
  CHECK(header(headers, "x-ratelimit-limit-tokens") == "100");
  CHECK(header(headers, "x-ratelimit-remaining-tokens") == "40");
  // The sliding minute is whole again once the 5 s bucket holding now, [t0 + 20 s, t0 + 25 s),
  // has left it: at t0 + 85 s.
  CHECK(header(headers, "x-ratelimit-reset-tokens") == "1m1s");
  CHECK(header(headers, "x-ratelimit-limit-requests") == "50");
  CHECK(header(headers, "x-ratelimit-remaining-requests") == "7");

  // The day budget has less left now; a negative remainder shows as 0.
  const auto day = ratelimit_headers(applying, std::vector<std::int64_t>{-1, 40, 7, 0}, now);
  CHECK(header(day, "x-ratelimit-limit-tokens") == "1000");
  CHECK(header(day, "x-ratelimit-remaining-tokens") == "0");
  CHECK(header(day, "x-ratelimit-reset-tokens") == "23h59m36s");

  // Lifetime token budgets send no reset; spend budgets no headers at all.
  const budget_info tok_life =
      budget("e", budget_scope::tenant, "", budget_metric::tokens, budget_window::lifetime, 10);
  const std::vector<const budget_info*> life{&tok_life, &spend};
  const auto l = ratelimit_headers(life, std::vector<std::int64_t>{3, 0}, now);
  CHECK(l.size() == 2);
  CHECK(header(l, "x-ratelimit-remaining-tokens") == "3");
  CHECK(header(l, "x-ratelimit-reset-tokens") == "<absent>");
  CHECK(header(l, "x-ratelimit-limit-requests") == "<absent>");
  const std::vector<const budget_info*> only_spend{&spend};
  CHECK(ratelimit_headers(only_spend, std::vector<std::int64_t>{5}, now).empty());
}

TEST_CASE("reconcile: the current window of each budget, every bucket of a sliding one") {
  std::vector<budget_info> budgets{
      budget("bud_m", budget_scope::key, "key_a", budget_metric::requests, budget_window::minute,
             5),
      budget("bud_s", budget_scope::project, "prj_a", budget_metric::spend, budget_window::day, 9),
      budget("credit:ten_a", budget_scope::tenant, "", budget_metric::credit,
             budget_window::lifetime, 100)};
  budgets[2].credit_used = 42;
  const std::int64_t now = t0 + 90'500;
  budgets[1].models = std::vector<std::string>{"gpt-a"};
  const auto spans = reconcile_spans(budgets, now);
  // The sliding minute counts the 5 s buckets overlapping [now - 60 s, now]: from the one
  // holding t0 + 30.5 s to the one holding now, 13 of them, oldest first.
  REQUIRE(spans.size() == 13 + 2);
  for (int i = 0; i < 13; ++i) {
    INFO(i);
    CHECK(spans[i].budget == 0);
    CHECK(spans[i].from_ms == t0 + 30'000 + i * 5'000);
    CHECK(spans[i].to_ms == (i < 12 ? spans[i].from_ms + 5'000 : now + 1));
  }
  CHECK(spans[13].budget == 1);
  CHECK(spans[13].from_ms == t0);
  CHECK(spans[13].to_ms == now + 1);
  CHECK(spans[13].rule.id == "bud_s");
  CHECK(spans[14].budget == 2);
  CHECK(spans[14].from_ms == 0);

  const std::vector<ledger_budget_query::model_price> prices{{"gpt-a", 1, 2}};
  const auto q = ledger_query_of(budgets[0], "ten_a", spans[1], prices);
  REQUIRE(q);
  CHECK(q->tenant_id == "ten_a");
  CHECK(q->scope == budget_scope::key);
  CHECK(q->scope_id == "key_a");
  CHECK(q->metric == budget_metric::requests);
  CHECK(q->start_ms == t0 + 35'000);
  CHECK(q->end_ms == t0 + 40'000);
  CHECK_FALSE(q->models);
  CHECK(q->prices.empty());  // prices only price spend
  const auto s = ledger_query_of(budgets[1], "ten_a", spans[13], prices);
  REQUIRE(s);
  REQUIRE(s->prices.size() == 1);
  CHECK(s->prices[0].model == "gpt-a");
  CHECK(s->models == std::vector<std::string>{"gpt-a"});  // only its models' rows
  // The credit mirror's ledger count comes with the budget.
  CHECK_FALSE(ledger_query_of(budgets[2], "ten_a", spans[14], prices));
}

TEST_CASE("reconcile: the report lists each counter's difference") {
  CHECK(reconcile_report({}) == "{\"object\":\"list\",\"data\":[]}");
  const std::vector<reconcile_difference> rows{
      {"bud_a", "bud_a", budget_metric::tokens, budget_window::minute, t0 + 1999, 120, 100},
      {"credit:ten_a", "credit:ten_a", budget_metric::credit, budget_window::lifetime, 0, 5, 9}};
  CHECK(reconcile_report(rows) ==
        "{\"object\":\"list\",\"data\":[{\"object\":\"budget.reconciliation\",\"budget_id\":"
        "\"bud_a\",\"counter\":\"bud_a\",\"metric\":\"tokens\",\"window\":\"minute\",\"window_start\":1767225601,"
        "\"ledger\":120,\"redis_before\":100,\"difference\":20},{\"object\":"
        "\"budget.reconciliation\",\"budget_id\":\"credit:ten_a\",\"counter\":\"credit:ten_a\","
        "\"metric\":\"credit\","
        "\"window\":\"lifetime\",\"window_start\":0,\"ledger\":5,\"redis_before\":9,"
        "\"difference\":-4}]}");
}

TEST_CASE("alerts: a settlement's crossings become the alerts to record") {
  const std::vector<std::string> ids{"bud_a", "bud_b"};
  const std::vector<std::int64_t> limits{100, 200};
  const std::vector<std::int64_t> starts{t0, t0 + 60'000};
  const std::vector<threshold_crossing> crossings{{1, 80, 163}, {1, 50, 163}, {0, 100, 100}};
  const auto alerts = crossed_alerts("ten_a", ids, limits, starts, crossings);
  REQUIRE(alerts.size() == 3);
  CHECK(alerts[0].tenant_id == "ten_a");
  CHECK(alerts[0].budget_id == "bud_b");
  CHECK(alerts[0].window_start_ms == t0 + 60'000);
  CHECK(alerts[0].threshold == 80);
  CHECK(alerts[0].limit == 200);
  CHECK(alerts[0].used == 163);
  CHECK(alerts[1].threshold == 50);
  CHECK(alerts[2].budget_id == "bud_a");
  CHECK(alerts[2].limit == 100);
  CHECK(alerts[2].window_start_ms == t0);
  CHECK(crossed_alerts("ten_a", ids, limits, starts, {}).empty());
}

TEST_CASE("alerts: webhook signatures are HMAC-SHA256 of the timestamp and body") {
  // Python: hmac.new(b"whsec_test", b'1795357045.{"id":"alr_1"}', hashlib.sha256).hexdigest()
  CHECK(webhook_signature("whsec_test", 1795357045, "{\"id\":\"alr_1\"}") ==
        "t=1795357045,v1=a0fb1cfa5983ae28f5a1d0e703f814ea3a07c383f029bf4500524464e7c66521");
  CHECK(webhook_signature("", 0, "") ==
        "t=0,v1=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3");
  // Any change of secret, time or body changes it.
  CHECK(webhook_signature("whsec_tesT", 1795357045, "{\"id\":\"alr_1\"}") !=
        webhook_signature("whsec_test", 1795357045, "{\"id\":\"alr_1\"}"));
  CHECK(webhook_signature("whsec_test", 1795357046, "{\"id\":\"alr_1\"}") ==
        "t=1795357046,v1=f15b1e2c581d9f6a2dc204fe8fc2749dec523d8f415b939cb030fc350d4d3d2d");
}

TEST_CASE("alerts: failed deliveries back off from 1 s, doubling up to 5 minutes") {
  const auto ok = after_alert_attempt(3, 8, "", false);
  CHECK(ok.status == "delivered");
  CHECK(ok.outcome == "delivered");
  CHECK(ok.retry_ms == 0);
  CHECK_FALSE(ok.last);

  const auto first = after_alert_attempt(1, 8, "answered HTTP 500", false);
  CHECK(first.status == "pending");
  CHECK(first.outcome == "retry");
  CHECK(first.retry_ms == 1'000);
  CHECK_FALSE(first.last);
  CHECK(after_alert_attempt(2, 8, "x", false).retry_ms == 2'000);
  CHECK(after_alert_attempt(9, 20, "x", false).retry_ms == 256'000);
  CHECK(after_alert_attempt(10, 20, "x", false).retry_ms == 300'000);
  CHECK(after_alert_attempt(1000, 2000, "x", false).retry_ms == 300'000);

  const auto last = after_alert_attempt(8, 8, "no answer", false);
  CHECK(last.status == "failed");
  CHECK(last.outcome == "failed");
  CHECK(last.last);
  // A refused target fails at once, whatever attempts are left.
  const auto refused = after_alert_attempt(1, 8, "refused: private address", true);
  CHECK(refused.status == "failed");
  CHECK(refused.last);
}

TEST_CASE("listings: a budget's usage fields, and the object a caller is shown") {
  budget_info b = budget("bud_a", budget_scope::key, "key_a", budget_metric::tokens,
                         window_spec::duration_of(90'000), 100);
  b.models = std::vector<std::string>{"gpt-4o"};
  window_usage u;
  u.used = 30;
  u.held = 50;
  u.reopens_at_ms = t0 + 1;  // rounded up to whole seconds
  CHECK(usage_members(b, &u) == R"("used":30,"held":50,"remaining":20,"resets_at":1767225601)");
  u.held = 90;          // over the limit (a soft budget): nothing remains
  u.reopens_at_ms = 0;  // lifetime
  CHECK(usage_members(b, &u) == R"("used":30,"held":90,"remaining":0,"resets_at":null)");
  CHECK(usage_members(b, nullptr) ==
        R"("used":null,"held":null,"remaining":null,"resets_at":null)");
  CHECK(budget_status_object(b, &u) ==
        R"({"object":"budget","id":"bud_a","scope":"key","scope_id":"key_a","metric":"tokens",)"
        R"("window":"90s","mode":"hard","models":["gpt-4o"],"limit":100,"used":30,"held":90,)"
        R"("remaining":0,"resets_at":null})");
  b.scope = budget_scope::tenant;
  b.scope_id.clear();
  b.models.reset();
  b.hard = false;
  b.window = budget_window::quarter;
  u.reopens_at_ms = 1'775'001'600'000;
  CHECK(budget_status_object(b, &u) ==
        R"({"object":"budget","id":"bud_a","scope":"tenant","scope_id":null,"metric":"tokens",)"
        R"("window":"quarter","mode":"soft","models":null,"limit":100,"used":30,"held":90,)"
        R"("remaining":0,"resets_at":1775001600})");
  // Spliced into an object written elsewhere (the admin API's budget).
  CHECK(with_usage(R"({"id":"bud_a"})", b, nullptr) ==
        R"({"id":"bud_a","used":null,"held":null,"remaining":null,"resets_at":null})");
  CHECK(with_usage("{}", b, nullptr) ==
        R"({"used":null,"held":null,"remaining":null,"resets_at":null})");
}
