// Unit tests of the price dimensions beyond input/cached/output: context-length bands (a request
// whose prompt is above a threshold is rated entirely at the band's rates, on accumulators of
// its own), cache writes, image and audio token classes and per-request fees. Worked examples
// from published price lists, and property tests that per-event charges telescope per band to
// the period's invoice total.
#include <catch2/catch.hpp>

#include <random>

#include "billing/credits.hpp"
#include "billing/period_pricing.hpp"
#include "billing/rating.hpp"
#include "billing/token_bundles.hpp"
#include "core/json_dom.hpp"
#include "tests/unit/billing/book_helpers.hpp"

using namespace tollgate;
using namespace tollgate::billing;
using tollgate::billing::test::prices_of;

namespace {

rating_plan plan_of(const std::string& json, int batch_discount_bp = 0) {
  rating_plan plan;
  plan.batch_discount_bp = batch_discount_bp;
  plan.versions = {{1, 0, prices_of(json)}};
  return plan;
}

constexpr std::int64_t nov_2026 = 1'793'491'200;  // 2026-11-01 00:00:00 UTC

rating_event event_of(const std::string& model, const token_counts& n, bool batch = false) {
  rating_event e;
  e.tenant_id = "ten_1";
  e.request_id = "req";
  e.occurred_at_s = nov_2026 + 60;
  e.model = model;
  e.batch = batch;
  e.answered = true;
  e.set_tokens(n);
  return e;
}

accumulator_key key_of(const std::string& model, const std::string& token_class,
                       bool batch = false) {
  return {"ten_1", "2026-11", model, token_class, batch};
}

// Gemini 1.5 Pro, paid tier, per 1M tokens (Google AI for Developers, "Gemini Developer API
// pricing", as published October 2024): input $1.25 for prompts up to 128K tokens and $2.50
// for prompts longer than 128K; output $5.00 and $10.00 likewise. In micro-units per 1M tokens.
const std::string gemini_book = R"({"gemini-1.5-pro":{
  "input":[{"rate":"1250000"}],"output":[{"rate":"5000000"}],
  "context_bands":[{"above":128000,"input":[{"rate":"2500000"}],"output":[{"rate":"10000000"}]}]}})";

}  // namespace

TEST_CASE("Gemini-style long context: a prompt above 128K is rated entirely at the long rate") {
  const rating_plan plan = plan_of(gemini_book);
  accumulator_map acc;
  // 100,000 prompt tokens: 100,000 x $1.25/1M = $0.125; 1,000 output: 1,000 x $5/1M = $0.005.
  auto a = rate_event(plan, event_of("gemini-1.5-pro", {100'000, 0, 0, 0, 0, 1'000, 0}), acc);
  REQUIRE(a);
  CHECK(a->cost_micros == 130'000);
  CHECK(a->band_above == 0);
  // 200,000 prompt tokens: every one at $2.50/1M (not only those past 128K) = $0.50; 2,000
  // output at $10/1M = $0.02.
  auto b = rate_event(plan, event_of("gemini-1.5-pro", {200'000, 0, 0, 0, 0, 2'000, 0}), acc);
  REQUIRE(b);
  CHECK(b->cost_micros == 520'000);
  CHECK(b->band_above == 128'000);
  // Exactly 128,000 is not above the threshold: $0.16.
  auto c = rate_event(plan, event_of("gemini-1.5-pro", {128'000, 0, 0, 0, 0, 0, 0}), acc);
  REQUIRE(c);
  CHECK(c->cost_micros == 160'000);
  // Each band has its own accumulators.
  CHECK(acc[key_of("gemini-1.5-pro", "input")].position == 228'000);
  CHECK(acc[key_of("gemini-1.5-pro", "input>128000")].position == 200'000);
  CHECK(acc[key_of("gemini-1.5-pro", "output>128000")].charged_micros == 20'000);

  // The period priced from its totals, as invoices do, comes to the same, in lines per band.
  period_usage period;
  period.tier_mode = "graduated";
  period.tier_scope = "model";
  period.versions = {{1, gemini_book}};
  period_usage::totals base;
  base.version = 1;
  base.model = "gemini-1.5-pro";
  base.input = 228'000;
  base.output = 1'000;
  period_usage::totals long_context = base;
  long_context.input = 200'000;
  long_context.output = 2'000;
  long_context.prompt_above = 128'000;
  period.rows = {base, long_context};
  const auto priced = price_period(period);
  CHECK(priced.total_micros == 810'000);
  REQUIRE(priced.lines.size() == 4);
  CHECK(priced.lines[0].token_class == "input");
  CHECK(priced.lines[0].amount_micros == 285'000);
  CHECK(priced.lines[1].token_class == "output");
  CHECK(priced.lines[2].token_class == "input>128000");
  CHECK(priced.lines[2].amount_micros == 500'000);
  CHECK(priced.lines[3].token_class == "output>128000");
}

TEST_CASE("cache writes at Anthropic's premium: 1.25 times the base input rate") {
  // Claude 3.5 Sonnet per 1M tokens (Anthropic, "Prompt caching" and model pricing pages,
  // 2024): base input $3, cache writes $3.75 (25 % more than base input), cache hits $0.30,
  // output $15.
  const std::string book = R"({"claude-3-5-sonnet":{"input":[{"rate":"3000000"}],
    "cache_write":[{"rate":"3750000"}],"cached_input":[{"rate":"300000"}],
    "output":[{"rate":"15000000"}]}})";
  const rating_plan plan = plan_of(book);
  accumulator_map acc;
  // The usage as an OpenAI-compatible proxy of Anthropic reports it: 10,000 prompt tokens of
  // which 8,000 were written to the cache.
  metering::usage_record rec;
  rec.tenant_id = "ten_1";
  rec.request_id = "req_1";
  rec.model = "claude-3-5-sonnet";
  rec.status = 200;
  rec.occurred_at_ms = (nov_2026 + 5) * 1000;
  REQUIRE(rec.set_usage_from_response(
      R"({"id":"x","usage":{"prompt_tokens":10000,"completion_tokens":500,)"
      R"("cache_creation_input_tokens":8000,"prompt_tokens_details":{"cached_tokens":0}}})"));
  CHECK(rec.cache_write_tokens == 8'000);
  // 2,000 x $3 + 8,000 x $3.75 + 500 x $15 per 1M = $0.006 + $0.03 + $0.0075.
  auto first = rate_event(plan, rating_event::from(rec), acc);
  REQUIRE(first);
  CHECK(first->cost_micros == 43'500);
  // The next request reads those 8,000 from the cache: 2,100 x $3 + 8,000 x $0.30 + 500 x $15.
  metering::usage_record hit = rec;
  REQUIRE(hit.set_usage_from_response(R"({"usage":{"prompt_tokens":10100,"completion_tokens":500,)"
                                      R"("prompt_tokens_details":{"cached_tokens":8000}}})"));
  CHECK(hit.cache_write_tokens == 0);
  auto second = rate_event(plan, rating_event::from(hit), acc);
  REQUIRE(second);
  CHECK(second->cost_micros == 6'300 + 2'400 + 7'500);
  CHECK(acc[key_of("claude-3-5-sonnet", "cache_write")].charged_micros == 30'000);
  // Without a price of its own, a cache write costs what input costs.
  const rating_plan plain =
      plan_of(R"({"m":{"input":[{"rate":"3000000"}],"output":[{"rate":"1"}]}})");
  accumulator_map acc2;
  CHECK(rate_event(plain, event_of("m", {10'000, 0, 8'000, 0, 0, 0, 0}), acc2)->cost_micros ==
        30'000);
  // The upstream's field is configurable: elsewhere, or not reported at all.
  metering::usage_record other;
  REQUIRE(other.set_usage_from_response(
      R"({"usage":{"prompt_tokens":10,"completion_tokens":1,"cache_creation_input_tokens":9,)"
      R"("prompt_tokens_details":{"cache_write_tokens":4}}})",
      "prompt_tokens_details.cache_write_tokens"));
  CHECK(other.cache_write_tokens == 4);
  REQUIRE(other.set_usage_from_response(
      R"({"usage":{"prompt_tokens":10,"completion_tokens":1,"cache_creation_input_tokens":9}})",
      ""));
  CHECK(other.cache_write_tokens == 0);
}

TEST_CASE("image and audio classes and per-request fees") {
  // gpt-4o-audio-preview per 1M tokens (OpenAI API pricing page, December 2024): text input
  // $2.50, text output $10, audio input $40, audio output $80. Image input priced here like
  // text input's double, and Perplexity's style of per-request fee ($5 per 1,000 requests:
  // 5,000 micro-units each; Perplexity API pricing, Sonar, 2025).
  const std::string book = R"({"m":{"input":[{"rate":"2500000"}],"output":[{"rate":"10000000"}],
    "audio_input":[{"rate":"40000000"}],"audio_output":[{"rate":"80000000"}],
    "image_input":[{"rate":"5000000"}],"request_fee":5000}})";
  const rating_plan plan = plan_of(book, 5000);
  metering::usage_record rec;
  REQUIRE(rec.set_usage_from_response(
      R"({"usage":{"prompt_tokens":1000,"completion_tokens":600,)"
      R"("prompt_tokens_details":{"cached_tokens":0,"audio_tokens":300,"image_tokens":200},)"
      R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":500}}})"));
  CHECK(rec.audio_prompt_tokens == 300);
  CHECK(rec.image_prompt_tokens == 200);
  CHECK(rec.audio_completion_tokens == 500);
  rec.tenant_id = "ten_1";
  rec.model = "m";
  rec.status = 200;
  rec.occurred_at_ms = (nov_2026 + 5) * 1000;
  accumulator_map acc;
  // 500 text x $2.50 + 200 image x $5 + 300 audio x $40 + 100 text out x $10 + 500 audio out
  // x $80, per 1M: 1,250 + 1,000 + 12,000 + 1,000 + 40,000; and the fee, 5,000.
  auto r = rate_event(plan, rating_event::from(rec), acc);
  REQUIRE(r);
  CHECK(r->request_fee_micros == 5'000);
  CHECK(r->cost_micros == 60'250);
  CHECK(acc[key_of("m", "requests")].position == 1);
  // A refused or failed request pays no fee.
  rec.status = 429;
  auto refused = rate_event(plan, rating_event::from(rec), acc);
  REQUIRE(refused);
  CHECK(refused->request_fee_micros == 0);
  CHECK(acc[key_of("m", "requests")].position == 1);
  // Batch requests get the plan's discount on the fee too, telescoping: 3 requests at 50 % off
  // a fee of 3 micro-units cost floor(4.5) = 4 in all, 1 + 2 + 1.
  const rating_plan odd =
      plan_of(R"({"m":{"input":[{"rate":"0"}],"output":[{"rate":"0"}],"request_fee":3}})", 5000);
  accumulator_map acc3;
  std::vector<std::int64_t> fees;
  for (int i = 0; i < 3; ++i) {
    fees.push_back(
        rate_event(odd, event_of("m", {1, 0, 0, 0, 0, 1, 0}, true), acc3)->request_fee_micros);
  }
  CHECK(fees == std::vector<std::int64_t>{1, 2, 1});
  CHECK(fees_micros(3, 3, 5000) == 4);
  // The worst case a budget holds counts the highest rate of every class and the fee.
  const auto prices = prices_of(book);
  const auto worst = worst_case_rate(prices->front());
  CHECK(worst.input == 40'000'000'000'000);
  CHECK(worst.output == 80'000'000'000'000);
  CHECK(worst.flat_fees_micros == 5'000);
}

TEST_CASE("price books: the new classes, fees and bands read back in canonical form") {
  const auto doc = json::document::parse(
      R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"2"}],"cache_write":[{"rate":"3"}],)"
      R"("request_fee":7,"context_bands":[{"above":1000,"input":[{"rate":"4"}],)"
      R"("output":[{"rate":"5"}],"request_fee":0},{"above":5000,"input":[{"rate":"6"}],)"
      R"("output":[{"rate":"7"}],"audio_output":[{"rate":"8"}]}]}})");
  REQUIRE(doc);
  auto parsed = parse_model_prices(doc->root(), tier_mode::graduated, tier_scope::model);
  REQUIRE(parsed);
  const model_prices& p = parsed->front();
  CHECK(p.request_fee_micros == 7);
  CHECK(p.image_input == p.input);
  CHECK(p.audio_output == p.output);
  REQUIRE(p.bands.size() == 2);
  CHECK(p.bands[0].prices.request_fee_micros == 0);
  CHECK(p.bands[1].prices.request_fee_micros == 7);  // the model's, when a band gives none
  CHECK(p.bands[1].prices.cache_write == p.bands[1].prices.input);
  std::int64_t band = -1;
  CHECK(&p.band_for(1000, band) == &p);
  CHECK(band == 0);
  CHECK(&p.band_for(1001, band) == &p.bands[0].prices);
  CHECK(&p.band_for(99'999, band) == &p.bands[1].prices);
  CHECK(band == 5000);
  const std::string canonical = model_prices_json(*parsed);
  CHECK(canonical ==
        R"({"m":{"input":[{"rate":"1"}],"cached_input":[{"rate":"1"}],"output":[{"rate":"2"}],)"
        R"("cache_write":[{"rate":"3"}],"request_fee":7,"context_bands":[{"above":1000,)"
        R"("input":[{"rate":"4"}],"cached_input":[{"rate":"4"}],"output":[{"rate":"5"}],)"
        R"("request_fee":0},{"above":5000,"input":[{"rate":"6"}],"cached_input":[{"rate":"6"}],)"
        R"("output":[{"rate":"7"}],"audio_output":[{"rate":"8"}]}]}})");
  const auto again = json::document::parse(canonical);
  auto reparsed = parse_model_prices(again->root(), tier_mode::graduated, tier_scope::model);
  REQUIRE(reparsed);
  CHECK(model_prices_json(*reparsed) == canonical);
  CHECK(reparsed->front() == p);

  const auto error_of = [](const std::string& text) {
    const auto d = json::document::parse(text);
    REQUIRE(d);
    auto r = parse_model_prices(d->root(), tier_mode::graduated, tier_scope::model);
    REQUIRE_FALSE(r);
    return r.error();
  };
  CHECK(error_of(R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"1"}],"video":[]}})")
            .find("unknown field \"video\"") != std::string::npos);
  CHECK(error_of(R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"1"}],"request_fee":-1}})")
            .find("models[\"m\"].request_fee") != std::string::npos);
  CHECK(error_of(R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"1"}],)"
                 R"("context_bands":[{"above":9,"input":[{"rate":"1"}],"output":[{"rate":"1"}]},)"
                 R"({"above":9,"input":[{"rate":"1"}],"output":[{"rate":"1"}]}]}})")
            .find("context_bands[1]: above must be greater") != std::string::npos);
  CHECK(error_of(R"({"m":{"input":[{"rate":"1"}],"output":[{"rate":"1"}],)"
                 R"("context_bands":[{"above":9,"input":[{"rate":"1"}]}]}})")
            .find("context_bands[0].output") != std::string::npos);
}

TEST_CASE("property: per-event charges telescope per band and class to the period's total") {
  std::mt19937_64 rng(2024);
  const auto tiers = [&rng] {
    std::string t = "[";
    std::int64_t bound = 0;
    const int n = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int i = 0; i < n; ++i) {
      t += i ? "," : "";
      if (i + 1 < n) {
        bound += std::uniform_int_distribution<std::int64_t>(1, 400)(rng);
        t += "{\"up_to\":" + std::to_string(bound) + ",";
      } else {
        t += "{";
      }
      const rate_e6 rate = std::uniform_int_distribution<std::int64_t>(0, 9'999'999'999)(rng);
      t += "\"rate\":\"" + format_rate(rate) +
           "\",\"flat_fee\":" + std::to_string(std::uniform_int_distribution<int>(0, 3)(rng)) + "}";
    }
    return t + "]";
  };
  const auto classes = [&] {
    std::string c = "\"input\":" + tiers() + ",\"output\":" + tiers();
    for (const char* name :
         {"cached_input", "cache_write", "image_input", "audio_input", "audio_output"}) {
      if (std::uniform_int_distribution<int>(0, 1)(rng))
        c += ",\"" + std::string(name) + "\":" + tiers();
    }
    return c + ",\"request_fee\":" + std::to_string(std::uniform_int_distribution<int>(0, 9)(rng));
  };
  for (int round = 0; round < 150; ++round) {
    // Up to three bands at random thresholds.
    std::vector<std::int64_t> thresholds;
    std::string book = "{\"m\":{" + classes();
    const int bands = std::uniform_int_distribution<int>(0, 3)(rng);
    if (bands > 0) book += ",\"context_bands\":[";
    std::int64_t above = 0;
    for (int b = 0; b < bands; ++b) {
      above += std::uniform_int_distribution<std::int64_t>(1, 300)(rng);
      thresholds.push_back(above);
      book += (b ? ",{\"above\":" : "{\"above\":") + std::to_string(above) + "," + classes() + "}";
    }
    if (bands > 0) book += "]";
    book += "}}";
    const int discount = std::uniform_int_distribution<int>(0, 10'000)(rng);
    const rating_plan plan = plan_of(book, discount);
    period_usage period;
    period.tier_mode = "graduated";
    period.tier_scope = "model";
    period.batch_discount_bp = discount;
    period.versions = {{1, book}};
    accumulator_map stored;
    std::int64_t cost = 0;
    const int events = std::uniform_int_distribution<int>(1, 50)(rng);
    for (int at = 0; at < events;) {
      // A batch of events on a copy of the stored accumulators, as the ledger writer does.
      accumulator_map batch = stored;
      const int size = std::uniform_int_distribution<int>(1, 8)(rng);
      for (int i = at; i < std::min(events, at + size); ++i) {
        const auto count = [&rng](std::int64_t top) {
          return std::uniform_int_distribution<std::int64_t>(0, top)(rng);
        };
        const token_counts n{count(900), count(200), count(200), count(100),
                             count(100), count(300), count(200)};
        rating_event e = event_of("m", n, count(3) == 0);
        e.answered = count(4) != 0;
        const auto rated = rate_event(plan, e, batch);
        REQUIRE(rated);
        cost += rated->cost_micros;
        period_usage::totals row;
        row.version = 1;
        row.model = "m";
        row.batch = e.batch;
        for (int c = 0; c < token_class_count; ++c) row.tokens_of(c) = e.tokens_of(c);
        row.requests = e.answered ? 1 : 0;
        for (const std::int64_t t : thresholds) {
          if (n.prompt > t) row.prompt_above = t;
        }
        period.rows.push_back(row);
      }
      stored = batch;
      at += size;
    }
    const auto priced = price_period(period);
    CHECK(cost == priced.total_micros);
    // And accumulator by accumulator: what its events were charged is its invoice lines' sum.
    for (const auto& [key, state] : stored) {
      std::int64_t lines = 0;
      for (const auto& l : priced.lines) {
        if (l.token_class == std::get<3>(key) && l.batch == std::get<4>(key)) {
          lines += l.amount_micros;
        }
      }
      CHECK(state.charged_micros == lines);
    }
  }
}

TEST_CASE("volume tiers in context bands: each band reaches its own tier") {
  // Volume: every token of a class at the rate of the tier its period volume reached. Base
  // input 2 micro-units a token up to 100 tokens, 1 beyond; prompts above 1,000 tokens 4 and 3.
  const std::string book = R"({"m":{
    "input":[{"up_to":100,"rate":"2000000"},{"rate":"1000000"}],"output":[{"rate":"1000000"}],
    "context_bands":[{"above":1000,"input":[{"up_to":100,"rate":"4000000"},{"rate":"3000000"}],
                      "output":[{"rate":"2000000"}]}]}})";
  rating_plan plan;
  plan.mode = tier_mode::volume;
  const auto doc = json::document::parse(book);
  REQUIRE(doc);
  auto parsed = parse_model_prices(doc->root(), tier_mode::volume, tier_scope::model);
  REQUIRE(parsed);
  plan.versions = {{1, 0, std::make_shared<const std::vector<model_prices>>(std::move(*parsed))}};
  accumulator_map acc;
  std::vector<std::int64_t> costs;
  for (const token_counts& n :
       {token_counts{60, 0, 0, 0, 0, 0, 0}, token_counts{60, 0, 0, 0, 0, 0, 0},
        token_counts{1500, 0, 0, 0, 0, 10, 0}}) {
    rating_event e = event_of("m", n);
    e.answered = false;
    costs.push_back(rate_event(plan, e, acc)->cost_micros);
  }
  // 60 tokens at 2; the next 60 take the base to 120 tokens, all at 1 (120): provisionally 0,
  // never below zero; the long prompt at its band's reached tier, 1,500 x 3, and 10 x 2.
  CHECK(costs == std::vector<std::int64_t>{120, 0, 4'520});
  period_usage period;
  period.tier_mode = "volume";
  period.tier_scope = "model";
  period.versions = {{1, book}};
  period_usage::totals base;
  base.version = 1;
  base.model = "m";
  base.input = 120;
  period_usage::totals band = base;
  band.input = 1500;
  band.output = 10;
  band.prompt_above = 1000;
  period.rows = {base, band};
  const auto priced = price_period(period);
  CHECK(priced.total_micros == 4'640);
  REQUIRE(priced.lines.size() == 3);
  CHECK(priced.lines[0].token_class == "input");
  CHECK(priced.lines[0].tier == 2);
  CHECK(priced.lines[0].amount_micros == 120);
  CHECK(priced.lines[1].token_class == "input>1000");
  CHECK(priced.lines[1].tier == 2);
  CHECK(priced.lines[1].amount_micros == 4'500);
  CHECK(priced.lines[2].token_class == "output>1000");
}

TEST_CASE("an allowance covers tokens at the base prices, not a context band's") {
  rating_plan plan = plan_of(gemini_book);
  const auto doc = json::document::parse(
      R"({"allowances":[{"model":"gemini-1.5-pro","token_class":"input","tokens":150000}]})");
  REQUIRE(doc);
  const auto terms = parse_plan_terms(doc->root());
  REQUIRE(terms);
  plan.terms = *terms;
  accumulator_map acc;
  // 100,000 prompt tokens at the base prices: inside the allowance; 1,000 output: $0.005.
  auto a = rate_event(plan, event_of("gemini-1.5-pro", {100'000, 0, 0, 0, 0, 1'000, 0}), acc);
  REQUIRE(a);
  CHECK(a->cost_micros == 5'000);
  // 200,000 prompt tokens: the long-context band has no allowance: $0.50 + 2,000 output $0.02.
  auto b = rate_event(plan, event_of("gemini-1.5-pro", {200'000, 0, 0, 0, 0, 2'000, 0}), acc);
  REQUIRE(b);
  CHECK(b->cost_micros == 520'000);
  // 100,000 more at the base prices: 50,000 left in the allowance, 50,000 at $1.25/1M.
  auto c = rate_event(plan, event_of("gemini-1.5-pro", {100'000, 0, 0, 0, 0, 0, 0}), acc);
  REQUIRE(c);
  CHECK(c->cost_micros == 62'500);

  // The period priced from its totals, as invoices do, comes to the same.
  period_usage period;
  period.tier_mode = "graduated";
  period.tier_scope = "model";
  period.versions = {{1, gemini_book}};
  period.terms = *terms;
  period_usage::totals base;
  base.version = 1;
  base.model = "gemini-1.5-pro";
  base.input = 200'000;
  base.output = 1'000;
  period_usage::totals long_context = base;
  long_context.input = 200'000;
  long_context.output = 2'000;
  long_context.prompt_above = 128'000;
  period.rows = {base, long_context};
  CHECK(price_period(period).total_micros == 587'500);
}

TEST_CASE("a token bundle of a new class pays on a long-context request; the band stays") {
  // A cache-write bundle (40,000 tokens of gemini-1.5-pro at a locked $2.00 per 1M) and a
  // 200,000-token prompt of which 100,000 write the upstream's cache. The prompt is above
  // 128K, so the request is rated in the long-context band whatever the bundle pays: the
  // bundle takes 40,000 cache-write tokens ($0.08), the other 60,000 are charged at the
  // band's cache-write rate (the book prices no cache writes, so the band's input rate,
  // $2.50 per 1M: $0.15), the 100,000 plain input tokens at $2.50 per 1M ($0.25).
  rating_plan plan = plan_of(gemini_book);
  std::vector<token_bundle> bundles = {
      {"cg_cw", "gemini-1.5-pro", tc_cache_write, 40'000, 40'000, 2'000'000, 0, std::nullopt, {}}};
  accumulator_map acc;
  rating_event e = event_of("gemini-1.5-pro", {200'000, 0, 100'000, 0, 0, 0, 0});
  const auto draws = cover_with_bundles(plan, e, acc, bundles);
  REQUIRE(draws.size() == 1);
  CHECK(draws[0].token_class == tc_cache_write);
  CHECK(draws[0].tokens == 40'000);
  CHECK(draws[0].amount_micros == 80'000);
  CHECK(bundles[0].tokens_left == 0);
  CHECK(e.cache_write == 60'000);
  CHECK(e.prompt_tokens == 200'000);  // it still chooses the band
  const auto rated = rate_event(plan, e, acc);
  REQUIRE(rated);
  CHECK(rated->band_above == 128'000);
  CHECK(rated->cost_micros == 150'000 + 250'000);
  CHECK(acc.at(key_of("gemini-1.5-pro", "cache_write>128000")).position == 60'000);
  // A bundle of another class or model gives nothing.
  std::vector<token_bundle> other = {
      {"cg_o", "gemini-1.5-pro", tc_audio_input, 10, 10, 1, 0, std::nullopt, {}},
      {"cg_m", "another-model", tc_cache_write, 10, 10, 1, 0, std::nullopt, {}}};
  rating_event again = event_of("gemini-1.5-pro", {200'000, 0, 100'000, 0, 0, 0, 0});
  CHECK(cover_with_bundles(plan, again, acc, other).empty());
  CHECK(token_class_index("cache_write") == tc_cache_write);
  CHECK(token_class_index("requests") == -1);
}
