// Unit tests of the budget engine's pure arithmetic: the spend estimate, alert levels, calendar
// month, quarter and ISO week windows against the C library's calendar, and the buckets of
// sliding windows (the scripts are tested in tests/integration/budget_engine_test.cpp).
#include <catch2/catch.hpp>
#include <ctime>
#include <limits>
#include <random>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/windows.hpp"

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

TEST_CASE("calendar month, quarter and ISO week windows agree with the C library's calendar") {
  // The reference: gmtime_r to split the instant, timegm to rebuild the 1st of its month (or
  // quarter), or the Monday of its week.
  const auto utc_tm = [](std::int64_t ms) {
    const std::time_t secs = static_cast<std::time_t>((ms - ((ms % 1000) + 1000) % 1000) / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return tm;
  };
  const auto first_of_month_ms = [&](std::int64_t ms, int months_ahead) {
    std::tm tm = utc_tm(ms);
    tm.tm_mday = 1;
    tm.tm_mon += months_ahead;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000;
  };
  const auto first_of_quarter_ms = [&](std::int64_t ms, int quarters_ahead) {
    std::tm tm = utc_tm(ms);
    tm.tm_mday = 1;
    tm.tm_mon = tm.tm_mon / 3 * 3 + 3 * quarters_ahead;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000;
  };
  const auto monday_ms = [&](std::int64_t ms, int weeks_ahead) {
    std::tm tm = utc_tm(ms);
    tm.tm_mday -= (tm.tm_wday + 6) % 7;  // tm_wday: 0 is Sunday
    tm.tm_mday += 7 * weeks_ahead;
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
    REQUIRE(window_start_ms(budget_window::quarter, ms) == first_of_quarter_ms(ms, 0));
    REQUIRE(window_end_ms(budget_window::quarter, ms) == first_of_quarter_ms(ms, 1));
    REQUIRE(window_start_ms(budget_window::week, ms) == monday_ms(ms, 0));
    REQUIRE(window_end_ms(budget_window::week, ms) == monday_ms(ms, 1));
  }
  // 2026-11-22 11:00 UTC is a Sunday: its ISO week began on Monday 2026-11-16.
  CHECK(window_start_ms(budget_window::week, 1795345200000) == 1794787200000);
  CHECK(window_end_ms(budget_window::week, 1795345200000) == 1795392000000);
  // Its quarter runs from 2026-10-01 to 2027-01-01.
  CHECK(window_start_ms(budget_window::quarter, 1795345200000) == 1790812800000);
  CHECK(window_end_ms(budget_window::quarter, 1795345200000) == 1798761600000);
}

TEST_CASE("sliding windows: buckets of a twelfth in whole seconds, at most 13 overlap") {
  CHECK(bucket_length_ms(60'000) == 5'000);
  CHECK(bucket_length_ms(90'000) == 8'000);  // 7.5 s rounded up
  CHECK(bucket_length_ms(3'600'000) == 300'000);
  CHECK(bucket_length_ms(31ll * 86'400'000) == 223'200'000);
  CHECK(bucket_length_ms(61'000) == 6'000);
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<std::int64_t> length(window_length_min_ms, window_length_max_ms);
  std::uniform_int_distribution<std::int64_t> instant(0, 4'102'444'800'000);
  for (int i = 0; i < 20'000; ++i) {
    const std::int64_t len = i % 4 == 0 ? 60'000 : length(rng) / 1000 * 1000;
    const std::int64_t now = instant(rng);
    INFO(len << " " << now);
    const sliding_buckets b = buckets_at(len, now);
    REQUIRE(b.bucket_ms % 1000 == 0);
    REQUIRE(b.bucket_ms * sliding_buckets_per_window >= len);  // a twelfth, rounded up
    REQUIRE(b.bucket_ms < (len + 11) / 12 + 1000);
    REQUIRE(b.count >= len / b.bucket_ms + 1);
    REQUIRE(b.count <= sliding_buckets_max);
    // The newest holds now; the oldest holds now - len: every bucket overlapping
    // [now - len, now], and no other.
    REQUIRE(b.start_of(0) <= now);
    REQUIRE(now < b.start_of(0) + b.bucket_ms);
    const std::int64_t oldest = b.start_of(b.count - 1);
    REQUIRE(oldest <= now - len);
    REQUIRE(now - len < oldest + b.bucket_ms);
    // A bucket leaves the window when the window's start passes its end.
    REQUIRE(b.leaves_at(b.count - 1) > now);
    const sliding_buckets later = buckets_at(len, b.leaves_at(b.count - 1));
    REQUIRE(later.start_of(later.count - 1) > oldest);
    const sliding_buckets just_before = buckets_at(len, b.leaves_at(b.count - 1) - 1);
    REQUIRE(just_before.start_of(just_before.count - 1) == oldest);
    REQUIRE(window_start_ms(window_spec::duration_of(len), now) == b.start_of(0));
    REQUIRE(window_end_ms(window_spec::duration_of(len), now) == b.leaves_at(0));
  }
}
