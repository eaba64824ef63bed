// What the database benchmarks share: running a coroutine on the benchmark's io_context from
// the main thread, SQL and connection helpers that report failures, the ledger writer's
// committed-row count, and the median of repeated timings.
#pragma once
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <string>
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
  return "DELETE FROM rating_accumulators WHERE tenant_id LIKE '" + tenant_like + "';"
         "DELETE FROM tenant_plans WHERE tenant_id LIKE '" + tenant_like + "';"
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
         "'2000-01' FROM tenants WHERE id LIKE '" + tenant_like + "'";
}

}  // namespace tollgate::bench
