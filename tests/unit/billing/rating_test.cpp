// Unit tests of per-event rating: the rating fields read back from a ledger row, the version in
// force at the event's time, accumulators per period, model (or "*"), token class and batch
// flag, and the telescoping property: however a period's usage is cut into events, the events
// of an accumulator cost exactly floor(F(total)), and the same as the period's invoice lines.
#include <catch2/catch.hpp>

#include <random>

#include "billing/ledger_writer.hpp"
#include "billing/period_pricing.hpp"
#include "billing/rating.hpp"
#include "core/json_dom.hpp"
#include "tests/unit/billing/book_helpers.hpp"

using namespace tollgate;
using namespace tollgate::billing;
using tollgate::billing::test::prices_of;

namespace {

std::string row_of(const metering::usage_record& r) {
  std::string line;
  append_usage_row(line, r);
  line.pop_back();  // the newline
  return line;
}

constexpr std::int64_t nov_2026 = 1'793'491'200;  // 2026-11-01 00:00:00 UTC
constexpr std::int64_t dec_2026 = 1'796'083'200;  // 2026-12-01 00:00:00 UTC

rating_event event(std::int64_t at, std::int64_t input, std::int64_t output,
                   std::string model = "m", bool batch = false) {
  rating_event e;
  e.tenant_id = "ten_1";
  e.request_id = "req";
  e.occurred_at_s = at;
  e.model = std::move(model);
  e.batch = batch;
  e.input = input;
  e.output = output;
  return e;
}

}  // namespace

TEST_CASE("the rating fields are read back from a ledger row exactly") {
  metering::usage_record r;
  r.tenant_id = "ten\t1";
  r.request_id = "req_9";
  r.occurred_at_ms = 1'795'346'379'824;  // 2026-11-22 11:19:39.824 UTC
  r.model = "m\\x";
  r.batch = true;
  r.prompt_tokens = 40;
  r.cached_tokens = 15;
  r.completion_tokens = 7;
  const auto e = parse_rating_event(row_of(r));
  REQUIRE(e);
  CHECK(e->tenant_id == "ten\t1");
  CHECK(e->request_id == "req_9");
  CHECK(e->occurred_at_s == 1'795'346'379);
  CHECK(e->model == "m\\x");
  CHECK(e->batch);
  CHECK(e->input == 25);
  CHECK(e->cached_input == 15);
  CHECK(e->output == 7);

  // The record itself, as the cost quote rates it, splits the same way.
  const rating_event direct = rating_event::from(r);
  CHECK(direct.tenant_id == e->tenant_id);
  CHECK(direct.request_id == e->request_id);
  CHECK(direct.occurred_at_s == e->occurred_at_s);
  CHECK(direct.model == e->model);
  CHECK(direct.batch == e->batch);
  CHECK(direct.input == e->input);
  CHECK(direct.cached_input == e->cached_input);
  CHECK(direct.output == e->output);

  // More cached than prompt tokens (a confused upstream): cached is capped at the prompt.
  r.cached_tokens = 90;
  CHECK(parse_rating_event(row_of(r))->cached_input == 40);
  CHECK(rating_event::from(r).cached_input == 40);
  CHECK(rating_event::from(r).input == 0);

  // Lines of another shape are not rated, never misread.
  const std::string good = row_of(r);
  CHECK_FALSE(parse_rating_event(""));
  CHECK_FALSE(parse_rating_event(good + "\textra"));
  CHECK_FALSE(parse_rating_event(good.substr(0, good.rfind('\t'))));
  std::string bad_time = good;
  bad_time.replace(bad_time.find("2026-11-22"), 10, "2026-13-22");
  CHECK_FALSE(parse_rating_event(bad_time));
  std::string negative = good;
  negative.replace(negative.find("\t40\t"), 4, "\t-4\t");
  CHECK_FALSE(parse_rating_event(negative));
}

TEST_CASE("an event is rated by the version in force at its time, on its period's accumulators") {
  rating_plan plan;
  plan.book_id = "pb_1";
  plan.versions = {
      {1, nov_2026,
       prices_of(R"({"m":{"input":[{"rate":"1000000"}],"output":[{"rate":"3000000"}]}})")},
      {2, nov_2026 + 86400,
       prices_of(R"({"m":{"input":[{"rate":"2000000"}],"output":[{"rate":"5000000"}]}})")},
  };
  accumulator_map acc;
  // Before the first version: not rated, nothing moves.
  CHECK_FALSE(rate_event(plan, event(nov_2026 - 1, 10, 10), acc));
  CHECK(acc.empty());
  // A model the book does not price: not rated.
  CHECK_FALSE(rate_event(plan, event(nov_2026, 10, 10, "other"), acc));
  CHECK(acc.empty());

  const auto v1 = rate_event(plan, event(nov_2026 + 10, 10, 4), acc);
  REQUIRE(v1);
  CHECK(v1->version == 1);
  CHECK(v1->cost_micros == 10 * 1 + 4 * 3);
  const auto v2 = rate_event(plan, event(nov_2026 + 86400, 10, 4), acc);
  REQUIRE(v2);
  CHECK(v2->version == 2);
  CHECK(v2->cost_micros == 10 * 2 + 4 * 5);
  const accumulator_key input_key{"ten_1", "2026-11", "m", "input", false};
  CHECK(acc[input_key].position == 20);
  CHECK(acc[input_key].charged_micros == 30);
  // December starts its own accumulators.
  REQUIRE(rate_event(plan, event(dec_2026, 7, 0), acc));
  CHECK(acc[{"ten_1", "2026-12", "m", "input", false}].position == 7);
  CHECK(acc[input_key].position == 20);
  CHECK_FALSE(acc.contains({"ten_1", "2026-12", "m", "output", false}));
}

TEST_CASE("one plan prices each period: the latest from at or before it, else the first") {
  plan_history plans;
  CHECK(plan_for_period(plans, "2026-11") == nullptr);
  for (const char* from : {"2026-09", "2026-11", "2027-01"}) {
    rating_plan p;
    p.from_period = from;
    p.book_id = std::string("pb_") + from;
    plans.push_back(std::move(p));
  }
  CHECK(plan_for_period(plans, "2026-01")->book_id == "pb_2026-09");  // before them all
  CHECK(plan_for_period(plans, "2026-09")->book_id == "pb_2026-09");
  CHECK(plan_for_period(plans, "2026-10")->book_id == "pb_2026-09");
  CHECK(plan_for_period(plans, "2026-11")->book_id == "pb_2026-11");
  CHECK(plan_for_period(plans, "2026-12")->book_id == "pb_2026-11");
  CHECK(plan_for_period(plans, "2027-01")->book_id == "pb_2027-01");
  CHECK(plan_for_period(plans, "2030-06")->book_id == "pb_2027-01");
}

TEST_CASE("batch events have their own accumulator and the plan's discount") {
  rating_plan plan;
  plan.batch_discount_bp = 5000;
  plan.versions = {
      {1, 0, prices_of(R"({"m":{"input":[{"up_to":10,"rate":"3000000"},{"rate":"1000000"}],
                                  "output":[{"rate":"1000000"}]}})")}};
  accumulator_map acc;
  REQUIRE(rate_event(plan, event(nov_2026, 10, 0), acc)->cost_micros == 30);
  // The batch accumulator starts at zero (still in the first tier), at half price.
  CHECK(rate_event(plan, event(nov_2026, 10, 0, "m", true), acc)->cost_micros == 15);
  CHECK(acc[{"ten_1", "2026-11", "m", "input", true}].position == 10);
}

TEST_CASE("a book with tier_scope all_models has one accumulator for every model") {
  rating_plan plan;
  plan.scope = tier_scope::all_models;
  plan.versions = {{1, 0,
                    prices_of(R"({"*":{"input":[{"up_to":10,"rate":"3000000"},{"rate":"1000000"}],
                                  "output":[{"rate":"1000000"}]}})",
                              tier_scope::all_models)}};
  accumulator_map acc;
  CHECK(rate_event(plan, event(nov_2026, 8, 0, "a"), acc)->cost_micros == 24);
  CHECK(rate_event(plan, event(nov_2026, 8, 0, "b"), acc)->cost_micros == 2 * 3 + 6 * 1);
  CHECK(acc[{"ten_1", "2026-11", "*", "input", false}].position == 16);
}

TEST_CASE("volume tiers are rated provisionally, never below zero") {
  rating_plan plan;
  plan.mode = tier_mode::volume;
  plan.versions = {{1, 0,
                    prices_of(R"({"m":{"input":[{"up_to":10,"rate":"3000000"},{"rate":"1000000"}],
                                  "output":[{"rate":"1000000"}]}})",
                              tier_scope::model, tier_mode::volume)}};
  accumulator_map acc;
  CHECK(rate_event(plan, event(nov_2026, 10, 0), acc)->cost_micros == 30);
  // 11 units at the second tier's rate come to 11 < 30: this event is charged 0 and the
  // invoice trues the period up (true_up_micros).
  CHECK(rate_event(plan, event(nov_2026, 1, 0), acc)->cost_micros == 0);
}

TEST_CASE("however usage is cut into events, they add up to the period's invoice lines") {
  std::mt19937_64 rng(23);
  for (int round = 0; round < 200; ++round) {
    // Random graduated tiers with flat fees and awkward rates.
    std::string tiers = "[";
    std::int64_t bound = 0;
    const int n = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int i = 0; i < n; ++i) {
      const rate_e6 rate = std::uniform_int_distribution<std::int64_t>(0, 9'999'999'999)(rng);
      const std::int64_t fee = std::uniform_int_distribution<std::int64_t>(0, 3)(rng);
      tiers += i ? "," : "";
      if (i + 1 < n) {
        bound += std::uniform_int_distribution<std::int64_t>(1, 500)(rng);
        tiers += "{\"up_to\":" + std::to_string(bound) + ",";
      } else {
        tiers += "{";
      }
      tiers += "\"rate\":\"" + format_rate(rate) + "\",\"flat_fee\":" + std::to_string(fee) + "}";
    }
    tiers += "]";
    const std::string prices = "{\"m\":{\"input\":" + tiers + ",\"output\":" + tiers + "}}";
    rating_plan plan;
    plan.batch_discount_bp = std::uniform_int_distribution<int>(0, 10'000)(rng);
    plan.versions = {{1, 0, prices_of(prices)}};

    accumulator_map acc;
    std::int64_t cost = 0;
    period_usage period;
    period.tier_mode = "graduated";
    period.tier_scope = "model";
    period.batch_discount_bp = plan.batch_discount_bp;
    period.versions = {{1, prices}};
    const int events = std::uniform_int_distribution<int>(1, 40)(rng);
    for (int i = 0; i < events; ++i) {
      const std::int64_t in = std::uniform_int_distribution<std::int64_t>(0, 300)(rng);
      const std::int64_t out = std::uniform_int_distribution<std::int64_t>(0, 300)(rng);
      const bool batch = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
      const auto rated = rate_event(plan, event(nov_2026 + i, in, out, "m", batch), acc);
      REQUIRE(rated);
      cost += rated->cost_micros;
      period.rows.push_back({1, "m", batch, in, 0, out});
    }
    CHECK(cost == price_period(period).total_micros);
  }
}

TEST_CASE("re-rating the same events gives identical rows, however they were batched") {
  std::mt19937_64 rng(31);
  const auto prices = prices_of(
      R"({"m":{"input":[{"up_to":300,"rate":"3333333.333333","flat_fee":2},{"up_to":900,"rate":"1250000"},{"rate":"0.5"}],)"
      R"("output":[{"up_to":100,"rate":"999999.999999"},{"rate":"7"}]}})");
  for (int round = 0; round < 100; ++round) {
    rating_plan plan;
    plan.batch_discount_bp = 2500;
    plan.versions = {{1, 0, prices}};
    std::vector<rating_event> events;
    const int n = std::uniform_int_distribution<int>(1, 60)(rng);
    for (int i = 0; i < n; ++i) {
      events.push_back(event(nov_2026 + i, std::uniform_int_distribution<std::int64_t>(0, 200)(rng),
                             std::uniform_int_distribution<std::int64_t>(0, 80)(rng), "m",
                             std::uniform_int_distribution<int>(0, 4)(rng) == 0));
    }
    // Once in one go.
    accumulator_map all;
    std::vector<std::int64_t> once;
    for (const auto& e : events) once.push_back(rate_event(plan, e, all)->cost_micros);
    // Again in random batches, each loading the accumulators the previous one stored, as the
    // ledger writer does with rating_accumulators.
    accumulator_map stored;
    std::vector<std::int64_t> again;
    for (std::size_t at = 0; at < events.size();) {
      const std::size_t size = std::uniform_int_distribution<std::size_t>(1, 10)(rng);
      accumulator_map batch = stored;
      for (std::size_t i = at; i < std::min(events.size(), at + size); ++i) {
        again.push_back(rate_event(plan, events[i], batch)->cost_micros);
      }
      stored = batch;
      at += size;
    }
    CHECK(again == once);
    CHECK(stored == all);
  }
}
