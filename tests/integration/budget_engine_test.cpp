// Integration tests of the budget engine's Redis scripts against a real redis-server:
// concurrent reservations never exceed a hard limit, all-or-nothing across limits, settling
// counts actual usage once, holds expire, sliding windows (whole buckets; under a randomized
// clock no interval of the window's length holds more than the limit), soft limits, alerts,
// usage reads, window maths; and the same scripts on a three-master Redis Cluster, tenants
// spread over its nodes.
#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "tests/integration/redis_fixture.hpp"

namespace net = boost::asio;
using namespace tollgate;
using namespace tollgate::metering;
using namespace tollgate::test;

namespace {

using reserve_result = basic_result<reservation, redis::redis_error>;

limit_rule rule(std::string id, window_spec w, std::int64_t limit, bool hard = true) {
  limit_rule r;
  r.id = std::move(id);
  r.window = w;
  r.limit = limit;
  r.hard = hard;
  return r;
}

net::awaitable<reserve_result> reserve_one(budget_engine& engine, redis::client& c,
                                           std::string request_id,
                                           std::vector<limit_charge> charges,
                                           std::int64_t now_ms) {
  co_return co_await engine.reserve(c, "ten_t", std::move(request_id), std::move(charges), now_ms,
                                    nullptr);
}

net::awaitable<basic_result<settlement, redis::redis_error>> settle_one(
    budget_engine& engine, redis::client& c, hold_ticket ticket, std::vector<std::int64_t> actual) {
  co_return co_await engine.settle(c, std::move(ticket), std::move(actual));
}

net::awaitable<basic_result<std::int64_t, redis::redis_error>> used_of(budget_engine& engine,
                                                                      redis::client& c,
                                                                      limit_rule r,
                                                                      std::int64_t now_ms) {
  co_return co_await engine.used(c, "ten_t", std::move(r), now_ms);
}

// `n` reservations issued at once from several clients (connections), as several gateways do.
net::awaitable<std::vector<reserve_result>> many_reserves(budget_engine& engine,
                                                         std::vector<redis::client*> clients,
                                                         int n, std::vector<limit_charge> charges,
                                                         std::int64_t now_ms) {
  auto ex = co_await net::this_coro::executor;
  std::vector<std::future<reserve_result>> futures;
  for (int i = 0; i < n; ++i) {
    futures.push_back(net::co_spawn(
        ex, reserve_one(engine, *clients[static_cast<std::size_t>(i) % clients.size()],
                        "req_" + std::to_string(i), charges, now_ms),
        net::use_future));
  }
  net::steady_timer t(ex);
  for (auto& f : futures) {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      t.expires_after(std::chrono::milliseconds(1));
      co_await t.async_wait(net::use_awaitable);
    }
  }
  std::vector<reserve_result> out;
  for (auto& f : futures) out.push_back(f.get());
  co_return out;
}

const std::int64_t t0 = 1795345200000;  // 2026-11-22 11:00:00 UTC

}  // namespace

TEST_CASE("window boundaries are UTC minutes, hours, days and calendar months") {
  CHECK(window_start_ms(budget_window::minute, t0 + 61'500) == t0 + 60'000);
  CHECK(window_end_ms(budget_window::hour, t0 + 10) == t0 + 3'600'000);
  CHECK(window_start_ms(budget_window::day, t0) == 1795305600000);  // 2026-11-22 00:00 UTC
  CHECK(window_start_ms(budget_window::month, t0) == 1793491200000);  // 2026-11-01
  CHECK(window_end_ms(budget_window::month, t0) == 1796083200000);    // 2026-12-01
  CHECK(window_end_ms(budget_window::month, 1797000000000) == 1798761600000);  // Dec -> Jan 1
  CHECK(window_start_ms(budget_window::lifetime, t0) == 0);
  CHECK(window_end_ms(budget_window::lifetime, t0) == 0);
}

TEST_CASE("hundreds of concurrent reservations never overspend a hard limit") {
  redis_server server;
  net::io_context io;
  redis::client a(io.get_executor(), client_settings(server));
  redis::client b(io.get_executor(), client_settings(server));
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const std::vector<limit_charge> charges{{rule("month", budget_window::month, 10'000), 70},
                                          {rule("rpm", budget_window::minute, 1'000'000), 1}};
  const auto results = run(io, many_reserves(engine, {&a, &b, &c}, 400, charges, t0));
  int granted = 0;
  for (const auto& r : results) {
    REQUIRE(r);
    if (r->granted) {
      ++granted;
    } else {
      CHECK(r->refused_index == 0);  // the month budget refuses, not the rpm limit
      CHECK(r->refused_remaining < 70);
    }
  }
  CHECK(granted == 10'000 / 70);  // 142 holds of 70 fit in 10,000; the 143rd does not
  auto used = run(io, used_of(engine, a, rule("month", budget_window::month, 10'000), t0));
  REQUIRE(used);
  CHECK(*used == 142 * 70);
  // The refused ones held nothing anywhere: the rpm limit saw only the granted requests.
  auto rpm = run(io, used_of(engine, a, rule("rpm", budget_window::minute, 1'000'000), t0));
  REQUIRE(rpm);
  CHECK(*rpm == 142);
}

TEST_CASE("settling counts actual usage once and releases the rest of the hold") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto day = rule("day", budget_window::day, 1000);
  auto r = run(io, reserve_one(engine, c, "req_a", {{day, 600}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->remaining == std::vector<std::int64_t>{400});
  // A second request of 600 does not fit while the first holds 600.
  auto r2 = run(io, reserve_one(engine, c, "req_b", {{day, 600}}, t0 + 1));
  REQUIRE(r2);
  CHECK_FALSE(r2->granted);
  CHECK(r2->refused_remaining == 400);
  CHECK(r2->refused_reset_ms == window_end_ms(budget_window::day, t0) - (t0 + 1));
  // The first used 250: settling frees 350.
  auto s = run(io, settle_one(engine, c, r->ticket, {250}));
  REQUIRE(s);
  CHECK(s->first);
  auto again = run(io, settle_one(engine, c, r->ticket, {250}));
  REQUIRE(again);
  CHECK_FALSE(again->first);  // already settled: nothing counted twice
  auto used = run(io, used_of(engine, c, day, t0 + 2));
  REQUIRE(used);
  CHECK(*used == 250);
  auto r3 = run(io, reserve_one(engine, c, "req_c", {{day, 750}}, t0 + 3));
  REQUIRE(r3);
  CHECK(r3->granted);
  // Reserving twice with one request id holds once.
  auto r4 = run(io, reserve_one(engine, c, "req_c", {{day, 750}}, t0 + 4));
  REQUIRE(r4);
  CHECK_FALSE(r4->granted);  // 250 + 750 held leaves nothing for another 750...
  auto used2 = run(io, used_of(engine, c, day, t0 + 5));
  REQUIRE(used2);
  CHECK(*used2 == 1000);  // ...and the hold was not doubled
  // Nor where the limit would take it twice.
  const auto roomy = rule("roomy", budget_window::day, 10'000);
  for (int i = 0; i < 2; ++i) {
    auto twice = run(io, reserve_one(engine, c, "req_e", {{roomy, 700}}, t0 + 6 + i));
    REQUIRE(twice);
    CHECK(twice->granted);
  }
  auto used3 = run(io, used_of(engine, c, roomy, t0 + 8));
  REQUIRE(used3);
  CHECK(*used3 == 700);
}

TEST_CASE("all or nothing: one refusing limit means no hold on any") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto big = rule("big", budget_window::hour, 1'000'000);
  const auto small = rule("small", budget_window::hour, 100);
  auto r = run(io, reserve_one(engine, c, "req_x", {{big, 500}, {small, 500}}, t0));
  REQUIRE(r);
  CHECK_FALSE(r->granted);
  CHECK(r->refused_index == 1);
  CHECK(r->refused_remaining == 100);
  auto used = run(io, used_of(engine, c, big, t0));
  REQUIRE(used);
  CHECK(*used == 0);
}

TEST_CASE("holds that are never settled expire") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::milliseconds(500));
  const auto life = rule("life", budget_window::lifetime, 100);
  auto r = run(io, reserve_one(engine, c, "req_dies", {{life, 100}}, t0));
  REQUIRE(r);
  CHECK(r->granted);
  auto blocked = run(io, reserve_one(engine, c, "req_2", {{life, 1}}, t0 + 100));
  REQUIRE(blocked);
  CHECK_FALSE(blocked->granted);
  CHECK(blocked->refused_reset_ms == 0);  // a lifetime budget never reopens by itself
  // Past the hold's expiry the budget is whole again (the gateway holding it "died").
  auto later = run(io, reserve_one(engine, c, "req_3", {{life, 100}}, t0 + 600));
  REQUIRE(later);
  CHECK(later->granted);
  // The first request settles late, after its hold expired: it counts its usage and takes
  // nothing from the holds still in flight.
  auto late = run(io, settle_one(engine, c, r->ticket, {30}));
  REQUIRE(late);
  CHECK(late->first);
  auto used = run(io, used_of(engine, c, life, t0 + 700));
  REQUIRE(used);
  CHECK(*used == 30 + 100);
}

TEST_CASE("a sliding minute counts every 5 s bucket that overlaps it, whole") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto tpm = rule("tpm", budget_window::minute, 1000);
  // 800 tokens used at t0 + 12 s, in the bucket [t0 + 10 s, t0 + 15 s).
  auto r = run(io, reserve_one(engine, c, "req_1", {{tpm, 800}}, t0 + 12'000));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->ticket.counter_keys[0] == budget_engine::counter_key("ten_t", "tpm", t0 + 10'000));
  REQUIRE(run(io, settle_one(engine, c, r->ticket, {800})));
  // At t0 + 74.999 s the window [t0 + 14.999 s, now] still overlaps that bucket: all 800 count
  // (conservatively, although the request itself is more than a minute old by then), and the
  // refusal says when the bucket leaves the window.
  for (const std::int64_t at : {t0 + 70'000, t0 + 74'999}) {
    auto refused = run(io, reserve_one(engine, c, "req_2", {{tpm, 201}}, at));
    REQUIRE(refused);
    CHECK_FALSE(refused->granted);
    CHECK(refused->refused_remaining == 200);
    CHECK(refused->refused_reset_ms == t0 + 75'000 - at);
  }
  // From t0 + 75 s it does not overlap any more: the whole limit is free.
  auto fits = run(io, reserve_one(engine, c, "req_3", {{tpm, 1000}}, t0 + 75'000));
  REQUIRE(fits);
  CHECK(fits->granted);
  // A duration window of 90 s counts 8 s buckets the same way.
  const auto w90 = rule("w90", window_spec::duration_of(90'000), 100);
  auto a = run(io, reserve_one(engine, c, "req_4", {{w90, 100}}, t0 + 1'000));
  REQUIRE(a);
  REQUIRE(a->granted);
  CHECK(a->ticket.counter_keys[0] == budget_engine::counter_key("ten_t", "w90", t0));
  REQUIRE(run(io, settle_one(engine, c, a->ticket, {100})));
  auto b = run(io, reserve_one(engine, c, "req_5", {{w90, 1}}, t0 + 97'999));
  REQUIRE(b);
  CHECK_FALSE(b->granted);  // the bucket [t0, t0 + 8 s) overlaps [t0 + 7.999 s, now]
  CHECK(b->refused_reset_ms == 1);
  auto d = run(io, reserve_one(engine, c, "req_6", {{w90, 100}}, t0 + 98'000));
  REQUIRE(d);
  CHECK(d->granted);
}

TEST_CASE("randomized clock: no interval of a sliding window's length holds more than its limit") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  // Holds outlive the slowest settlement here: an expired hold is another matter (its limit is
  // documented), not what this test is about.
  budget_engine engine(std::chrono::hours(24));
  std::mt19937_64 rng(GENERATE(1, 2, 3));
  const std::int64_t length = GENERATE(60'000, 90'000, 1'000'000);
  const std::int64_t limit = 1000;
  INFO("window " << length << " ms");
  const auto sliding = rule("slide", window_spec::duration_of(length), limit);
  const auto roomy = rule("roomy", budget_window::day, 1'000'000'000);  // a second charge
  struct grant {
    std::int64_t at = 0;
    std::int64_t actual = 0;
  };
  struct in_flight {
    hold_ticket ticket;
    std::int64_t actual = 0;
    int settle_after = 0;  // iterations
  };
  std::vector<grant> grants;
  std::deque<in_flight> holding;
  std::int64_t now = t0 + 123;
  std::int64_t refused = 0;
  for (int i = 0; i < 2000; ++i) {
    // The clock moves by a random step: mostly small, sometimes several buckets at once.
    const int kind = std::uniform_int_distribution<int>(0, 19)(rng);
    now += kind == 0 ? std::uniform_int_distribution<std::int64_t>(0, length)(rng)
                     : std::uniform_int_distribution<std::int64_t>(0, length / 40)(rng);
    const std::int64_t amount = std::uniform_int_distribution<std::int64_t>(1, 250)(rng);
    auto r = run(io, reserve_one(engine, c, "req_" + std::to_string(i),
                                 {{sliding, amount}, {roomy, amount}}, now));
    REQUIRE(r);
    if (r->granted) {
      // The request uses anything up to what it held, settled a few steps later.
      const std::int64_t actual = std::uniform_int_distribution<std::int64_t>(0, amount)(rng);
      grants.push_back({now, actual});
      holding.push_back({r->ticket, actual, std::uniform_int_distribution<int>(0, 4)(rng)});
    } else {
      ++refused;
      CHECK(r->refused_index == 0);
      CHECK(r->refused_reset_ms > 0);
      CHECK(r->refused_reset_ms <= length + bucket_length_ms(length));
    }
    for (auto& h : holding) --h.settle_after;
    while (!holding.empty() && holding.front().settle_after < 0) {
      const std::int64_t actual = holding.front().actual;
      REQUIRE(run(io, settle_one(engine, c, holding.front().ticket, {actual, actual})));
      holding.pop_front();
    }
  }
  for (auto& h : holding) REQUIRE(run(io, settle_one(engine, c, h.ticket, {h.actual, h.actual})));
  // The interval of the window's length holding the most starts at a grant: check each.
  std::int64_t busiest = 0;
  std::size_t end = 0;
  std::int64_t sum = 0;
  for (std::size_t start = 0; start < grants.size(); ++start) {
    while (end < grants.size() && grants[end].at <= grants[start].at + length) {
      sum += grants[end++].actual;
    }
    busiest = std::max(busiest, sum);
    INFO("interval from " << grants[start].at - t0 << " ms holds " << sum);
    REQUIRE(sum <= limit);
    sum -= grants[start].actual;
  }
  // The test has teeth: the limit was reached, refusals happened, and much was granted.
  CHECK(refused > 100);
  CHECK(grants.size() > 300);
  CHECK(busiest > limit / 2);
}

TEST_CASE("soft limits never refuse, and report what is left (negative when over)") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto soft = rule("soft", budget_window::day, 100, /*hard=*/false);
  auto r = run(io, reserve_one(engine, c, "req_1", {{soft, 150}}, t0));
  REQUIRE(r);
  CHECK(r->granted);
  CHECK(r->remaining == std::vector<std::int64_t>{-50});
}

TEST_CASE("alert thresholds are crossed once per window, by the settlement that reaches them") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  auto soft = rule("alerts", budget_window::day, 100, /*hard=*/false);
  soft.alert_percents = {50, 80, 100};
  std::vector<std::pair<int, std::int64_t>> crossed;  // (percent, used)
  for (int i = 0; i < 15; ++i) {
    auto r = run(io, reserve_one(engine, c, "req_" + std::to_string(i), {{soft, 40}}, t0 + i));
    REQUIRE(r);
    REQUIRE(r->granted);
    auto s = run(io, settle_one(engine, c, r->ticket, {15}));
    REQUIRE(s);
    CHECK(s->first);
    for (const auto& x : s->crossings) {
      CHECK(x.charge == 0);
      crossed.emplace_back(x.percent, x.used);
    }
    // Settling again crosses nothing.
    auto again = run(io, settle_one(engine, c, r->ticket, {15}));
    REQUIRE(again);
    CHECK(again->crossings.empty());
  }
  // Usage goes 15, 30, 45, 60 (crosses 50), 75, 90 (crosses 80), 105 (crosses 100), 120, ...
  CHECK(crossed == std::vector<std::pair<int, std::int64_t>>{{50, 60}, {80, 90}, {100, 105}});
  // The next day is a new window instance: its thresholds are crossed again.
  auto r = run(io, reserve_one(engine, c, "req_next_day", {{soft, 1}}, t0 + 86'400'000));
  REQUIRE(r);
  auto s = run(io, settle_one(engine, c, r->ticket, {60}));
  REQUIRE(s);
  REQUIRE(s->crossings.size() == 1);
  CHECK(s->crossings[0].percent == 50);
}

namespace {

net::awaitable<reserve_result> reserve_for(budget_engine& engine, redis::client& c,
                                           std::string tenant, std::string request_id,
                                           std::vector<limit_charge> charges, std::int64_t now_ms) {
  co_return co_await engine.reserve(c, std::move(tenant), std::move(request_id),
                                    std::move(charges), now_ms, nullptr);
}

// Every tenant's reservations issued at once over several clients, then every granted hold
// settled at `actual`. Returns the number granted per tenant.
net::awaitable<std::vector<int>> reserve_and_settle_all(budget_engine& engine,
                                                        std::vector<redis::client*> clients,
                                                        std::vector<std::string> tenants,
                                                        int per_tenant, limit_charge charge,
                                                        std::int64_t actual, std::int64_t now_ms) {
  auto ex = co_await net::this_coro::executor;
  std::vector<std::future<reserve_result>> futures;
  for (std::size_t t = 0; t < tenants.size(); ++t) {
    for (int i = 0; i < per_tenant; ++i) {
      std::vector<limit_charge> charges{charge};
      futures.push_back(net::co_spawn(
          ex,
          reserve_for(engine, *clients[(t + static_cast<std::size_t>(i)) % clients.size()],
                      tenants[t], "req_" + std::to_string(i), std::move(charges), now_ms),
          net::use_future));
    }
  }
  net::steady_timer timer(ex);
  std::vector<int> granted(tenants.size(), 0);
  for (std::size_t n = 0; n < futures.size(); ++n) {
    while (futures[n].wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      timer.expires_after(std::chrono::milliseconds(1));
      co_await timer.async_wait(net::use_awaitable);
    }
    auto r = futures[n].get();
    if (!r || !r->granted) continue;
    ++granted[n / static_cast<std::size_t>(per_tenant)];
    std::vector<std::int64_t> used{actual};
    auto s = co_await engine.settle(*clients[0], r->ticket, std::move(used));
    if (!s || !s->first) granted[n / static_cast<std::size_t>(per_tenant)] = -1000;
  }
  co_return granted;
}

}  // namespace

TEST_CASE("on a three-master Redis Cluster, tenants on every node reserve and settle exactly") {
  redis_cluster cluster;
  net::io_context io;
  redis::settings cfg;
  cfg.port = static_cast<std::uint16_t>(cluster.ports[0]);
  cfg.cluster = true;
  cfg.command_timeout = std::chrono::milliseconds(2000);
  redis::client a(io.get_executor(), cfg);
  redis::client b(io.get_executor(), cfg);
  redis::client c(io.get_executor(), cfg);
  budget_engine engine(std::chrono::seconds(60));
  std::vector<std::string> tenants;
  for (int i = 0; i < 12; ++i) tenants.push_back("ten_cluster_" + std::to_string(i));
  const auto month = rule("month", budget_window::month, 1000);
  const auto granted =
      run(io, reserve_and_settle_all(engine, {&a, &b, &c}, tenants, 40, {month, 70}, 50, t0));
  for (std::size_t t = 0; t < tenants.size(); ++t) {
    CHECK(granted[t] == 1000 / 70);  // 14 holds of 70 fit in 1,000, never a 15th
    auto used = run(io, engine.used(a, tenants[t], month, t0));
    REQUIRE(used);
    CHECK(*used == 14 * 50);  // settled to actual usage; no hold left
  }
  // The tenants' keys are spread over the masters: each holds some.
  for (int port : cluster.ports) {
    redis::settings node;
    node.port = static_cast<std::uint16_t>(port);
    redis::client direct(io.get_executor(), node);
    std::vector<std::string> dbsize{"DBSIZE"};
    auto size = run(io, direct.command(std::move(dbsize)));
    REQUIRE(size);
    CHECK(size->integer > 0);
  }
}

namespace {

net::awaitable<redis::redis_result> raw(redis::client& c, std::vector<std::string> args) {
  co_return co_await c.command(std::move(args));
}

}  // namespace

TEST_CASE("every key a reservation creates expires; lifetime counters are renewed on use") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto day = rule("day", budget_window::day, 1000);
  const auto life = rule("life", budget_window::lifetime, 1000);
  auto r = run(io, reserve_one(engine, c, "req_a", {{day, 10}, {life, 10}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  const std::string day_key = r->ticket.counter_keys[0];
  const std::string life_key = r->ticket.counter_keys[1];
  auto ttl = [&](const std::string& key) { return run(io, raw(c, {"PTTL", key}))->integer; };
  const std::string record_a = budget_engine::request_record_key("ten_t", "req_a");
  for (const auto& k : {day_key, life_key, record_a}) {
    INFO(k);
    CHECK(ttl(k) > 0);
  }
  // The record lives until a minute past its hold's expiry (hold_ttl rounded up to an eighth).
  CHECK(ttl(record_a) <= 60'000 + 7'500 + 60'000);
  // A day counter's expiry is its window's end plus the grace period: it does not move.
  const auto day_ttl = ttl(day_key);
  REQUIRE(run(io, raw(c, {"PEXPIRE", life_key, "5000"}))->integer == 1);
  auto second = run(io, reserve_one(engine, c, "req_b", {{day, 10}, {life, 10}}, t0 + 1000));
  REQUIRE(second);
  REQUIRE(second->granted);
  CHECK(ttl(day_key) <= day_ttl);
  CHECK(ttl(life_key) > 5000);  // renewed
  REQUIRE(run(io, settle_one(engine, c, r->ticket, {5, 5})));
  REQUIRE(run(io, settle_one(engine, c, second->ticket, {5, 5})));
  CHECK(run(io, raw(c, {"GET", record_a}))->str == "s");  // the record now says "settled"
  CHECK(ttl(record_a) > 0);  // for hold_ttl, against a repeated settlement
  CHECK(ttl(record_a) <= 60'000);
  auto third = run(io, reserve_one(engine, c, "req_c", {{day, 10}}, t0 + 2000));
  REQUIRE(third);
  REQUIRE(third->granted);
  auto used = run(io, used_of(engine, c, day, t0 + 3000));
  REQUIRE(used);
  CHECK(*used == 5 + 5 + 10);  // two settled at 5, one held at 10

  // A counter holding nothing but expired holds is deleted when a reserve drops them; the hold
  // that reserve takes creates it again, with its expiry.
  const auto other = rule("other", budget_window::day, 1000);
  REQUIRE(run(io, reserve_one(engine, c, "req_dies", {{other, 10}}, t0)));
  auto revived = run(io, reserve_one(engine, c, "req_d", {{other, 10}}, t0 + 120'000));
  REQUIRE(revived);
  REQUIRE(revived->granted);
  CHECK(ttl(revived->ticket.counter_keys[0]) > 0);
  auto other_used = run(io, used_of(engine, c, other, t0 + 120'001));
  REQUIRE(other_used);
  CHECK(*other_used == 10);
}

TEST_CASE("fields the scripts do not know are ignored, such as an earlier layout's `held`") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto day = rule("legacy", budget_window::day, 1000);
  const std::string key = budget_engine::counter_key("ten_t", "legacy", day.start_at(t0));
  REQUIRE(run(io, raw(c, {"HSET", key, "used", "100", "held", "500", "hx", "7", "note", "1"})));
  auto r = run(io, reserve_one(engine, c, "req_a", {{day, 10}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->remaining == std::vector<std::int64_t>{890});
  auto used = run(io, used_of(engine, c, day, t0 + 1));
  REQUIRE(used);
  CHECK(*used == 110);
  REQUIRE(run(io, settle_one(engine, c, r->ticket, {4})));
  used = run(io, used_of(engine, c, day, t0 + 2));
  REQUIRE(used);
  CHECK(*used == 104);
}

TEST_CASE("amounts of 16 digits are held and settled exactly") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  // Spend in micro-units: 9,000,000,000 in money units is 9e15 micro-units, still exact in
  // the scripts' doubles (below 2^53).
  const auto spend = rule("spend", budget_window::lifetime, 9'000'000'000'000'000);
  auto r = run(io, reserve_one(engine, c, "req_big", {{spend, 3'000'000'000'000'001}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->remaining == std::vector<std::int64_t>{5'999'999'999'999'999});
  auto s = run(io, settle_one(engine, c, r->ticket, {2'000'000'000'000'003}));
  REQUIRE(s);
  CHECK(s->first);
  auto used = run(io, used_of(engine, c, spend, t0 + 1));
  REQUIRE(used);
  CHECK(*used == 2'000'000'000'000'003);
}

namespace {
net::awaitable<basic_result<std::int64_t, redis::redis_error>> adjust(
    budget_engine& engine, redis::client& c, std::vector<std::string> keys,
    std::vector<std::int64_t> deltas) {
  co_return co_await engine.adjust_used(c, std::move(keys), std::move(deltas));
}
}  // namespace

TEST_CASE("the scripts refuse negative or oversized amounts and change nothing") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto day = rule("day", budget_window::day, 1000);
  for (const std::int64_t bad : {std::int64_t{-1}, std::int64_t{-5000}, INT64_MAX,
                                 (std::int64_t{1} << 53)}) {
    auto r = run(io, reserve_one(engine, c, "req_bad", {{day, bad}}, t0));
    CHECK_FALSE(r);  // a script error, not a grant
  }
  auto used = run(io, used_of(engine, c, day, t0 + 1));
  REQUIRE(used);
  CHECK(*used == 0);
  // A settlement with a negative actual is refused before it writes anything.
  auto r = run(io, reserve_one(engine, c, "req_ok", {{day, 300}}, t0 + 2));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK_FALSE(run(io, settle_one(engine, c, r->ticket, {-100})));
  auto held = run(io, used_of(engine, c, day, t0 + 3));
  REQUIRE(held);
  CHECK(*held == 300);  // still held, nothing settled
  auto s = run(io, settle_one(engine, c, r->ticket, {120}));
  REQUIRE(s);
  CHECK(s->first);
  auto after = run(io, used_of(engine, c, day, t0 + 4));
  REQUIRE(after);
  CHECK(*after == 120);  // the hold released by number, the actual counted
  // The largest amount Redis's numbers hold exactly is taken.
  const auto huge = rule("huge", budget_window::day, INT64_MAX);
  auto max = run(io, reserve_one(engine, c, "req_max", {{huge, (std::int64_t{1} << 53) - 1}}, t0 + 5));
  REQUIRE(max);
  CHECK(max->granted);
}

TEST_CASE("spend corrections adjust existing counters only, by either sign") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto month = rule("spend", budget_window::month, 100'000);
  auto r = run(io, reserve_one(engine, c, "req_s", {{month, 900}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  REQUIRE(run(io, settle_one(engine, c, r->ticket, {900})));
  const std::string key = r->ticket.counter_keys.at(0);
  const std::string gone = budget_engine::counter_key("ten_t", "spend", 12345);
  auto n = run(io, adjust(engine, c, {key, gone}, {-350, 40}));
  REQUIRE(n);
  CHECK(*n == 1);  // the expired (absent) counter is not created again
  auto used = run(io, used_of(engine, c, month, t0 + 1));
  REQUIRE(used);
  CHECK(*used == 550);
  CHECK(run(io, adjust(engine, c, {key}, {25})));
  CHECK(*run(io, used_of(engine, c, month, t0 + 2)) == 575);
}

TEST_CASE("a sliding window's alert fires once while the bucket that fired is in the window") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  auto tpm = rule("alerts", budget_window::minute, 100, /*hard=*/false);
  tpm.alert_percents = {50};
  const auto settle_at = [&](std::string id, std::int64_t at, std::int64_t used) {
    auto r = run(io, reserve_one(engine, c, std::move(id), {{tpm, 1}}, at));
    REQUIRE(r);
    REQUIRE(r->granted);
    auto s = run(io, settle_one(engine, c, r->ticket, {used}));
    REQUIRE(s);
    return s->crossings;
  };
  // 30 then 30 more in a later bucket: the window's settled usage, 60, crosses 50 %.
  CHECK(settle_at("r1", t0, 30).empty());
  const auto crossed = settle_at("r2", t0 + 20'000, 30);
  REQUIRE(crossed.size() == 1);
  CHECK(crossed[0].percent == 50);
  CHECK(crossed[0].used == 60);
  // Still 50 % and more while the bucket holding the marker is in the window: no repeat.
  CHECK(settle_at("r3", t0 + 40'000, 30).empty());
  CHECK(settle_at("r4", t0 + 84'999, 30).empty());  // [t0 + 24.999 s, now] holds t0 + 20 s
  // Once it has left, usage that reaches 50 % again fires again.
  const auto again = settle_at("r5", t0 + 85'000, 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].used == 30 + 30 + 1);  // the buckets of t0 + 40 s, t0 + 80 s and t0 + 85 s
}

TEST_CASE("usage reads what each window counts, settled and held, and when it frees budget") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  const auto tpm = rule("tpm", budget_window::minute, 1000);
  const auto week = rule("week", budget_window::week, 1000);
  const auto life = rule("life", budget_window::lifetime, 1000);
  auto a = run(io, reserve_one(engine, c, "req_a", {{tpm, 100}, {week, 100}, {life, 100}}, t0));
  REQUIRE(a);
  REQUIRE(a->granted);
  REQUIRE(run(io, settle_one(engine, c, a->ticket, {40, 40, 40})));
  auto b =
      run(io, reserve_one(engine, c, "req_b", {{tpm, 70}, {week, 70}, {life, 70}}, t0 + 30'000));
  REQUIRE(b);
  REQUIRE(b->granted);
  auto u = run(io, engine.usage(c, "ten_t", std::vector<limit_rule>{tpm, week, life}, t0 + 31'000));
  REQUIRE(u);
  REQUIRE(u->size() == 3);
  for (const auto& x : *u) {
    CHECK(x.used == 40);
    CHECK(x.held == 70);
  }
  CHECK((*u)[0].reopens_at_ms == t0 + 5'000 + 60'000);  // the oldest bucket with usage leaves
  CHECK((*u)[1].reopens_at_ms == window_end_ms(budget_window::week, t0));
  CHECK((*u)[2].reopens_at_ms == 0);
  // Past the minute only the hold's bucket counts in the sliding window.
  auto later = run(io, engine.usage(c, "ten_t", std::vector<limit_rule>{tpm}, t0 + 65'000));
  REQUIRE(later);
  CHECK((*later)[0].used == 0);
  CHECK((*later)[0].held == 70);
  CHECK((*later)[0].reopens_at_ms == t0 + 35'000 + 60'000);
  // Nothing counted: the oldest counted bucket.
  auto empty = run(
      io, engine.usage(c, "ten_t", std::vector<limit_rule>{rule("none", budget_window::minute, 5)},
                       t0 + 1));
  REQUIRE(empty);
  CHECK((*empty)[0].used == 0);
  CHECK((*empty)[0].reopens_at_ms == t0 - 60'000 + 5'000 + 60'000);
  CHECK(run(io, engine.usage(c, "ten_t", std::vector<limit_rule>{}, t0))->empty());
}
