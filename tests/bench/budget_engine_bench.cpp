// tollgate-budget-bench: reserve+settle pairs per second through the budget engine against a
// real Redis, for tests/bench/budgets_bench.mjs (which runs redis-benchmark with a trivial
// script on the same Redis as the baseline).
//   tollgate-budget-bench --port P [--seconds S] [--concurrency C] [--connections N]
//                         [--credit 1|cover]
// Each of C coroutines loops: reserve (a tokens-per-month budget and a requests-per-minute
// limit, as a gateway request with two budgets does), then settle. With --credit 1 the second
// budget is a credit_only tenant's credit mirror (a lifetime counter holding the worst-case
// cost); with --credit cover, the same covered by input and output coverage pools
// (metering/budgets/cover.hpp), as for a credit_only tenant with token bundles of the model.
// Prints one line:
//   pairs_per_s=<n> scripts_per_s=<n>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tests/bench/bench_args.hpp"
#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/cover.hpp"
#include "metering/redis_client.hpp"

using tollgate::bench::arg;
using namespace tollgate;
using namespace tollgate::metering;
namespace net = boost::asio;
using bench_clock = std::chrono::steady_clock;

namespace {

struct shared_state {
  bench_clock::time_point end;
  long pairs = 0;
  long failures = 0;
  int running = 0;
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The credit_only mirror of --cover: pools far from empty, 3,000 prompt and 1,200 completion
// tokens asked, at $2.5 and $10 per 1M tokens.
cover_ask bench_cover() {
  cover_ask a;
  a.charge = 1;
  a.pool_ids = {cover_pool_id("bench-model", false), cover_pool_id("bench-model", true)};
  a.limits = {std::int64_t{1} << 50, std::int64_t{1} << 50};
  a.asked = {3'000, 1'200};
  a.rate.input = 2'500'000'000'000;
  a.rate.output = 10'000'000'000'000;
  return a;
}

net::awaitable<void> worker(budget_engine& engine, redis::client& redis, shared_state& st,
                            std::vector<std::unique_ptr<redis::client>>& all, int id,
                            bool credit, bool cover) {
  limit_rule month;
  month.id = "bench_month";
  month.window = budget_window::month;
  month.limit = std::int64_t{1} << 60;
  limit_rule rpm;
  rpm.id = "bench_rpm";
  rpm.window = budget_window::minute;
  rpm.limit = std::int64_t{1} << 60;
  if (credit) {
    rpm.id = "credit:bench_tenant";
    rpm.window = budget_window::lifetime;
    rpm.limit = std::int64_t{1} << 52;
  }
  const cover_ask ask = bench_cover();
  for (long n = 0; bench_clock::now() < st.end; ++n) {
    // The credit mirror without cover holds the worst case at the bench rates: 22,500.
    std::vector<limit_charge> charges{{month, 4200}, {rpm, credit ? 22'500 : 1}};
    std::string tenant = "bench_tenant";
    std::string request = "req_" + std::to_string(id) + "_" + std::to_string(n);
    auto r = co_await engine.reserve(redis, std::move(tenant), std::move(request),
                                     std::move(charges), now_ms(), cover ? &ask : nullptr);
    if (!r || !r->granted) {
      ++st.failures;
      continue;
    }
    std::vector<std::int64_t> actual{1234, 1};
    if (credit) actual = {1234, 9'000};
    if (cover) actual = {1234, r->credit_amount, r->covered[0], r->covered[1]};
    auto s = co_await engine.settle(redis, std::move(r->ticket), std::move(actual));
    if (!s) {
      ++st.failures;
      continue;
    }
    ++st.pairs;
  }
  // The last one out closes the connections, so that the event loop runs out of work.
  if (--st.running == 0) {
    for (auto& c : all) c->shutdown();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int port = std::stoi(arg(argc, argv, "--port", "6379"));
  const double seconds = std::stod(arg(argc, argv, "--seconds", "5"));
  const int concurrency = std::stoi(arg(argc, argv, "--concurrency", "50"));
  const int connections = std::stoi(arg(argc, argv, "--connections", "1"));
  const std::string credit = arg(argc, argv, "--credit", "0");
  net::io_context io{1};
  redis::settings rs;
  rs.port = static_cast<std::uint16_t>(port);
  rs.command_timeout = std::chrono::milliseconds(5000);
  std::vector<std::unique_ptr<redis::client>> clients;
  for (int i = 0; i < connections; ++i) {
    clients.push_back(std::make_unique<redis::client>(io.get_executor(), rs));
  }
  budget_engine engine(std::chrono::minutes(11));
  shared_state st;
  st.end = bench_clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  st.running = concurrency;
  const auto start = bench_clock::now();
  for (int i = 0; i < concurrency; ++i) {
    net::co_spawn(io,
                  worker(engine, *clients[static_cast<std::size_t>(i % connections)], st, clients,
                         i, credit != "0", credit == "cover"),
                  net::detached);
  }
  io.run();
  const double elapsed = std::chrono::duration<double>(bench_clock::now() - start).count();
  if (st.failures > 0 || st.pairs == 0) {
    std::fprintf(stderr, "tollgate-budget-bench: %ld failures, %ld pairs\n", st.failures,
                 st.pairs);
    return 1;
  }
  std::printf("pairs_per_s=%.0f scripts_per_s=%.0f\n", st.pairs / elapsed,
              2 * st.pairs / elapsed);
  return 0;
}
