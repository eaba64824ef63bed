// Bundle coverage of credit_only holds, the pure parts (metering/budgets/cover.hpp): pool ids,
// covers, the money held after cover (worked examples; the Lua twin is checked against it in
// tests/integration/budget_cover_test.cpp), which requests ask for cover, and what a covered
// hold settles to.
#include <catch2/catch.hpp>

#include "metering/budgets/cover.hpp"
#include "metering/worst_case.hpp"

using namespace tollgate::metering;

namespace {

// 2 micro-units per input token, 8 per output token ($2 and $8 per 1M tokens), and a request
// fee of 1,500 micro-units.
credit_rate example_rate() {
  credit_rate r;
  r.model = "dev-echo";
  r.input = 2'000'000'000'000;
  r.output = 8'000'000'000'000;
  r.flat_fees_micros = 1'500;
  return r;
}

budget_info credit_mirror() {
  budget_info b;
  b.id = "credit:ten_a";
  b.metric = budget_metric::credit;
  b.window = budget_window::lifetime;
  b.limit = 10'000;
  b.cover_pools = {{"dev-echo", false, cover_pool_id("dev-echo", false), 1'000, 400},
                   {"dev-echo", true, cover_pool_id("dev-echo", true), 500, 500},
                   {"other", false, cover_pool_id("other", false), 100, 0}};
  return b;
}

}  // namespace

TEST_CASE("cover: pool ids name the model in hex and the class") {
  CHECK(cover_pool_id("dev-echo", false) == "cover:6465762d6563686f:input");
  CHECK(cover_pool_id("a,b\tc", true) == "cover:612c620963:output");
  CHECK(cover_pool_id("", false) == "cover::input");
}

TEST_CASE("cover: a pool covers what it has left of what is asked") {
  CHECK(covered_tokens(100, 40) == 40);
  CHECK(covered_tokens(30, 100) == 30);
  CHECK(covered_tokens(100, -5) == 0);  // a pool overdrawn by corrections covers nothing
  CHECK(covered_tokens(0, 100) == 0);
}

TEST_CASE("cover: the money held is the uncovered tokens' worst-case cost plus the fees") {
  const credit_rate r = example_rate();
  // Uncovered: 40 input tokens x 2 + 0 output tokens, plus the fee.
  CHECK(uncovered_cost_micros(r, 100, 40, 60, 40) == 80 + 1'500);
  // Nothing covered: what the hold took before bundles counted (worst_case_cost_micros).
  CHECK(uncovered_cost_micros(r, 100, 40, 0, 0) == worst_case_cost_micros(r, 100, 40));
  CHECK(uncovered_cost_micros(r, 100, 40, 0, 0) == 200 + 320 + 1'500);
  // Fully covered: the fee still needs money (bundles pay tokens, not fees).
  CHECK(uncovered_cost_micros(r, 100, 40, 100, 40) == 1'500);
  // Covers larger than the tokens (a settlement of fewer tokens) cover no more than them.
  CHECK(uncovered_cost_micros(r, 10, 5, 100, 40) == 1'500);
  // No tokens: no cost, as worst_case_cost_micros.
  CHECK(uncovered_cost_micros(r, 0, 0, 0, 0) == 0);
  // Each class rounds up on its own: 1 token at 0.5 micro-units costs 1.
  credit_rate half;
  half.input = 500'000'000'000;
  half.output = 500'000'000'000;
  CHECK(uncovered_cost_micros(half, 3, 1, 0, 0) == 2 + 1);
  // Saturates at the scripts' bound.
  credit_rate huge;
  huge.input = INT64_MAX;
  CHECK(uncovered_cost_micros(huge, reservation_amount_max, 0, 0, 0) == reservation_amount_max);
}

TEST_CASE("cover: rates go to the script as base-10^6 digits, lowest first") {
  CHECK(rate_digits(INT64_MAX) == std::array<std::int64_t, 4>{775'807, 36'854, 223'372, 9});
  CHECK(rate_digits(2'000'000'000'000) == std::array<std::int64_t, 4>{0, 0, 2, 0});
  CHECK(rate_digits(-1) == std::array<std::int64_t, 4>{0, 0, 0, 0});
}

TEST_CASE("cover: only the credit mirror's pools of the model with tokens left are asked") {
  const budget_info credit = credit_mirror();
  // The output pool is drawn to nothing (used == limit): only the input pool covers.
  const model_pools pools = pools_for(credit, "dev-echo");
  REQUIRE(pools.input != nullptr);
  CHECK(pools.input->limit == 1'000);
  CHECK(pools.output == nullptr);
  CHECK_FALSE(pools_for(credit, "gpt-4o").any());

  budget_info tokens;
  tokens.id = "bud_t";
  tokens.metric = budget_metric::tokens;
  const std::vector<const budget_info*> applying{&tokens, &credit};
  const auto ask = cover_ask_for(applying, "dev-echo", 300, 50, example_rate());
  REQUIRE(ask);
  CHECK(ask->charge == 1);  // the credit mirror's charge
  CHECK(ask->pool_ids[0] == cover_pool_id("dev-echo", false));
  CHECK(ask->pool_ids[1] == cover_pool_id("dev-echo", true));
  CHECK(ask->limits == std::array<std::int64_t, 2>{1'000, 0});  // no output pool: limit 0
  CHECK(ask->seeds == std::array<std::int64_t, 2>{400, 0});
  CHECK(ask->asked == std::array<std::int64_t, 2>{300, 50});
  // A model without pools, or no credit mirror among the budgets: the hold as before.
  CHECK_FALSE(cover_ask_for(applying, "gpt-4o", 300, 50, example_rate()));
  const std::vector<const budget_info*> no_credit{&tokens};
  CHECK_FALSE(cover_ask_for(no_credit, "dev-echo", 300, 50, example_rate()));
}

TEST_CASE("cover: with an all_models book every request asks the \"*\" pools, and only them") {
  // The ledger draws the bundles of the book's entry, "*", for every model (docs/CREDITS.md).
  budget_info credit = credit_mirror();
  credit.cover_all_models = true;
  credit.cover_pools.push_back({"*", true, cover_pool_id("*", true), 300, 100});
  CHECK(pool_model(credit, "dev-echo") == "*");
  for (const char* model : {"dev-echo", "gpt-4o"}) {
    const model_pools pools = pools_for(credit, model);
    CHECK(pools.input == nullptr);  // the "dev-echo" pools are not drawn in such a book
    REQUIRE(pools.output != nullptr);
    CHECK(pools.output->model == "*");
  }
  const std::vector<const budget_info*> applying{&credit};
  const auto ask = cover_ask_for(applying, "dev-echo", 300, 50, example_rate());
  REQUIRE(ask);
  CHECK(ask->pool_ids[0] == cover_pool_id("*", false));
  CHECK(ask->pool_ids[1] == cover_pool_id("*", true));
  CHECK(ask->limits == std::array<std::int64_t, 2>{0, 300});
  credit.cover_all_models = false;
  CHECK(pool_model(credit, "dev-echo") == "dev-echo");
  CHECK(pools_for(credit, "dev-echo").input != nullptr);
}

TEST_CASE("cover: a covered hold settles the covered tokens used and the rest's cost") {
  cover_hold hold{1, {100, 40}, example_rate()};
  // Used 70 prompt tokens (all covered) and 60 completion tokens (40 covered, 20 not).
  const cover_settlement s = settle_cover(hold, 70, 60);
  CHECK(s.pool_tokens == std::array<std::int64_t, 2>{70, 40});
  CHECK(s.credit_micros == 20 * 8 + 1'500);

  usage_record rec;
  rec.prompt_tokens = 70;
  rec.completion_tokens = 60;
  describe_cover(hold, rec);
  CHECK(rec.settled_credit_micros == -1);  // no credit counter to correct: nothing described
  rec.credit_counters = {"tg:{ten_a}:b:credit:ten_a:0"};
  describe_cover(hold, rec);
  CHECK(rec.settled_credit_micros == 20 * 8 + 1'500);
  CHECK(rec.cover_tokens[0] == 70);
  CHECK(rec.cover_tokens[1] == 40);

  // Of 90 prompt tokens the upstream reported 30 cached and 5 audio: the input bundle pays at
  // most the 55 billed as input; of 60 completion tokens 25 are audio, leaving 35 for output.
  cover_hold mixed{1, {100, 40}, example_rate()};
  usage_record split;
  split.prompt_tokens = 90;
  split.cached_tokens = 30;
  split.audio_prompt_tokens = 5;
  split.completion_tokens = 60;
  split.audio_completion_tokens = 25;
  split.credit_counters = {"tg:{ten_a}:b:credit:ten_a:0"};
  describe_cover(mixed, split);
  CHECK(mixed.other_classes == std::array<std::int64_t, 2>{35, 25});
  CHECK(split.cover_tokens[0] == 55);
  CHECK(split.cover_tokens[1] == 35);
  // The credit counts the other 35 prompt and 25 completion tokens at the worst rates.
  CHECK(split.settled_credit_micros == 35 * 2 + 25 * 8 + 1'500);
  CHECK(settle_cover(mixed, 90, 60).credit_micros == split.settled_credit_micros);
  CHECK(cover_pool_key("ten_a", "dev-echo", true) ==
        "tg:{ten_a}:b:cover:6465762d6563686f:output:0");
}
