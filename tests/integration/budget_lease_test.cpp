// Integration tests of budget leases against a real redis-server: the acquire script's slices
// follow the slice rule (lease.hpp) and shrink to per-request holds near the limit; several
// simulated gateways serving from leases never overspend a hard limit, and their flushes leave
// the counter equal to what their requests counted, with nothing held; under a randomized
// clock no interval of a sliding window's length counts more than the limit (every grant's
// time recorded), also when leases are renewed ahead of need; a lease taken ahead of need is a
// slice far from the limit and nothing near it (no hold, no recall); a refusal recalls the other
// gateways' leases; leases and per-request holds of the reserve script share a budget.
#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/lease_engine.hpp"
#include "tests/integration/redis_fixture.hpp"

namespace net = boost::asio;
using namespace tollgate;
using namespace tollgate::metering;
using namespace tollgate::test;

namespace {

const std::int64_t t0 = 1795345200000;  // 2026-11-22 11:00:00 UTC
const std::string tenant = "ten_l";

limit_rule rule_of(std::string id, window_spec w, std::int64_t limit) {
  limit_rule r;
  r.id = std::move(id);
  r.window = w;
  r.limit = limit;
  return r;
}

net::awaitable<basic_result<lease_acquisition, redis::redis_error>> acquire_one(
    lease_engine& e, redis::client& c, std::vector<lease_request> reqs, std::int64_t now) {
  co_return co_await e.acquire(c, tenant, std::move(reqs), now);
}

net::awaitable<basic_result<lease_flush_answer, redis::redis_error>> flush_some(
    lease_engine& e, redis::client& c, std::uint64_t sequence,
    std::vector<lease_flush_entry> entries, std::int64_t now) {
  co_return co_await e.flush(c, tenant, sequence, std::move(entries), now);
}

net::awaitable<redis::redis_result> raw(redis::client& c, std::vector<std::string> args) {
  co_return co_await c.command(std::move(args));
}

net::awaitable<basic_result<std::vector<window_usage>, redis::redis_error>> usage_of(
    budget_engine& e, redis::client& c, std::vector<limit_rule> rules, std::int64_t now) {
  co_return co_await e.usage(c, tenant, std::move(rules), now);
}

net::awaitable<basic_result<reservation, redis::redis_error>> reserve_one(
    budget_engine& e, redis::client& c, std::vector<limit_charge> charges, std::int64_t now) {
  co_return co_await e.reserve(c, tenant, "req_1", std::move(charges), now, nullptr);
}

// A gateway as gateway/budget_leases runs one, without threads: the open lease per counter,
// every live lease, takes, new leases in one script call, flushes and (with `renew_ahead`) the
// renewal of open leases ahead of need, right after the take that finds one due.
struct sim_gateway {
  sim_gateway(net::io_context& io, redis::client& c, std::string id, std::int64_t lease_ms,
              bool renew_ahead = false)
      : io(io), redis(c),
        engine(std::chrono::hours(24), std::chrono::milliseconds(lease_ms), 8, std::move(id)),
        lease_ms(lease_ms), renew_ahead(renew_ahead) {}
  net::io_context& io;
  redis::client& redis;
  lease_engine engine;
  std::int64_t lease_ms;
  bool renew_ahead;
  std::map<std::string, std::shared_ptr<budget_lease>> open;
  std::vector<std::shared_ptr<budget_lease>> live;
  int exact = 0;
  int leased = 0;
  int renewed = 0;
  std::uint64_t sequence = 0;  // the last flush batch's number

  void renew(const std::vector<limit_charge>& charges, std::int64_t now) {
    std::vector<lease_request> reqs;
    for (const auto& c : charges) {
      auto it = open.find(c.rule.id);
      if (it == open.end()) continue;
      const auto& l = *it->second;
      if (lease_renewal_due(l.grant(), l.unused(), now, lease_ms / lease_renew_ahead_divisor,
                            engine.serve_until_ms(c.rule, now))) {
        reqs.push_back({c, false, true});
      }
    }
    if (reqs.empty()) return;
    auto r = run(io, acquire_one(engine, redis, reqs, now));
    REQUIRE(r);
    REQUIRE(r->granted);  // taken ahead of need: never a refusal
    for (std::size_t j = 0; j < reqs.size(); ++j) {
      if (r->grants[j].slice == 0) continue;
      REQUIRE(r->grants[j].slice > reqs[j].charge.amount);
      auto l = std::make_shared<budget_lease>(r->grants[j]);
      live.push_back(l);
      open[reqs[j].charge.rule.id]->close();
      open[reqs[j].charge.rule.id] = l;
      ++renewed;
    }
  }

  // The leases serving the charges, or empty when a hard limit refuses.
  std::vector<std::shared_ptr<budget_lease>> serve(const std::vector<limit_charge>& charges,
                                                   std::int64_t now) {
    std::vector<std::shared_ptr<budget_lease>> got(charges.size());
    std::vector<std::size_t> missing;
    std::vector<limit_charge> from_open;  // only those can be due for renewal
    for (std::size_t i = 0; i < charges.size(); ++i) {
      auto it = open.find(charges[i].rule.id);
      if (it != open.end() && it->second->take(charges[i].amount, now)) {
        got[i] = it->second;
        from_open.push_back(charges[i]);
      } else {
        missing.push_back(i);
      }
    }
    if (!missing.empty()) {
      std::vector<lease_request> reqs;
      for (auto i : missing) reqs.push_back({charges[i], false});
      auto r = run(io, acquire_one(engine, redis, reqs, now));
      REQUIRE(r);
      if (!r->granted) {
        for (std::size_t i = 0; i < got.size(); ++i) {
          if (got[i]) got[i]->give_back(charges[i].amount);
        }
        return {};
      }
      for (std::size_t j = 0; j < missing.size(); ++j) {
        const std::size_t i = missing[j];
        auto l = std::make_shared<budget_lease>(r->grants[j]);
        REQUIRE(l->take(charges[i].amount, now));
        live.push_back(l);
        if (l->grant().slice <= charges[i].amount) {
          l->close();
          ++exact;
        } else {
          if (open[charges[i].rule.id]) open[charges[i].rule.id]->close();
          open[charges[i].rule.id] = l;
          ++leased;
        }
        got[i] = l;
      }
    }
    if (renew_ahead) renew(from_open, now);
    return got;
  }

  // Flushes every live lease, and again at once if Redis recalled one (as the gateway does).
  void flush(std::int64_t now, bool closing = false) {
    while (flush_once(now, closing)) {
    }
  }
  bool flush_once(std::int64_t now, bool closing) {
    std::vector<lease_flush_entry> entries;
    for (auto& l : live) {
      if (closing || now >= l->grant().serve_until_ms) l->close();
      const auto p = l->take_flush();
      const auto& g = l->grant();
      entries.push_back({g.counter_key, g.hold_field, g.hold_expiry_ms, g.counter_ttl_ms,
                         p.settled, p.returned});
    }
    if (entries.empty()) return false;  // the gateway sends no empty batch
    auto r = run(io, flush_some(engine, redis, ++sequence, entries, now));
    REQUIRE(r);
    REQUIRE(r->applied);
    REQUIRE(r->recalls.size() == live.size());
    bool recalled = false;
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (r->recalls[i] > live[i]->grant().recall_seen && !live[i]->closed()) {
        live[i]->close();
        recalled = true;
      }
    }
    std::erase_if(open, [](const auto& e) { return e.second->closed(); });
    std::erase_if(live, [](const auto& l) { return l->done(); });
    return recalled;
  }
};

struct in_flight {
  std::vector<std::shared_ptr<budget_lease>> leases;
  std::vector<std::int64_t> worst;
  std::int64_t actual = 0;
  int finish_after = 0;
};

}  // namespace

TEST_CASE("the acquire script's slices follow the slice rule, per gateway sharing a counter") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const auto month = rule_of("month", budget_window::month, 1'000'000);
  lease_engine a(std::chrono::minutes(11), std::chrono::seconds(10), 8, "gw_a");
  lease_engine b(std::chrono::minutes(11), std::chrono::seconds(10), 8, "gw_b");
  auto r = run(io, acquire_one(a, c, {{{month, 100}, false}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->grants[0].slice == lease_slice(1'000'000, 100, 1, 8));  // 125,000
  CHECK(r->grants[0].remaining_after == 1'000'000 - 125'000);
  CHECK(r->grants[0].serve_until_ms == t0 + 10'000);
  // A second gateway on the same counter: two share it, so the slice is a sixteenth of what
  // is left.
  r = run(io, acquire_one(b, c, {{{month, 100}, false}}, t0 + 1));
  REQUIRE(r);
  CHECK(r->grants[0].slice == lease_slice(875'000, 100, 2, 8));
  // An exact request holds its amount only.
  r = run(io, acquire_one(a, c, {{{month, 100}, true}}, t0 + 2));
  REQUIRE(r);
  CHECK(r->grants[0].slice == 100);
  // A sliding minute's lease serves only within its 5 s bucket.
  const auto rpm = rule_of("rpm", budget_window::minute, 1'000);
  r = run(io, acquire_one(a, c, {{{rpm, 1}, false}}, t0 + 3'000));
  REQUIRE(r);
  CHECK(r->grants[0].serve_until_ms == t0 + 5'000);
}

TEST_CASE("gateways serving from leases never overspend; flushed, the counter is exact") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const std::int64_t limit = 50'000;
  const auto month = rule_of("month", budget_window::month, limit);
  const auto roomy = rule_of("rpd", budget_window::day, 1'000'000'000);
  const bool renew_ahead = GENERATE(false, true);
  INFO("renewed ahead of need: " << renew_ahead);
  std::vector<std::unique_ptr<sim_gateway>> gws;
  for (int g = 0; g < 3; ++g) {
    gws.push_back(
        std::make_unique<sim_gateway>(io, c, "gw_" + std::to_string(g), 10'000, renew_ahead));
  }
  std::mt19937_64 rng(11);
  std::deque<in_flight> flying;
  std::int64_t counted = 0;
  std::int64_t worst_granted_in_flight_max = 0;
  int refused = 0;
  std::int64_t now = t0;
  for (int i = 0; i < 3'000; ++i) {
    now += 3;
    auto& gw = *gws[static_cast<std::size_t>(i) % gws.size()];
    const std::int64_t worst = std::uniform_int_distribution<std::int64_t>(1, 120)(rng);
    auto leases = gw.serve({{month, worst}, {roomy, 1}}, now);
    if (leases.empty()) {
      ++refused;
    } else {
      const std::int64_t actual = std::uniform_int_distribution<std::int64_t>(0, worst)(rng);
      flying.push_back({leases, {worst, 1}, actual, std::uniform_int_distribution<int>(0, 6)(rng)});
    }
    for (auto& f : flying) --f.finish_after;
    while (!flying.empty() && flying.front().finish_after < 0) {
      auto& f = flying.front();
      f.leases[0]->finish(f.worst[0], f.actual);
      f.leases[1]->finish(1, 1);
      counted += f.actual;
      flying.pop_front();
    }
    std::int64_t flying_worst = 0;
    for (const auto& f : flying) flying_worst += f.worst[0];
    worst_granted_in_flight_max = std::max(worst_granted_in_flight_max, flying_worst);
    // Whatever is in flight can still use its worst case: with it, never over the limit.
    REQUIRE(counted + flying_worst <= limit);
    if (i % 7 == 0) gws[static_cast<std::size_t>(i / 7) % gws.size()]->flush(now);
  }
  for (auto& f : flying) {
    f.leases[0]->finish(f.worst[0], f.actual);
    f.leases[1]->finish(1, 1);
    counted += f.actual;
  }
  for (auto& gw : gws) gw->flush(now, true);
  for (auto& gw : gws) CHECK(gw->live.empty());
  budget_engine engine(std::chrono::hours(24));
  auto u = run(io, usage_of(engine, c, {month}, now));
  REQUIRE(u);
  CHECK(u->at(0).used == counted);  // the counter equals what the requests counted
  CHECK(u->at(0).held == 0);        // and every lease gave its unused part back
  // It had teeth: the limit was reached and refused, and leases shrank to per-request holds.
  CHECK(refused > 100);
  CHECK(counted > limit / 3);
  int exact = 0;
  int leased = 0;
  for (auto& gw : gws) {
    exact += gw->exact;
    leased += gw->leased;
  }
  CHECK(leased >= 3);
  CHECK(exact > 40);
  int renewed = 0;
  for (auto& gw : gws) renewed += gw->renewed;
  if (renew_ahead) CHECK(renewed > 0);
}

TEST_CASE("leases under a randomized clock: no interval of a sliding window counts more than "
          "its limit") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  std::mt19937_64 rng(GENERATE(1, 2, 3));
  const std::int64_t length = GENERATE(60'000, 90'000, 1'000'000);
  const std::int64_t limit = 2'000;
  INFO("window " << length << " ms");
  const auto sliding = rule_of("slide", window_spec::duration_of(length), limit);
  const auto roomy = rule_of("roomy", budget_window::day, 1'000'000'000);
  const bool renew_ahead = GENERATE(false, true);
  INFO("renewed ahead of need: " << renew_ahead);
  std::vector<std::unique_ptr<sim_gateway>> gws;
  for (int g = 0; g < 3; ++g) {
    gws.push_back(
        std::make_unique<sim_gateway>(io, c, "gw_" + std::to_string(g), 10'000, renew_ahead));
  }
  struct grant {
    std::int64_t at = 0;
    std::int64_t actual = 0;
  };
  std::vector<grant> grants;
  std::deque<in_flight> flying;
  std::int64_t now = t0 + 123;
  int refused = 0;
  for (int i = 0; i < 3'000; ++i) {
    const int kind = std::uniform_int_distribution<int>(0, 39)(rng);
    now += kind == 0 ? std::uniform_int_distribution<std::int64_t>(0, length)(rng)
                     : std::uniform_int_distribution<std::int64_t>(0, length / 80)(rng);
    const std::int64_t worst = std::uniform_int_distribution<std::int64_t>(1, 60)(rng);
    auto& gw = *gws[std::uniform_int_distribution<std::size_t>(0, gws.size() - 1)(rng)];
    auto leases = gw.serve({{sliding, worst}, {roomy, worst}}, now);
    if (leases.empty()) {
      ++refused;
    } else {
      const std::int64_t actual = std::uniform_int_distribution<std::int64_t>(0, worst)(rng);
      grants.push_back({now, actual});
      flying.push_back({leases, {worst, worst}, actual,
                        std::uniform_int_distribution<int>(0, 5)(rng)});
    }
    for (auto& f : flying) --f.finish_after;
    while (!flying.empty() && flying.front().finish_after < 0) {
      auto& f = flying.front();
      for (std::size_t k = 0; k < 2; ++k) f.leases[k]->finish(f.worst[k], f.actual);
      flying.pop_front();
    }
    if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
      gws[std::uniform_int_distribution<std::size_t>(0, gws.size() - 1)(rng)]->flush(now);
    }
  }
  // Every interval of the window's length, from each grant: what its grants count.
  std::int64_t busiest = 0;
  std::size_t end = 0;
  std::int64_t sum = 0;
  for (std::size_t start = 0; start < grants.size(); ++start) {
    while (end < grants.size() && grants[end].at <= grants[start].at + length) {
      sum += grants[end++].actual;
    }
    busiest = std::max(busiest, sum);
    INFO("interval from " << grants[start].at - t0 << " ms counts " << sum);
    REQUIRE(sum <= limit);
    sum -= grants[start].actual;
  }
  CHECK(refused > 40);
  CHECK(grants.size() > 500);
  CHECK(busiest > limit / 2);
  int renewed = 0;
  for (auto& gw : gws) renewed += gw->renewed;
  if (renew_ahead) CHECK(renewed > 0);
}

TEST_CASE("a lease taken ahead of need: a slice far from the limit, nothing near it") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const auto day = rule_of("day", budget_window::day, 16'000);
  lease_engine a(std::chrono::minutes(11), std::chrono::seconds(10), 8, "gw_a");
  lease_engine b(std::chrono::minutes(11), std::chrono::seconds(10), 8, "gw_b");
  budget_engine usage(std::chrono::hours(24));
  // Far from the limit: a slice by the slice rule, as a lease taken for a request.
  auto r = run(io, acquire_one(a, c, {{{day, 10}, false, true}}, t0));
  REQUIRE(r);
  REQUIRE(r->granted);
  CHECK(r->grants[0].slice == 2'000);
  CHECK(r->grants[0].serve_until_ms == t0 + 10'000);
  CHECK(r->grants[0].asked == 10);
  // B takes a slice too (two share the counter now: 14,000 / 16 = 875).
  r = run(io, acquire_one(b, c, {{{day, 10}, false}}, t0 + 1));
  REQUIRE(r);
  CHECK(r->grants[0].slice == 875);
  const std::int64_t b_recall = r->grants[0].recall_seen;
  // Near the limit for its amount (13,125 / 16 = 820, not above 900), or over what is left:
  // nothing held and nothing recalled, where a request's acquire would hold exactly its amount
  // and recall B's lease.
  for (const std::int64_t amount : {900, 20'000}) {
    r = run(io, acquire_one(a, c, {{{day, amount}, false, true}}, t0 + 2));
    REQUIRE(r);
    REQUIRE(r->granted);
    CHECK(r->grants[0].slice == 0);
  }
  auto u = run(io, usage_of(usage, c, {day}, t0 + 3));
  REQUIRE(u);
  CHECK(u->at(0).held == 2'000 + 875);
  r = run(io, acquire_one(b, c, {{{day, 1}, false}}, t0 + 4));
  REQUIRE(r);
  CHECK(r->grants[0].recall_seen == b_recall);  // no recall was raised
  // The same amount for a request: one-request lease and a recall.
  r = run(io, acquire_one(a, c, {{{day, 900}, false}}, t0 + 5));
  REQUIRE(r);
  CHECK(r->grants[0].slice == 900);
  CHECK(r->grants[0].recall_seen > b_recall);
}

TEST_CASE("a refusal recalls the other gateways' leases; their flush gives them back") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const auto day = rule_of("day", budget_window::day, 16'000);
  sim_gateway a(io, c, "gw_a", 60'000);
  sim_gateway b(io, c, "gw_b", 60'000);
  // A leases first: alone, an eighth of what is left (2,000).
  auto la = a.serve({{day, 10}}, t0);
  REQUIRE(la.size() == 1);
  CHECK(la[0]->grant().slice == 2'000);
  // B asks for more than the 14,000 left: refused, and A's lease is recalled.
  CHECK(b.serve({{day, 15'000}}, t0 + 1).empty());
  la[0]->finish(10, 10);
  a.flush(t0 + 2);
  CHECK(la[0]->closed());
  CHECK(a.live.empty());  // everything unused went back at the flush
  budget_engine engine(std::chrono::hours(24));
  auto u = run(io, usage_of(engine, c, {day}, t0 + 3));
  REQUIRE(u);
  CHECK(u->at(0).used == 10);
  CHECK(u->at(0).held == 0);
  // Now B's request fits what is left.
  CHECK(b.serve({{day, 15'990}}, t0 + 4).size() == 1);
}

TEST_CASE("leases and the reserve script's per-request holds share one budget") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const auto day = rule_of("day", budget_window::day, 8'000);
  sim_gateway a(io, c, "gw_a", 60'000);
  auto la = a.serve({{day, 10}}, t0);
  REQUIRE(la.size() == 1);
  CHECK(la[0]->grant().slice == 1'000);
  // The reserve script sees the lease as held: 7,000 left, not 8,000.
  budget_engine engine(std::chrono::hours(24));
  auto r = run(io, reserve_one(engine, c, {{day, 7'001}}, t0 + 1));
  REQUIRE(r);
  CHECK_FALSE(r->granted);
  CHECK(r->refused_remaining == 7'000);
}

TEST_CASE("a flush batch sent again after a lost answer is applied once; later batches apply") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  const auto day = rule_of("day", budget_window::day, 16'000);
  sim_gateway a(io, c, "gw_a", 60'000);
  // Two requests: one finishes (10 of its 30), one stays in flight (30 held for it).
  auto la = a.serve({{day, 30}}, t0);
  REQUIRE(la.size() == 1);
  REQUIRE(la[0]->grant().slice == 2'000);
  REQUIRE(a.serve({{day, 30}}, t0).size() == 1);
  la[0]->finish(30, 10);
  auto entry_of = [&](const budget_lease::flush_part& p) {
    const auto& g = la[0]->grant();
    return std::vector<lease_flush_entry>{
        {g.counter_key, g.hold_field, g.hold_expiry_ms, g.counter_ttl_ms, p.settled, p.returned}};
  };
  budget_engine engine(std::chrono::hours(24));
  using counts = std::pair<std::int64_t, std::int64_t>;  // used, held
  auto counted = [&](std::int64_t now) {
    auto u = run(io, usage_of(engine, c, {day}, now));
    REQUIRE(u);
    return counts{u->at(0).used, u->at(0).held};
  };
  // Batch 1: the 10 settled. Sent twice (its first answer lost): applied once.
  const auto settled = entry_of(la[0]->take_flush());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = run(io, flush_some(a.engine, c, 1, settled, t0 + 1));
    REQUIRE(r);
    CHECK(r->applied == (attempt == 0));
    CHECK(r->recalls == std::vector<std::int64_t>{0});
    CHECK(counted(t0 + 2) == counts{10, 1'990});
  }
  // Batch 2, the closed lease's unused part: applied once however often it is sent, so the
  // request still in flight keeps its 30 held (a second release would take them).
  la[0]->close();
  const auto returned = entry_of(la[0]->take_flush());
  REQUIRE(returned[0].returned == 1'960);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = run(io, flush_some(a.engine, c, 2, returned, t0 + 3));
    REQUIRE(r);
    CHECK(r->applied == (attempt == 0));
    CHECK(counted(t0 + 4) == counts{10, 30});
  }
  // An older batch arriving late is not applied either.
  auto late = run(io, flush_some(a.engine, c, 1, settled, t0 + 5));
  REQUIRE(late);
  CHECK_FALSE(late->applied);
  CHECK(counted(t0 + 6) == counts{10, 30});
  // The number is kept per gateway and tenant, at least a minute past the hold it released.
  auto ttl = run(io, raw(c, {"PTTL", a.engine.flush_sequence_key(tenant)}));
  REQUIRE(ttl);
  CHECK(ttl->integer > 60'000);
  auto last = run(io, raw(c, {"GET", a.engine.flush_sequence_key(tenant)}));
  REQUIRE(last);
  CHECK(last->str == "2");
  // The request in flight finishes (20 of 30); batch 3 settles it and returns the rest.
  la[0]->finish(30, 20);
  auto r3 = run(io, flush_some(a.engine, c, 3, entry_of(la[0]->take_flush()), t0 + 7));
  REQUIRE(r3);
  CHECK(r3->applied);
  CHECK(counted(t0 + 8) == counts{30, 0});
  // Another gateway's batches are numbered on their own: its first batch (number 1) applies.
  sim_gateway b(io, c, "gw_b", 60'000);
  auto lb = b.serve({{day, 30}}, t0 + 9);
  REQUIRE(lb.size() == 1);
  lb[0]->finish(30, 5);
  b.flush(t0 + 10, true);
  CHECK(counted(t0 + 11) == counts{35, 0});
}
