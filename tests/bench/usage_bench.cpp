// tollgate-usage-bench: how fast a month's top end users come back from a large ledger.
//   tollgate-usage-bench --db URL [--events N] [--users U] [--runs R] [--spool DIR]
//                        [--reuse 1]  (time the queries on the events a previous run wrote)
// Writes N events (default 10,000,000) through ledger_writer.record() with rating on, for one
// tenant, U end users (default 10,000), 2 to 4 tags per event from 50 values, over the first 30
// days of last month (UTC), in time order; waits for the usage rollup to hold them; then times
// the usage queries the API runs (billing::usage_queries, as GET /finance/v1/usage builds them),
// R times each (default 11), and prints the medians:
//   top 20 end users by cost for the month (bucket_width=1mo, order=cost_desc, group_limit=20);
//   top 20 tag values of `feature` by cost for the month;
//   top 20 end users over 30 whole days that are not a calendar month (the rollup's days);
//   the first and third again without the rollup (a batch=false filter, which it does not
//   serve; once each), and whether the answers are the same.
#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "billing/ledger_writer.hpp"
#include "billing/usage_queries.hpp"
#include "core/log.hpp"
#include "tests/bench/bench_args.hpp"
#include "tests/bench/bench_db.hpp"

using namespace tollgate;
using namespace tollgate::bench;
namespace net = boost::asio;
using bench_clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t day_ms = 86'400'000;
constexpr const char* tenant = "ten_topn";

metering::usage_record make_record(std::size_t i, std::size_t n, std::int64_t from_ms,
                                   std::size_t users) {
  metering::usage_record r;
  r.tenant_id = tenant;
  r.project_id = "proj_topn" + std::to_string(i % 4);
  r.api_key_id = "key_topn" + std::to_string(i % 40);
  r.request_id = "req_topn_" + std::to_string(i);
  r.occurred_at_ms = from_ms + static_cast<std::int64_t>(
                                   static_cast<__int128>(i) * 30 * day_ms / static_cast<__int128>(n));
  r.endpoint = "/v1/chat/completions";
  r.model = i % 3 == 0 ? "gpt-4o-mini" : "llama-3.1-8b";
  r.upstream = "bench";
  r.status = 200;
  r.usage_reported = true;
  r.prompt_tokens = 100 + static_cast<std::int64_t>(i % 900);
  r.completion_tokens = 20 + static_cast<std::int64_t>(i % 300);
  r.latency_us = 1000;
  r.attribution.end_user = "user-" + std::to_string((i * 2654435761u) % users);
  auto& tags = r.attribution.tags;  // 2 to 4 of 50 values, sorted by key
  if (i % 3 != 0) tags.push_back({"env", "env-" + std::to_string(i % 5)});
  tags.push_back({"feature", "feature-" + std::to_string(i % 20)});
  if (i % 3 != 1) tags.push_back({"region", "region-" + std::to_string(i % 15)});
  tags.push_back({"team", "team-" + std::to_string(i % 10)});
  r.attribution.session = "sess-" + std::to_string(i / 20);
  return r;
}

// Writes the events through a ledger writer, at most `ahead` queued beyond what is committed;
// returns the seconds until all are committed (-1 on failure).
double write_events(net::io_context& io, const pg::connection_settings& settings,
                    const std::string& spool_dir, std::size_t n, std::int64_t from_ms,
                    std::size_t users) {
  std::filesystem::remove_all(spool_dir);
  metrics::registry registry;
  logger log{stderr, log_level::warn};
  billing::ledger_settings ls;
  ls.spool_dir = spool_dir;
  billing::ledger_writer writer(io.get_executor(), settings, ls, registry, log);
  writer.start();
  constexpr std::size_t ahead = 100'000;
  const auto t0 = bench_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    while (i >= written_so_far(registry) + ahead) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    writer.record(make_record(i, n, from_ms, users));
    if (i % 1'000'000 == 999'999) std::fprintf(stderr, "usage-bench: %zu events\n", i + 1);
  }
  while (written_so_far(registry) < n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (bench_clock::now() - t0 > std::chrono::minutes(60)) return -1;
  }
  const double s = std::chrono::duration<double>(bench_clock::now() - t0).count();
  run_on(io, writer.stop());
  return s;
}

struct timed {
  double median_ms = 0;
  std::vector<billing::usage_row> rows;
};

timed time_query(net::io_context& io, billing::usage_queries& queries,
                 const billing::usage_query& q, int runs) {
  timed out;
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = bench_clock::now();
    auto rows = run_on(io, queries.usage(q));
    ms.push_back(std::chrono::duration<double, std::milli>(bench_clock::now() - t0).count());
    if (!rows) {
      std::fprintf(stderr, "usage-bench: %s\n", rows.error().message.c_str());
      return out;
    }
    out.rows = std::move(*rows);
  }
  out.median_ms = median(ms);
  return out;
}

bool same(const std::vector<billing::usage_row>& a, const std::vector<billing::usage_row>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].end_user != b[i].end_user || a[i].cost_micros != b[i].cost_micros ||
        a[i].requests != b[i].requests || a[i].input_tokens != b[i].input_tokens) {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string url = arg(argc, argv, "--db", "");
  const std::size_t events = std::stoul(arg(argc, argv, "--events", "10000000"));
  const std::size_t users = std::stoul(arg(argc, argv, "--users", "10000"));
  const int runs = std::stoi(arg(argc, argv, "--runs", "11"));
  const bool reuse = arg(argc, argv, "--reuse", "0") == "1";
  const std::string spool_dir = arg(
      argc, argv, "--spool",
      (std::filesystem::temp_directory_path() / "tollgate-usage-bench-spool").string());
  if (url.empty()) {
    std::fprintf(stderr, "usage: tollgate-usage-bench --db URL [--events N] [--users U]\n");
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
  // Last month's first day (UTC), and the next month's.
  const std::int64_t month = run_on(io, query_int(conn,
      "SELECT extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC')"
      " - interval '1 month')::bigint"));
  const std::int64_t next = run_on(io, query_int(conn,
      "SELECT extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC'))::bigint"));
  double ingest_s = 0;
  if (!reuse) {
    if (!run_on(io, exec_sql(conn, std::string("TRUNCATE usage_events, usage_rollup;"
                                               "INSERT INTO tenants (id, name) VALUES ('") +
                                       tenant + "', 'topn') ON CONFLICT DO NOTHING;" +
                                       bench_plan_sql(tenant)))) {
      return 1;
    }
    ingest_s = write_events(io, settings, spool_dir, events, month * 1000, users);
    if (ingest_s < 0) return 1;
  }
  const auto t0 = bench_clock::now();
  while (run_on(io, query_int(conn, "SELECT count(*) FROM (SELECT 1 FROM usage_events WHERE"
                                    " xact_id >= (SELECT watermark FROM usage_rollup_state)"
                                    " LIMIT 1) x")) != 0) {
    run_on(io, query_int(conn, "SELECT tollgate_advance_usage_rollup(600000)"));
  }
  const double catch_up_s = std::chrono::duration<double>(bench_clock::now() - t0).count();
  std::fprintf(stderr, "usage-bench: %zu events written in %.1f s; rollup caught up %.1f s later\n",
               events, ingest_s, catch_up_s);

  pg::pool pool(io.get_executor(), settings, 1);
  billing::usage_queries queries(pool);
  billing::usage_query top;
  top.start_s = month;
  top.end_s = next;
  top.monthly = true;
  top.tenant_id = tenant;
  top.group_by = {"end_user"};
  top.order = billing::usage_order::cost_desc;
  top.group_limit = 20;
  const timed users_month = time_query(io, queries, top, runs);
  billing::usage_query tags = top;
  tags.group_by = {"tag:feature"};
  const timed tags_month = time_query(io, queries, tags, runs);
  billing::usage_query days = top;
  days.start_s = month + 86400;
  days.end_s = month + 31 * 86400;
  const timed users_days = time_query(io, queries, days, runs);
  billing::usage_query raw = top;
  raw.batch = false;  // every event: the same answer, without the rollup
  const timed users_raw = time_query(io, queries, raw, 1);
  billing::usage_query raw_days = days;
  raw_days.batch = false;
  const timed days_raw = time_query(io, queries, raw_days, 1);
  conn.close();
  guard.reset();
  io_thread.join();
  std::filesystem::remove_all(spool_dir);
  std::printf(
      "{\"events\":%zu,\"end_users\":%zu,\"runs\":%d,\"ingest_events_per_s\":%.0f,"
      "\"rollup_catch_up_s\":%.2f,\"top20_end_users_month_ms\":%.1f,"
      "\"top20_tag_values_month_ms\":%.1f,\"top20_end_users_30_days_ms\":%.1f,"
      "\"top20_end_users_month_without_rollup_ms\":%.0f,"
      "\"top20_end_users_30_days_without_rollup_ms\":%.0f,\"same_answers\":%s,\"groups\":%zu}\n",
      events, users, runs, reuse ? 0.0 : static_cast<double>(events) / ingest_s, catch_up_s,
      users_month.median_ms, tags_month.median_ms, users_days.median_ms, users_raw.median_ms,
      days_raw.median_ms,
      same(users_month.rows, users_raw.rows) && same(users_days.rows, days_raw.rows) ? "true"
                                                                                     : "false",
      users_month.rows.size());
  return 0;
}
