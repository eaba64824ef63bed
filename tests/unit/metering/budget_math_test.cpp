// Unit tests of the budget engine's pure parts: window boundaries and the spend estimate.
#include <catch2/catch.hpp>
#include <limits>

#include "metering/budget_engine.hpp"

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

TEST_CASE("window boundaries in UTC") {
  const std::int64_t t = 1'795'357'045'123;  // 2026-11-22T14:17:25.123Z
  CHECK(window_start_ms(budget_window::minute, t) == 1'795'357'020'000);
  CHECK(window_end_ms(budget_window::minute, t) == 1'795'357'080'000);
  CHECK(window_start_ms(budget_window::hour, t) == 1'795'356'000'000);
  CHECK(window_start_ms(budget_window::day, t) == 1'795'305'600'000);
  CHECK(window_start_ms(budget_window::month, t) == 1'793'491'200'000);  // 2026-11-01
  CHECK(window_end_ms(budget_window::month, t) == 1'796'083'200'000);    // 2026-12-01
  CHECK(window_end_ms(budget_window::month, 1'796'083'200'000 + 5) ==
        1'798'761'600'000);  // December turns into 2027-01-01
  CHECK(window_start_ms(budget_window::lifetime, t) == 0);
  CHECK(window_end_ms(budget_window::lifetime, t) == 0);
}
