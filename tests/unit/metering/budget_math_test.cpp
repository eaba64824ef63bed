// Unit tests of the budget engine's pure arithmetic: the spend estimate and alert levels
// (window boundaries are tested with the scripts, in tests/integration/budget_engine_test.cpp).
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

TEST_CASE("alert threshold levels: ceil(limit x percent / 100), exact") {
  CHECK(threshold_level(100, 50) == 50);
  CHECK(threshold_level(101, 50) == 51);  // 50.5 rounds up: the threshold is reached, not near
  CHECK(threshold_level(3, 1) == 1);
  CHECK(threshold_level(0, 80) == 0);
  CHECK(threshold_level(1000, 1000) == 10'000);
  CHECK(threshold_level(std::numeric_limits<std::int64_t>::max() / 4, 1000) ==
        std::numeric_limits<std::int64_t>::max());
}
