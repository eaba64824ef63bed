// What the database benchmarks share: running a coroutine on the benchmark's io_context from
// the main thread, SQL and connection helpers that report failures, the ledger writer's
// committed-row count, and the median of repeated timings.
#pragma once
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "billing/pg.hpp"
#include "core/metrics.hpp"

namespace tollgate::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class T>
T run_on(boost::asio::io_context& io, boost::asio::awaitable<T> op) {
  auto f = boost::asio::co_spawn(io, std::move(op), boost::asio::use_future);
  return f.get();
}

inline boost::asio::awaitable<bool> exec_sql(pg::connection& c, std::string sql) {
  auto r = co_await c.exec(sql);
  if (!r) std::fprintf(stderr, "bench: %s\n", r.error().message.c_str());
  co_return static_cast<bool>(r);
}

inline boost::asio::awaitable<bool> connect(pg::connection& c) {
  auto r = co_await c.connect();
  if (!r) std::fprintf(stderr, "bench: %s\n", r.error().message.c_str());
  co_return static_cast<bool>(r);
}

// The first column of the first row of `sql` as an integer (-1 on failure).
inline boost::asio::awaitable<std::int64_t> query_int(pg::connection& c, std::string sql) {
  auto r = co_await c.query(sql);
  if (!r) std::fprintf(stderr, "bench: %s\n", r.error().message.c_str());
  co_return r && r->size() > 0 ? r->int64(0, 0) : -1;
}

// Brings the usage rollup up to every committed event, then advances it once more (as a
// gateway does every interval), which summarizes the BRIN ranges written meanwhile; returns the
// seconds it took.
inline boost::asio::awaitable<double> catch_up_rollup(pg::connection& c) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    auto left = co_await c.query(
        "SELECT count(*) FROM (SELECT 1 FROM usage_events WHERE xact_id >="
        " (SELECT watermark FROM usage_rollup_state) LIMIT 1) x");
    if (!left) std::fprintf(stderr, "bench: %s\n", left.error().message.c_str());
    // NULL: another session is advancing it; its work counts too, so go round again.
    auto r = co_await c.query("SELECT tollgate_advance_usage_rollup(600000) IS NOT NULL");
    if (!left || !r || (left->int64(0, 0) == 0 && r->boolean(0, 0))) break;
  }
  co_return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A benchmark's database side: an io_context run by a thread of its own, the settings for
// more connections, and one connection; closed and joined at the end.
class bench_session {
 public:
  explicit bench_session(const std::string& url) {
    settings.conninfo = url;
    settings.statement_timeout = std::chrono::milliseconds(600'000);
    conn = std::make_unique<pg::connection>(io.get_executor(), settings);
  }
  ~bench_session() {
    conn->close();
    guard_.reset();
    thread_.join();
  }
  bench_session(const bench_session&) = delete;
  bench_session& operator=(const bench_session&) = delete;

  template <class T>
  T run(boost::asio::awaitable<T> op) {
    return run_on(io, std::move(op));
  }
  bool sql(std::string text) { return run(exec_sql(*conn, std::move(text))); }

  boost::asio::io_context io{1};
  pg::connection_settings settings;
  std::unique_ptr<pg::connection> conn;

 private:
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_ =
      boost::asio::make_work_guard(io);
  std::thread thread_{[this] { io.run(); }};
};

// tollgate_ledger_events_written_total of a ledger writer's registry.
inline std::uint64_t written_so_far(const metrics::registry& registry) {
  const std::string text = registry.render();
  const std::string key = "\ntollgate_ledger_events_written_total ";
  const auto at = text.find(key);
  return at == std::string::npos ? 0 : std::stoull(text.substr(at + key.size()));
}

// SQL that gives the tenants matching `tenant_like` one graduated three-tier price book for
// both bench models, so that every event is rated.
inline std::string bench_plan_sql(const std::string& tenant_like) {
  return "DELETE FROM rating_accumulators WHERE tenant_id LIKE '" + tenant_like +
         "';"
         "DELETE FROM tenant_plans WHERE tenant_id LIKE '" +
         tenant_like +
         "';"
         "INSERT INTO price_books (id, name, currency, tier_mode, tier_scope) VALUES "
         "('pb_bench', 'bench', 'USD', 'graduated', 'model') ON CONFLICT DO NOTHING;"
         "INSERT INTO price_book_versions (book_id, version, effective_at, prices) "
         "SELECT 'pb_bench', 1, '2000-01-01', jsonb_build_object(m, jsonb_build_object("
         "'input', t, 'cached_input', t, 'output', t)) FROM (VALUES "
         "('gpt-4o-mini'), ('llama-3.1-8b')) AS models(m), (SELECT '[{\"up_to\":"
         "1000000,\"rate\":\"150000\"},{\"up_to\":50000000,\"rate\":"
         "\"120000.5\"},{\"rate\":\"99999.999999\"}]'::jsonb AS t) tiers "
         "ON CONFLICT DO NOTHING;"
         "INSERT INTO tenant_plans (tenant_id, book_id, from_period) SELECT id, 'pb_bench', "
         "'2000-01' FROM tenants WHERE id LIKE '" +
         tenant_like + "'";
}

}  // namespace tollgate::bench
