// Unit tests of budget leases' pure parts: the slice-size rule (large far from the limit and
// among few gateways, exactly the request's amount near it) and the in-memory accounting of
// one lease shared by threads (every take, finish, close and flush adds up to the slice); when a
// lease is due for renewal ahead of need, and when it counts as far from its limit.
#include <catch2/catch.hpp>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "metering/budgets/lease.hpp"

using namespace tollgate::metering;

namespace {

lease_grant grant_of(std::int64_t slice, std::int64_t serve_until_ms = 1'000) {
  lease_grant g;
  g.counter_key = "tg:{ten_t}:b:bud_1:0";
  g.hold_field = "h700000";
  g.slice = slice;
  g.serve_until_ms = serve_until_ms;
  return g;
}

}  // namespace

TEST_CASE("slice rule: a share of what is left, split among the gateways sharing it") {
  // Far from the limit: available / (divisor x gateways), rounded down.
  CHECK(lease_slice(1'000'000, 100, 1, 8) == 125'000);
  CHECK(lease_slice(1'000'000, 100, 2, 8) == 62'500);
  CHECK(lease_slice(1'000'000, 100, 3, 8) == 41'666);
  // More gateways, smaller slices; never less than the request's amount.
  std::int64_t previous = lease_slice(1'000'000, 100, 1, 8);
  for (std::int64_t g = 2; g <= 64; ++g) {
    const std::int64_t s = lease_slice(1'000'000, 100, g, 8);
    CHECK(s <= previous);
    CHECK(s >= 100);
    previous = s;
  }
  // Near the limit the share falls to the request's amount or below: exactly the amount, a
  // per-request hold.
  CHECK(lease_slice(800, 100, 1, 8) == 100);
  CHECK(lease_slice(801, 100, 1, 8) == 100);  // 100.1 rounds down to 100: not more
  CHECK(lease_slice(808, 100, 1, 8) == 101);
  CHECK(lease_slice(1'600, 100, 2, 8) == 100);
  CHECK(lease_slice(100, 100, 1, 8) == 100);
  CHECK(lease_slice(0, 100, 1, 8) == 100);     // the script refuses a hard limit before this
  CHECK(lease_slice(-500, 100, 1, 8) == 100);  // a soft limit over its limit: per request
  CHECK(lease_slice(0, 0, 1, 8) == 0);
  // Degenerate inputs count as one gateway and a divisor of one.
  CHECK(lease_slice(1'000, 10, 0, 0) == 1'000);
}

TEST_CASE("slice rule: what leases can strand is bounded by a share of what is left") {
  // G gateways each take a slice in turn of what the others left: together they never hold
  // more than 1 / divisor of what was left before the first, and the last slices shrink.
  std::mt19937_64 rng(7);
  for (int round = 0; round < 1'000; ++round) {
    const std::int64_t divisor = std::uniform_int_distribution<std::int64_t>(1, 16)(rng);
    const std::int64_t gateways = std::uniform_int_distribution<std::int64_t>(1, 12)(rng);
    const std::int64_t amount = std::uniform_int_distribution<std::int64_t>(1, 1'000)(rng);
    const std::int64_t start = std::uniform_int_distribution<std::int64_t>(0, 10'000'000)(rng);
    std::int64_t available = start;
    std::int64_t leased = 0;
    for (std::int64_t g = 0; g < gateways && available >= amount; ++g) {
      const std::int64_t s = lease_slice(available, amount, gateways, divisor);
      REQUIRE(s >= amount);
      REQUIRE(s <= available);
      if (s > amount) leased += s;  // one-request leases strand nothing beyond their request
      available -= s;
    }
    REQUIRE(leased <= start / divisor);
  }
}

TEST_CASE("slice rule: gateways joining one by one strand at most a harmonic share") {
  // The k-th open slice counted at least k gateways sharing the counter: together n slices
  // hold at most what was left / divisor x (1 + 1/2 + ... + 1/n).
  std::mt19937_64 rng(9);
  for (int round = 0; round < 1'000; ++round) {
    const std::int64_t divisor = std::uniform_int_distribution<std::int64_t>(1, 16)(rng);
    const std::int64_t n = std::uniform_int_distribution<std::int64_t>(1, 12)(rng);
    const std::int64_t amount = std::uniform_int_distribution<std::int64_t>(1, 1'000)(rng);
    const std::int64_t start = std::uniform_int_distribution<std::int64_t>(0, 10'000'000)(rng);
    std::int64_t available = start;
    std::int64_t leased = 0;
    double bound = 0;
    for (std::int64_t k = 1; k <= n && available >= amount; ++k) {
      const std::int64_t s = lease_slice(available, amount, k, divisor);
      if (s > amount) leased += s;
      available -= s;
      bound += static_cast<double>(start) / static_cast<double>(divisor * k);
    }
    REQUIRE(static_cast<double>(leased) <= bound);
  }
}

TEST_CASE("a lease serves takes until its slice is used, and only in its serving time") {
  budget_lease l(grant_of(1'000, 500));
  CHECK(l.take(400, 0));
  CHECK(l.take(400, 100));
  CHECK_FALSE(l.take(400, 200));  // 200 left
  CHECK(l.take(200, 499));
  CHECK(l.unused() == 0);
  CHECK(l.in_flight() == 3);
  // Finishing gives back the worst case less what it counts.
  l.finish(400, 150);
  CHECK(l.unused() == 250);
  CHECK_FALSE(l.take(100, 500));  // the serving time is over
  CHECK(l.take(250, 10));
}

TEST_CASE("flushes send what was settled, and a closed lease's unused part, once") {
  budget_lease l(grant_of(1'000));
  REQUIRE(l.take(300, 0));
  REQUIRE(l.take(300, 0));
  l.finish(300, 120);
  auto p = l.take_flush();
  CHECK(p.settled == 120);
  CHECK(p.returned == 0);  // open: the unused part stays leased
  CHECK(l.take_flush().settled == 0);
  l.close();
  l.close();  // idempotent
  CHECK(l.closed());
  CHECK(l.unused() == 0);
  CHECK_FALSE(l.take(1, 0));
  p = l.take_flush();
  CHECK(p.returned == 580);  // 1000 - 120 settled - 300 in flight
  CHECK_FALSE(l.done());     // one request still in flight
  // A request finishing after the close still comes back, to the next flush.
  l.finish(300, 0);
  p = l.take_flush();
  CHECK(p.settled == 0);
  CHECK(p.returned == 300);
  CHECK(l.done());
}

TEST_CASE("threads sharing a lease: settled plus returned is the slice, to the unit") {
  const std::int64_t slice = 10'000'000;  // more than 80,000 requests use: it never runs out
  budget_lease l(grant_of(slice, 1'000'000));
  std::atomic<std::int64_t> counted{0};
  std::atomic<bool> stop{false};
  std::int64_t flushed_settled = 0;
  std::int64_t flushed_returned = 0;
  std::thread flusher([&] {
    while (!stop.load()) {
      const auto p = l.take_flush();
      flushed_settled += p.settled;
      flushed_returned += p.returned;
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t));
      for (int i = 0; i < 20'000; ++i) {
        if (t == 0 && i == 15'000) l.close();  // closing while the others take and finish
        const std::int64_t worst = std::uniform_int_distribution<std::int64_t>(1, 200)(rng);
        if (!l.take(worst, 0)) continue;
        const std::int64_t actual = std::uniform_int_distribution<std::int64_t>(0, worst)(rng);
        counted += actual;
        l.finish(worst, actual);
      }
    });
  }
  for (auto& w : workers) w.join();
  stop = true;
  flusher.join();
  const auto last = l.take_flush();
  flushed_settled += last.settled;
  flushed_returned += last.returned;
  CHECK(l.done());
  CHECK(flushed_settled == counted.load());
  CHECK(flushed_settled + flushed_returned == slice);
  CHECK(flushed_returned > 0);  // the close gave the unused part back
}

TEST_CASE("requests under alert thresholds or a credit plan keep per-request holds") {
  budget_info plain;
  plain.metric = budget_metric::tokens;
  budget_info alerting = plain;
  alerting.alert_thresholds = {80};
  budget_info credit;
  credit.metric = budget_metric::credit;
  const std::vector<const budget_info*> ok{&plain, &plain};
  const std::vector<const budget_info*> with_alerts{&plain, &alerting};
  const std::vector<const budget_info*> with_credit{&credit};
  CHECK(leasable(ok));
  CHECK_FALSE(leasable(with_alerts));
  CHECK_FALSE(leasable(with_credit));
}

TEST_CASE("a lease is renewed ahead of need when it runs low or nears its end") {
  const lease_grant g = grant_of(1'000, 2'000);
  // Plenty unused, far from its end: not yet.
  CHECK_FALSE(lease_renewal_due(g, 900, 1'000, 250, 3'000));
  // Unused below a quarter of the slice: due, whenever it ends.
  CHECK(lease_renewal_due(g, 249, 1'000, 250, 0));
  CHECK_FALSE(lease_renewal_due(g, 250, 1'000, 250, 0));
  // Within 250 ms of its end, and a lease taken now would serve longer: due.
  CHECK(lease_renewal_due(g, 900, 1'750, 250, 3'750));
  CHECK_FALSE(lease_renewal_due(g, 900, 1'749, 250, 3'749));
  // ... but not when a new lease would end at the same instant (a sliding window's bucket).
  CHECK_FALSE(lease_renewal_due(g, 900, 1'900, 250, 2'000));
}

TEST_CASE("a lease is far from its limit when its slice covers 64 requests like its first") {
  lease_grant g = grant_of(6'400);
  g.asked = 100;
  CHECK(lease_far_from_limit(g));
  g.slice = 6'399;
  CHECK_FALSE(lease_far_from_limit(g));
  g.slice = 100;  // a one-request lease
  CHECK_FALSE(lease_far_from_limit(g));
  g.asked = 0;  // a request asking nothing counts as asking 1
  g.slice = 64;
  CHECK(lease_far_from_limit(g));
  g.slice = std::int64_t{1} << 62;  // no overflow
  g.asked = std::int64_t{1} << 52;
  CHECK(lease_far_from_limit(g));
}
