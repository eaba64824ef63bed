// Integration tests of bundle coverage in the reserve script (metering/budgets/cover.hpp)
// against a real redis-server: the script's exact big-number cost in Lua equals its C++ twin on
// random and extreme tokens and rates; concurrent covered holds never take more from a pool
// than its limit, and the money they hold is the cost of what the pools did not cover;
// settling counts the covered tokens used and releases the rest; a refusal holds nothing.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <future>
#include <random>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/cover.hpp"
#include "metering/worst_case.hpp"
#include "tests/integration/redis_fixture.hpp"

namespace net = boost::asio;
using namespace tollgate;
using namespace tollgate::metering;
using namespace tollgate::test;

namespace {

using reserve_result = basic_result<reservation, redis::redis_error>;

limit_rule credit_rule(std::int64_t limit) {
  limit_rule r;
  r.id = "credit:ten_c";
  r.window = budget_window::lifetime;
  r.limit = limit;
  return r;
}

cover_ask ask_of(std::int64_t prompt, std::int64_t completion, std::int64_t pool_in,
                 std::int64_t pool_out, const credit_rate& rate) {
  cover_ask a;
  a.charge = 0;
  a.pool_ids = {cover_pool_id("dev-echo", false), cover_pool_id("dev-echo", true)};
  a.limits = {pool_in, pool_out};
  a.asked = {prompt, completion};
  a.rate = rate;
  return a;
}

// The cover_ask lives in this frame while the reservation runs.
net::awaitable<reserve_result> covered_reserve(budget_engine& engine, redis::client& c,
                                               std::string request_id, std::int64_t credit,
                                               cover_ask ask, std::int64_t now_ms) {
  std::vector<limit_charge> charges{{credit_rule(credit), 0}};
  co_return co_await engine.reserve(c, "ten_c", std::move(request_id), std::move(charges), now_ms,
                                    &ask);
}

net::awaitable<basic_result<settlement, redis::redis_error>> settle_hold(
    budget_engine& engine, redis::client& c, hold_ticket ticket, std::vector<std::int64_t> actual) {
  co_return co_await engine.settle(c, std::move(ticket), std::move(actual));
}

net::awaitable<basic_result<std::int64_t, redis::redis_error>> pool_used(budget_engine& engine,
                                                                         redis::client& c,
                                                                         bool output) {
  limit_rule r;
  r.id = cover_pool_id("dev-echo", output);
  r.window = budget_window::lifetime;
  co_return co_await engine.used(c, "ten_c", std::move(r), 0);
}

const std::int64_t t0 = 1795345200000;

}  // namespace

TEST_CASE("cover: the script's credit amount equals uncovered_cost_micros, to the micro-unit") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  std::mt19937_64 rng(24);
  const std::int64_t big_rates[] = {0,
                                    1,
                                    999'999,
                                    1'000'000,
                                    2'500'000'000'000,
                                    30'000'000'000'000,
                                    999'999'999'999'999'999,
                                    9'223'372'036'854'775'807};
  const std::int64_t big_tokens[] = {
      0, 1, 999'999, 1'000'000, 128'000, 1'000'000'000'000, reservation_amount_max};
  for (int i = 0; i < 400; ++i) {
    credit_rate rate;
    rate.model = "dev-echo";
    const bool extreme = i % 4 == 0;
    rate.input =
        extreme ? big_rates[rng() % 8] : static_cast<std::int64_t>(rng() % 40'000'000'000'000);
    rate.output =
        extreme ? big_rates[rng() % 8] : static_cast<std::int64_t>(rng() % 80'000'000'000'000);
    rate.flat_fees_micros = static_cast<std::int64_t>(rng() % 3) * 1'500;
    const std::int64_t prompt =
        extreme ? big_tokens[rng() % 7] : static_cast<std::int64_t>(rng() % 200'000);
    const std::int64_t completion =
        extreme ? big_tokens[rng() % 7] : static_cast<std::int64_t>(rng() % 50'000);
    const std::int64_t pool_in = static_cast<std::int64_t>(rng() % 300'000);
    const std::int64_t pool_out = static_cast<std::int64_t>(rng() % 60'000);
    // A fresh tenant counter per case: its pools start empty (nothing used, nothing held).
    auto r = run(io, covered_reserve(engine, c, "req_" + std::to_string(i), reservation_amount_max,
                                     ask_of(prompt, completion, pool_in, pool_out, rate), t0));
    REQUIRE(r);
    const std::int64_t in = r->granted ? r->covered[0] : 0;
    const std::int64_t out = r->granted ? r->covered[1] : 0;
    INFO("prompt " << prompt << " completion " << completion << " rates " << rate.input << " "
                   << rate.output);
    if (r->granted) {
      CHECK(in <= std::min(prompt, pool_in));
      CHECK(out <= std::min(completion, pool_out));
      CHECK(r->credit_amount == uncovered_cost_micros(rate, prompt, completion, in, out));
      // Give it all back, so the next case sees full pools.
      std::vector<std::int64_t> none{0, 0, 0};
      auto s = run(io, settle_hold(engine, c, r->ticket, none));
      REQUIRE(s);
    } else {
      // Only a credit amount at the cap (2^53 - 1 > the limit) can be refused here.
      CHECK(r->credit_amount == reservation_amount_max);
    }
  }
}

TEST_CASE("cover: concurrent covered holds never take more than a pool, and money the rest") {
  redis_server server;
  net::io_context io;
  redis::client a(io.get_executor(), client_settings(server));
  redis::client b(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  credit_rate rate;
  rate.model = "dev-echo";
  rate.input = 2'000'000'000'000;   // 2 micro-units per token
  rate.output = 8'000'000'000'000;  // 8 micro-units per token
  // Pools of 1,000 input and 300 output tokens; credit of 2,000 micro-units. Each request
  // asks 100 prompt and 40 completion tokens (worst case 200 + 320 = 520 without cover).
  auto ex = io.get_executor();
  std::vector<std::future<reserve_result>> futures;
  for (int i = 0; i < 40; ++i) {
    futures.push_back(
        net::co_spawn(ex,
                      covered_reserve(engine, i % 2 ? a : b, "req_" + std::to_string(i), 2'000,
                                      ask_of(100, 40, 1'000, 300, rate), t0),
                      net::use_future));
  }
  io.restart();
  for (auto& f : futures) {
    while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) io.run_one();
  }
  std::int64_t covered_in = 0, covered_out = 0, money = 0;
  int granted = 0;
  std::vector<reservation> holds;
  for (auto& f : futures) {
    auto r = f.get();
    REQUIRE(r);
    if (!r->granted) {
      CHECK(r->refused_index == 0);
      continue;
    }
    ++granted;
    covered_in += r->covered[0];
    covered_out += r->covered[1];
    money += r->credit_amount;
    CHECK(r->credit_amount == uncovered_cost_micros(rate, 100, 40, r->covered[0], r->covered[1]));
    holds.push_back(std::move(*r));
  }
  // 10 requests are fully covered on input, 7 on output (+ 20 tokens of an 8th); then money.
  CHECK(covered_in == 1'000);
  CHECK(covered_out == 300);
  CHECK(money <= 2'000);
  CHECK(granted > 10);
  auto used_in = run(io, pool_used(engine, a, false));
  REQUIRE(used_in);
  CHECK(*used_in == 1'000);
  // Settling: each counts the covered tokens it used (here half its prompt) and frees the rest.
  std::int64_t counted_in = 0;
  for (auto& h : holds) {
    const std::int64_t in = std::min<std::int64_t>(50, h.covered[0]);
    counted_in += in;
    std::vector<std::int64_t> actual{h.credit_amount, in, h.covered[1]};
    auto s = run(io, settle_hold(engine, a, h.ticket, actual));
    REQUIRE(s);
    CHECK(s->first);
  }
  auto after_in = run(io, pool_used(engine, a, false));
  REQUIRE(after_in);
  CHECK(*after_in == counted_in);
  auto after_out = run(io, pool_used(engine, b, true));
  REQUIRE(after_out);
  CHECK(*after_out == 300);
}

TEST_CASE("cover: a refused covered hold takes nothing from the pools; a new pool starts seeded") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server));
  budget_engine engine(std::chrono::seconds(60));
  credit_rate rate;
  rate.model = "dev-echo";
  rate.input = 1'000'000'000'000;
  rate.output = 1'000'000'000'000;
  rate.flat_fees_micros = 10;
  // The ledger drew 900 of the 1,000 input tokens already: the pool covers 100 at most.
  cover_ask ask = ask_of(300, 0, 1'000, 0, rate);
  ask.seeds = {900, 0};
  auto r = run(io, covered_reserve(engine, c, "req_1", 50, ask, t0));
  REQUIRE(r);
  CHECK_FALSE(r->granted);
  CHECK(r->credit_amount == 200 + 10);  // 200 uncovered tokens and the fee
  auto used = run(io, pool_used(engine, c, false));
  REQUIRE(used);
  CHECK(*used == 900);  // seeded, nothing held
  auto ok = run(io, covered_reserve(engine, c, "req_2", 1'000, ask, t0));
  REQUIRE(ok);
  REQUIRE(ok->granted);
  CHECK(ok->covered[0] == 100);
  CHECK(ok->credit_amount == 210);
}
