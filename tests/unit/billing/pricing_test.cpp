// Unit and property tests of the rating formula: Stripe's documented example tiers, flat fees,
// rate parsing, schedule validation, and random schedules with random event streams in random
// orders and batches whose charges always sum to floor(F(total)).
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "billing/pricing.hpp"

using namespace tollgate::billing;

namespace {

constexpr std::int64_t million = 1'000'000;

// Stripe's example: units 1-5 at 7.00, 6-10 at 6.50, 11+ at 6.00. One "unit" is 1M tokens
// here, and a currency unit is 10^6 micro-units, so 7.00 per unit is 7,000,000 micro-units per
// 1M tokens: rate_e6 7 x 10^12.
price_schedule stripe_example(tier_mode mode) {
  price_schedule s;
  s.mode = mode;
  s.tiers = {{5 * million, 7 * million * million, 0},
             {10 * million, 6'500'000 * million, 0},
             {std::nullopt, 6 * million * million, 0}};
  return s;
}

// F(units) by a different road: every unit's own price as an exact fraction of 10^12, summed
// unit by unit (small volumes only), plus the flat fees.
std::int64_t reference_price(const price_schedule& s, std::int64_t units, int discount_bp) {
  __int128 total = 0;
  if (s.mode == tier_mode::graduated) {
    std::int64_t lower = 0;
    for (const auto& t : s.tiers) {
      if (units > lower) total += static_cast<__int128>(t.flat_fee_micros) * 1'000'000'000'000;
      const std::int64_t upper = t.up_to ? *t.up_to : INT64_MAX;
      for (std::int64_t u = lower + 1; u <= std::min(units, upper); ++u) total += t.rate;
      if (!t.up_to || units <= *t.up_to) break;
      lower = *t.up_to;
    }
  } else {
    for (const auto& t : s.tiers) {
      if (!t.up_to || units <= *t.up_to) {
        for (std::int64_t u = 1; u <= units; ++u) total += t.rate;
        if (units > 0) total += static_cast<__int128>(t.flat_fee_micros) * 1'000'000'000'000;
        break;
      }
    }
  }
  total *= 10'000 - discount_bp;
  return static_cast<std::int64_t>(total / (static_cast<__int128>(1'000'000'000'000) * 10'000));
}

price_schedule random_schedule(std::mt19937_64& rng, tier_mode mode, std::int64_t span) {
  price_schedule s;
  s.mode = mode;
  const int n = std::uniform_int_distribution<int>(1, 5)(rng);
  std::int64_t bound = 0;
  for (int i = 0; i < n; ++i) {
    price_tier t;
    if (i + 1 < n) {
      bound += std::uniform_int_distribution<std::int64_t>(1, span)(rng);
      t.up_to = bound;
    }
    // Rates with awkward fractions: any rate_e6, so per-token prices are rarely whole.
    t.rate = std::uniform_int_distribution<std::int64_t>(0, 30'000'000'000'000)(rng);
    if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
      t.flat_fee_micros = std::uniform_int_distribution<std::int64_t>(0, 5'000'000)(rng);
    }
    s.tiers.push_back(t);
  }
  REQUIRE(validate(s).empty());
  return s;
}

}  // namespace

TEST_CASE("Stripe's example tiers: graduated and volume") {
  const auto graduated = stripe_example(tier_mode::graduated);
  const auto volume = stripe_example(tier_mode::volume);
  REQUIRE(validate(graduated).empty());
  CHECK(price_micros(graduated, 6 * million) == 41'500'000);    // 41.50
  CHECK(price_micros(graduated, 20 * million) == 127'500'000);  // 127.50
  CHECK(price_micros(volume, 6 * million) == 39'000'000);       // 39.00
  CHECK(price_micros(volume, 20 * million) == 120'000'000);     // 120.00
  CHECK(price_micros(graduated, 0) == 0);
  CHECK(price_micros(volume, 0) == 0);
  // Tier bounds are inclusive: unit 5M is still at 7.00, the next one is not.
  CHECK(price_micros(volume, 5 * million) == 35'000'000);
  CHECK(price_micros(volume, 5 * million + 1) == 32'500'006);  // floor(5,000,001 x 6.5)
  // The batch discount (50 %) scales the function.
  CHECK(price_micros(graduated, 20 * million, 5'000) == 63'750'000);
}

TEST_CASE("flat fees: graduated charges each tier entered, volume the tier reached") {
  price_schedule s;
  s.tiers = {{1000, 2'000'000'000'000, 500}, {std::nullopt, 1'000'000'000'000, 700}};
  // 2 micro-units per token for 1..1000 (2,000,000 per 1M), then 1.
  CHECK(price_micros(s, 1) == 500 + 2);
  CHECK(price_micros(s, 1000) == 500 + 2000);
  CHECK(price_micros(s, 1001) == 500 + 2000 + 700 + 1);
  CHECK(charge_micros(s, 1000, 1) == 701);  // entering the tier pays its fee
  s.mode = tier_mode::volume;
  CHECK(price_micros(s, 1000) == 500 + 2000);
  CHECK(price_micros(s, 1001) == 700 + 1001);
  CHECK(charge_micros(s, 1000, 1) == 0);  // F fell: provisional charge floors at zero
  CHECK(true_up_micros(s, 1001, 2500) == 1701 - 2500);
}

TEST_CASE("rates are exact decimals with up to six fractional digits") {
  CHECK(parse_rate("150000") == 150'000'000'000);
  CHECK(parse_rate("2.5") == 2'500'000);
  CHECK(parse_rate("0.000001") == 1);
  CHECK(parse_rate("0") == 0);
  CHECK(parse_rate("1000000000") == max_rate_e6);
  for (const char* bad : {"", ".", "1.", ".5", "-1", "1e6", "0.0000001", "1,5", "1.2.3",
                          "1000000000.000001", "99999999999999999999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(parse_rate(bad));
  }
  CHECK(parse_rate(".5") == std::nullopt);
  CHECK(format_rate(2'500'000) == "2.5");
  CHECK(format_rate(150'000'000'000) == "150000");
  CHECK(format_rate(1) == "0.000001");
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    const rate_e6 r = std::uniform_int_distribution<rate_e6>(0, max_rate_e6)(rng);
    CHECK(parse_rate(format_rate(r)) == r);
  }
}

TEST_CASE("schedules are checked: bounds increase, the last tier is unbounded") {
  price_schedule s;
  CHECK_THAT(validate(s), Catch::Contains("at least one tier"));
  s.tiers = {{100, 1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("unbounded"));
  s.tiers = {{std::nullopt, 1, 0}, {std::nullopt, 1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("only the last"));
  s.tiers = {{100, 1, 0}, {100, 1, 0}, {std::nullopt, 1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("tier 2"));
  s.tiers = {{0, 1, 0}, {std::nullopt, 1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("tier 1"));
  s.tiers = {{std::nullopt, -1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("rate"));
  s.tiers = {{std::nullopt, max_rate_e6 + 1, 0}};
  CHECK_THAT(validate(s), Catch::Contains("rate"));
  s.tiers = {{std::nullopt, 1, -5}};
  CHECK_THAT(validate(s), Catch::Contains("flat fee"));
  // The largest volumes at the largest rate stay exact (no overflow).
  s.tiers = {{std::nullopt, max_rate_e6, max_flat_fee_micros}};
  REQUIRE(validate(s).empty());
  CHECK(price_micros(s, max_units) == 1'000'000'000'000'000'000 + max_flat_fee_micros);
  CHECK(price_micros(s, max_units, 1) ==
        (1'000'000'000'000'000'000 + max_flat_fee_micros) / 10'000 * 9'999);
}

TEST_CASE("property: F agrees with a unit-by-unit reference") {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 200; ++round) {
    const auto mode = round % 2 == 0 ? tier_mode::graduated : tier_mode::volume;
    const auto s = random_schedule(rng, mode, 300);
    const int discount = std::uniform_int_distribution<int>(0, 3)(rng) == 0
                             ? std::uniform_int_distribution<int>(0, max_discount_bp)(rng)
                             : 0;
    for (int k = 0; k < 20; ++k) {
      const std::int64_t units = std::uniform_int_distribution<std::int64_t>(0, 2000)(rng);
      INFO("round " << round << " units " << units);
      CHECK(price_micros(s, units, discount) == reference_price(s, units, discount));
    }
  }
}

TEST_CASE("property: per-event charges sum to floor(F(total)) in any order and batching") {
  std::mt19937_64 rng(2026);
  for (int round = 0; round < 300; ++round) {
    const auto mode = round % 3 == 0 ? tier_mode::volume : tier_mode::graduated;
    const auto s = random_schedule(rng, mode, 50'000);
    const int discount = round % 4 == 0 ? 5'000 : 0;
    std::vector<std::int64_t> events(std::uniform_int_distribution<int>(1, 200)(rng));
    std::int64_t total = 0;
    for (auto& q : events) {
      q = std::uniform_int_distribution<std::int64_t>(0, 3'000)(rng);
      total += q;
    }
    std::vector<std::int64_t> sums;
    for (int ordering = 0; ordering < 3; ++ordering) {
      std::shuffle(events.begin(), events.end(), rng);
      // Random batches: the accumulator is read once per batch and advanced event by event,
      // as the ledger writer does; the batch boundaries must not matter.
      std::int64_t position = 0;
      std::int64_t sum = 0;
      std::size_t i = 0;
      while (i < events.size()) {
        const std::size_t batch = std::uniform_int_distribution<std::size_t>(1, 17)(rng);
        std::int64_t batch_position = position;
        for (std::size_t j = i; j < std::min(events.size(), i + batch); ++j) {
          const std::int64_t c = charge_micros(s, batch_position, events[j], discount);
          CHECK(c >= 0);
          sum += c;
          batch_position += events[j];
        }
        position = batch_position;
        i += batch;
      }
      REQUIRE(position == total);
      const std::int64_t exact = price_micros(s, total, discount);
      if (mode == tier_mode::graduated) {
        CHECK(sum == exact);
        CHECK(true_up_micros(s, total, sum, discount) == 0);
      } else {
        CHECK(sum >= exact);
        CHECK(sum + true_up_micros(s, total, sum, discount) == exact);
      }
      sums.push_back(sum);
    }
    if (mode == tier_mode::graduated)
      CHECK(std::adjacent_find(sums.begin(), sums.end(), std::not_equal_to<>()) == sums.end());
  }
}
