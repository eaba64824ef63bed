// Unit tests of the budget engine's pure arithmetic: the spend estimate, alert levels and
// calendar month windows (the other window boundaries are tested with the scripts, in
// tests/integration/budget_engine_test.cpp).
#include <catch2/catch.hpp>
#include <ctime>
#include <limits>
#include <random>
#include <vector>

#include "metering/budgets/budget_engine.hpp"

using namespace tollgate::metering;

TEST_CASE("spend estimate: exact micro-units, rounded up once per request") {
  // 1,000 prompt tokens at 2.50 per million (2,500,000 micro-units) = 2,500 micro-units exactly.
  CHECK(estimate_spend_micros(1000, 0, 2'500'000, 10'000'000) == 2'500);
  // + 1 completion token at 10.00 per million = 10 micro-units.
  CHECK(estimate_spend_micros(1000, 1, 2'500'000, 10'000'000) == 2'510);
  // 1 token at 0.15 per million is 0.15 micro-units: rounded up to 1, never to 0.
  CHECK(estimate_spend_micros(1, 0, 150'000, 0) == 1);
  // The two parts are summed before rounding: 0.5 + 0.5 = 1, not 2.
  CHECK(estimate_spend_micros(1, 1, 500'000, 500'000) == 1);
  CHECK(estimate_spend_micros(0, 0, 1'000'000, 1'000'000) == 0);
  CHECK(estimate_spend_micros(5, 7, 0, 0) == 0);
  // Negative counts are treated as none.
  CHECK(estimate_spend_micros(-5, 3, 1'000'000, 1'000'000) == 3);
  // Huge products stay exact in 128 bits, and the result saturates instead of wrapping.
  CHECK(estimate_spend_micros(4'000'000'000'000, 0, 1'000'000'000'000, 0) ==
        4'000'000'000'000'000'000);
  CHECK(estimate_spend_micros(std::numeric_limits<std::int64_t>::max(),
                              std::numeric_limits<std::int64_t>::max(), 1'000'000'000'000,
                              1'000'000'000'000) == std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("alert threshold levels: ceil(limit x percent / 100), exact") {
  CHECK(threshold_level(100, 50) == 50);
  CHECK(threshold_level(101, 50) == 51);  // 50.5 rounds up: the threshold is reached, not near
  CHECK(threshold_level(3, 1) == 1);
  CHECK(threshold_level(0, 80) == 0);
  CHECK(threshold_level(1000, 1000) == 10'000);
  CHECK(threshold_level(std::numeric_limits<std::int64_t>::max() / 4, 1000) ==
        std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("calendar month windows agree with the C library's UTC calendar") {
  // The reference: gmtime_r to split the instant, timegm to rebuild the 1st of its month.
  const auto first_of_month_ms = [](std::int64_t ms, int months_ahead) {
    const std::time_t secs = static_cast<std::time_t>((ms - ((ms % 1000) + 1000) % 1000) / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += months_ahead;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000;
  };
  std::mt19937_64 rng(7);
  // 1900 .. 2200, with month ends, leap days and instants a millisecond either side of midnight.
  std::uniform_int_distribution<std::int64_t> instant(-2'208'988'800'000, 7'258'118'400'000);
  std::vector<std::int64_t> cases{0, -1, 1, 951'782'400'000, 951'868'799'999, 4'107'542'400'000,
                                  1'798'761'599'999, 1'798'761'600'000};
  for (int i = 0; i < 20'000; ++i) cases.push_back(instant(rng));
  for (const std::int64_t ms : cases) {
    INFO(ms);
    REQUIRE(window_start_ms(budget_window::month, ms) == first_of_month_ms(ms, 0));
    REQUIRE(window_end_ms(budget_window::month, ms) == first_of_month_ms(ms, 1));
  }
}
