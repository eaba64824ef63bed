// The balancer's pure parts: the weighted power-of-two-choices pick, ejection with exponential
// re-admission, and the retry budget, each driven by explicit time and random numbers.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "backends/balancer.hpp"

using namespace tollgate::backends;

TEST_CASE("p2c: at rest traffic follows the weights; under load the least loaded wins") {
  std::vector<p2c_candidate> c{{3, 0}, {1, 0}};
  std::mt19937_64 rng(7);
  int first = 0;
  constexpr int n = 40000;
  for (int i = 0; i < n; ++i) first += choose_p2c(c, rng(), rng()) == 0 ? 1 : 0;
  // 3:1 weights: about 75 % to the first (the first draw wins ties).
  CHECK(first > n * 72 / 100);
  CHECK(first < n * 78 / 100);

  // The heavier endpoint with more in flight per unit of weight loses whenever both are drawn
  // (r = 0..2 lands on the first, 3 on the second); drawn twice, it is taken.
  c = {{3, 9}, {1, 1}};
  CHECK(choose_p2c(c, 0, 3) == 1);
  CHECK(choose_p2c(c, 3, 2) == 1);
  CHECK(choose_p2c(c, 1, 2) == 0);
  // Equal load per weight: a tie, the first draw wins.
  c = {{2, 4}, {1, 2}};
  CHECK(choose_p2c(c, 0, 0) == 0);  // r1 = 0 lands on the first
  CHECK(choose_p2c(c, 2, 0) == 1);  // r1 = 2 of total weight 3 lands on the second

  // Of three equal endpoints, the idle one is taken whenever drawn: 1 - (2/3)^2 = 5/9.
  c = {{1, 5}, {1, 5}, {1, 0}};
  int idle = 0;
  for (int i = 0; i < 9000; ++i) idle += choose_p2c(c, rng(), rng()) == 2 ? 1 : 0;
  CHECK(idle > 9000 * 52 / 100);
  CHECK(idle < 9000 * 59 / 100);
  CHECK(choose_p2c(std::vector<p2c_candidate>{{1, 100}}, 1, 2) == 0);
}

TEST_CASE("ejection: failures in a row eject; the time doubles up to the max; success resets") {
  const ejection_policy p{3, 1000, 5000};
  CHECK(ejection_ms(p, 1) == 1000);
  CHECK(ejection_ms(p, 2) == 2000);
  CHECK(ejection_ms(p, 3) == 4000);
  CHECK(ejection_ms(p, 4) == 5000);
  CHECK(ejection_ms(p, 40) == 5000);

  endpoint_health h;
  mono_ms t = 100'000;
  CHECK(h.record_failure(p, t) == 0);
  CHECK(h.record_failure(p, t) == 0);
  h.record_success();  // the run is broken
  CHECK(h.record_failure(p, t) == 0);
  CHECK(h.record_failure(p, t) == 0);
  CHECK(h.available(t));
  CHECK(h.record_failure(p, t) == 1000);  // the third in a row
  CHECK_FALSE(h.available(t));
  CHECK_FALSE(h.available(t + 999));
  CHECK(h.record_failure(p, t + 10) == 0);  // a late failure while ejected changes nothing
  CHECK(h.available(t + 1000));
  // Re-admitted on probation: its first failure ejects it again, for twice as long.
  t += 1000;
  CHECK(h.record_failure(p, t) == 2000);
  CHECK_FALSE(h.available(t + 1999));
  t += 2000;
  CHECK(h.record_failure(p, t) == 4000);
  t += 4000;
  CHECK(h.record_failure(p, t) == 5000);  // capped
  t += 5000;
  CHECK(h.ejections_in_row() == 4);
  // A success ends the probation: back to three failures and the base time.
  h.record_success();
  CHECK(h.ejections_in_row() == 0);
  CHECK(h.record_failure(p, t) == 0);
  CHECK(h.record_failure(p, t) == 0);
  CHECK(h.record_failure(p, t) == 1000);

  // The active check's verdict is separate from passive ejection.
  endpoint_health a;
  a.set_active_down(true);
  CHECK_FALSE(a.available(t));
  a.set_active_down(false);
  CHECK(a.available(t));
  // Ejection off.
  endpoint_health off;
  for (int i = 0; i < 100; ++i) CHECK(off.record_failure(ejection_policy{0, 1000, 1000}, t) == 0);
  CHECK(off.available(t));
}

TEST_CASE("retry budget: a share of the requests plus a floor, over a sliding window") {
  retry_budget b(20, 2, 10'000);  // 20 %, 2 retries of floor, a 10 s window
  mono_ms t = 50'000;
  // No requests yet: the floor alone.
  CHECK(b.try_retry(t));
  CHECK(b.try_retry(t));
  CHECK_FALSE(b.try_retry(t));
  // 50 requests: 2 + 10 retries in all over the window.
  for (int i = 0; i < 50; ++i) b.record_request(t);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += b.try_retry(t) ? 1 : 0;
  CHECK(allowed == 10);
  // Within the window it stays spent; once the window has passed, the floor is back.
  CHECK_FALSE(b.try_retry(t + 9'000));
  CHECK(b.try_retry(t + 10'000));
  CHECK(b.try_retry(t + 10'000));
  CHECK_FALSE(b.try_retry(t + 10'000));
  // Slices age out one by one: requests of 5 s ago still count, those of 11 s ago do not.
  retry_budget s(50, 0, 10'000);
  for (int i = 0; i < 10; ++i) s.record_request(1'000'000);
  CHECK(s.try_retry(1'005'000));
  for (int i = 0; i < 10; ++i) s.try_retry(1'005'000);
  CHECK_FALSE(s.try_retry(1'005'000));  // 5 of 50 % of 10 spent
  CHECK_FALSE(s.try_retry(1'011'000));  // the requests aged out: nothing left, no floor
  retry_budget none(0, 0, 10'000);
  none.record_request(1);
  CHECK_FALSE(none.try_retry(1));
}
