// tollgate-ledger-bench: ledger ingest rate into a real PostgreSQL, against plain COPY of the
// same rows measured in the same run.
//   tollgate-ledger-bench --db URL [--events N] [--rounds R] [--spool DIR]
// Baselines: one COPY of all rows straight into usage_events (same partitions and indexes), and
// one COPY into a plain table without indexes. Ledger: the rows go through ledger_writer.record()
// (encoding, the spool journal, the queue) from one producer thread, and the writer commits them
// in batches; the clock stops when all N are committed. It runs twice: without rating
// (ledger.rate_events false) and with every event rated (the 50 tenants on a three-tier price
// book for both models). Prints the median events/s of each and the ratios.
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_args.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/pg.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

using tollgate::bench::arg;
using namespace tollgate;
namespace net = boost::asio;
using bench_clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<metering::usage_record> make_records(std::size_t n, int round) {
  std::vector<metering::usage_record> out(n);
  const std::int64_t base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  for (std::size_t i = 0; i < n; ++i) {
    auto& r = out[i];
    r.tenant_id = "ten_bench" + std::to_string(i % 50);
    r.project_id = "proj_bench" + std::to_string(i % 200);
    r.api_key_id = "key_bench" + std::to_string(i % 1000);
    r.request_id = "req_r" + std::to_string(round) + "_" + std::to_string(i);
    r.occurred_at_ms = base_ms - static_cast<std::int64_t>(i % 60000);
    r.endpoint = "/v1/chat/completions";
    r.model = i % 3 == 0 ? "gpt-4o-mini" : "llama-3.1-8b";
    r.upstream = "bench";
    r.stream = i % 2 == 0;
    r.status = 200;
    r.usage_reported = true;
    r.prompt_tokens = 100 + static_cast<std::int64_t>(i % 900);
    r.completion_tokens = 20 + static_cast<std::int64_t>(i % 300);
    r.counted_prompt_tokens = r.prompt_tokens;
    r.latency_us = 1000 + static_cast<std::int64_t>(i % 5000);
    r.ttft_us = r.stream ? 300 : -1;
  }
  return out;
}

template <class T>
T run_on(net::io_context& io, net::awaitable<T> op) {
  auto f = net::co_spawn(io, std::move(op), net::use_future);
  return f.get();
}

net::awaitable<bool> exec_sql(pg::connection& c, std::string sql) {
  auto r = co_await c.exec(sql);
  if (!r) std::fprintf(stderr, "ledger-bench: %s\n", r.error().message.c_str());
  co_return static_cast<bool>(r);
}

net::awaitable<bool> connect(pg::connection& c) {
  auto r = co_await c.connect();
  if (!r) std::fprintf(stderr, "ledger-bench: %s\n", r.error().message.c_str());
  co_return static_cast<bool>(r);
}

net::awaitable<double> timed_copy(pg::connection& c, std::string sql, const std::string& rows) {
  const auto t0 = bench_clock::now();
  auto r = co_await c.copy_in(sql, rows);
  const double s = std::chrono::duration<double>(bench_clock::now() - t0).count();
  if (!r) {
    std::fprintf(stderr, "ledger-bench: COPY failed: %s\n", r.error().message.c_str());
    co_return -1;
  }
  co_return s;
}

std::uint64_t written_so_far(const metrics::registry& registry) {
  const std::string text = registry.render();
  const std::string key = "\ntollgate_ledger_events_written_total ";
  const auto at = text.find(key);
  return at == std::string::npos ? 0 : std::stoull(text.substr(at + key.size()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string url = arg(argc, argv, "--db", "");
  const std::size_t events = std::stoul(arg(argc, argv, "--events", "200000"));
  const int rounds = std::stoi(arg(argc, argv, "--rounds", "3"));
  const std::string spool_dir =
      arg(argc, argv, "--spool", (std::filesystem::temp_directory_path() / "tollgate-bench-spool").string());
  if (url.empty()) {
    std::fprintf(stderr, "usage: tollgate-ledger-bench --db URL [--events N] [--rounds R]\n");
    return 2;
  }
  net::io_context io{1};
  auto guard = net::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });

  pg::connection_settings settings;
  settings.conninfo = url;
  settings.statement_timeout = std::chrono::milliseconds(600'000);
  pg::connection conn(io.get_executor(), settings);
  if (!run_on(io, connect(conn))) return 1;
  const std::string cols = billing::usage_event_columns;
  run_on(io, exec_sql(conn, "DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain "
                            "(LIKE usage_events); TRUNCATE usage_events"));

  // 50 tenants on one graduated three-tier book (for the rated run).
  run_on(io, exec_sql(conn,
                      "DELETE FROM rating_accumulators WHERE tenant_id LIKE 'ten_bench%';"
                      "DELETE FROM tenant_plans WHERE tenant_id LIKE 'ten_bench%';"
                      "INSERT INTO tenants (id, name) SELECT 'ten_bench' || i, 'bench' FROM "
                      "generate_series(0, 49) i ON CONFLICT DO NOTHING;"
                      "INSERT INTO price_books (id, name, currency, tier_mode, tier_scope) VALUES "
                      "('pb_bench', 'bench', 'USD', 'graduated', 'model') ON CONFLICT DO NOTHING;"
                      "INSERT INTO price_book_versions (book_id, version, effective_at, prices) "
                      "SELECT 'pb_bench', 1, '2000-01-01', jsonb_build_object(m, jsonb_build_object("
                      "'input', t, 'cached_input', t, 'output', t)) FROM (VALUES "
                      "('gpt-4o-mini'), ('llama-3.1-8b')) AS models(m), (SELECT '[{\"up_to\":"
                      "1000000,\"rate\":\"150000\"},{\"up_to\":50000000,\"rate\":"
                      "\"120000.5\"},{\"rate\":\"99999.999999\"}]'::jsonb AS t) tiers "
                      "ON CONFLICT DO NOTHING;"
                      "INSERT INTO tenant_plans (tenant_id, book_id) SELECT 'ten_bench' || i, "
                      "'pb_bench' FROM generate_series(0, 49) i"));

  std::vector<double> plain_s, table_s, ledger_s, rated_s;
  for (int round = 0; round < rounds; ++round) {
    const auto records = make_records(events, round);
    std::string rows;
    for (const auto& r : records) billing::append_usage_row(rows, r);

    // Baseline 1: COPY into a table with no indexes.
    const double p = run_on(io, timed_copy(conn, "COPY bench_plain (" + cols + ") FROM STDIN", rows));
    // Baseline 2: COPY straight into usage_events (its partitions, key and indexes).
    const double t = run_on(io, timed_copy(conn, "COPY usage_events (" + cols + ") FROM STDIN", rows));
    if (p < 0 || t < 0) return 1;
    plain_s.push_back(p);
    table_s.push_back(t);
    run_on(io, exec_sql(conn, "TRUNCATE usage_events, bench_plain"));

    // The ledger writer, fed from this thread as the I/O threads feed it; without rating,
    // then with.
    for (const bool rate : {false, true}) {
      std::filesystem::remove_all(spool_dir);
      metrics::registry registry;
      logger log{stderr, log_level::warn};
      billing::ledger_settings ls;
      ls.spool_dir = spool_dir;
      ls.rate_events = rate;
      billing::ledger_writer writer(io.get_executor(), settings, ls, registry, log);
      writer.start();
      const auto t0 = bench_clock::now();
      for (const auto& r : records) writer.record(r);
      while (written_so_far(registry) < events) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (bench_clock::now() - t0 > std::chrono::minutes(5)) {
          std::fprintf(stderr, "ledger-bench: the writer did not finish\n");
          return 1;
        }
      }
      (rate ? rated_s : ledger_s)
          .push_back(std::chrono::duration<double>(bench_clock::now() - t0).count());
      run_on(io, writer.stop());
      run_on(io, exec_sql(conn, "TRUNCATE usage_events, rating_accumulators"));
    }
    std::fprintf(stderr,
                 "round %d: plain COPY %.3f s, COPY into usage_events %.3f s, ledger %.3f s, "
                 "ledger rating every event %.3f s\n",
                 round + 1, p, t, ledger_s.back(), rated_s.back());
  }
  run_on(io, exec_sql(conn, "DROP TABLE bench_plain"));
  conn.close();
  guard.reset();
  io_thread.join();
  std::filesystem::remove_all(spool_dir);

  const double n = static_cast<double>(events);
  const double plain = n / median(plain_s), table = n / median(table_s),
               ledger = n / median(ledger_s), rated = n / median(rated_s);
  std::printf(
      "{\"events\":%zu,\"rounds\":%d,\"plain_copy_events_per_s\":%.0f,"
      "\"copy_into_usage_events_per_s\":%.0f,\"ledger_events_per_s\":%.0f,"
      "\"ledger_rated_events_per_s\":%.0f,"
      "\"ledger_vs_plain_copy\":%.2f,\"ledger_vs_copy_into_usage_events\":%.2f,"
      "\"rated_vs_unrated_ledger\":%.2f,\"rated_vs_copy_into_usage_events\":%.2f}\n",
      events, rounds, plain, table, ledger, rated, ledger / plain, ledger / table, rated / ledger,
      rated / table);
  return 0;
}
