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
//   top 20 end users over 30 whole days that are not a calendar month (a month row less a day);
// first right after the writes, then once the BRIN ranges written meanwhile are summarized
// (waiting for a VACUUM of the partition to end, if one holds it);
//   the first and third again without the rollup (a batch=false filter, which it does not
//   serve; once each), and whether the answers are the same.
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
  r.occurred_at_ms = from_ms + static_cast<std::int64_t>(static_cast<__int128>(i) * 30 * day_ms /
                                                         static_cast<__int128>(n));
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
double write_events(bench_session& db, const std::string& spool_dir, std::size_t n,
                    std::int64_t from_ms, std::size_t users) {
  std::filesystem::remove_all(spool_dir);
  metrics::registry registry;
  logger log{stderr, log_level::warn};
  billing::ledger_settings ls;
  ls.spool_dir = spool_dir;
  billing::ledger_writer writer(db.io.get_executor(), db.settings, ls, registry, log);
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
  db.run(writer.stop());
  return s;
}

struct timed {
  double median_ms = 0;
  std::vector<billing::usage_row> rows;
};

timed time_query(bench_session& db, billing::usage_queries& queries, const billing::usage_query& q,
                 int runs) {
  timed out;
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = bench_clock::now();
    auto rows = db.run(queries.usage(q));
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
  const std::string spool_dir =
      arg(argc, argv, "--spool",
          (std::filesystem::temp_directory_path() / "tollgate-usage-bench-spool").string());
  if (url.empty()) {
    std::fprintf(stderr, "usage: tollgate-usage-bench --db URL [--events N] [--users U]\n");
    return 2;
  }
  bench_session db(url);
  if (!db.run(connect(*db.conn))) return 1;
  // Last month's first day (UTC), and the next month's.
  const std::int64_t month =
      db.run(query_int(*db.conn,
                       "SELECT extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC')"
                       " - interval '1 month')::bigint"));
  const std::int64_t next = db.run(query_int(
      *db.conn,
      "SELECT extract(epoch from date_trunc('month', now() AT TIME ZONE 'UTC'))::bigint"));
  double ingest_s = 0;
  if (!reuse) {
    if (!db.sql(std::string("TRUNCATE usage_events, usage_rollup; INSERT INTO tenants (id, name)"
                            " VALUES ('") +
                tenant + "', 'topn') ON CONFLICT DO NOTHING;" + bench_plan_sql(tenant))) {
      return 1;
    }
    ingest_s = write_events(db, spool_dir, events, month * 1000, users);
    if (ingest_s < 0) return 1;
  }
  const double catch_up_s = db.run(catch_up_rollup(*db.conn));
  std::fprintf(stderr, "usage-bench: %zu events written in %.1f s; rollup caught up %.1f s later\n",
               events, ingest_s, catch_up_s);

  pg::pool pool(db.io.get_executor(), db.settings, 1);
  billing::usage_queries queries(pool);
  billing::usage_query top;
  top.start_s = month;
  top.end_s = next;
  top.monthly = true;
  top.tenant_id = tenant;
  top.group_by = {"end_user"};
  top.order = billing::usage_order::cost_desc;
  top.group_limit = 20;
  billing::usage_query tags = top;
  tags.group_by = {"tag:feature"};
  billing::usage_query days = top;
  days.start_s = month + 86400;
  days.end_s = month + 31 * 86400;
  // Right after the writes: autovacuum is likely at work on the month's partition, so the BRIN
  // ranges written since the last summary are not summarized yet.
  const timed users_month = time_query(db, queries, top, runs);
  const timed tags_month = time_query(db, queries, tags, runs);
  const timed users_days = time_query(db, queries, days, runs);
  // Then once every range is summarized (waiting for the VACUUM that holds the partition).
  const auto t1 = bench_clock::now();
  const std::int64_t ranges =
      db.run(query_int(*db.conn,
                       "SELECT coalesce(sum(brin_summarize_new_values(relid)), 0) FROM"
                       " pg_partition_tree('usage_events_xact') WHERE isleaf"));
  const double summary_s = std::chrono::duration<double>(bench_clock::now() - t1).count();
  const timed users_month_s = time_query(db, queries, top, runs);
  const timed tags_month_s = time_query(db, queries, tags, runs);
  const timed users_days_s = time_query(db, queries, days, runs);
  billing::usage_query raw = top;
  raw.batch = false;  // every event: the same answer, without the rollup
  const timed users_raw = time_query(db, queries, raw, 1);
  billing::usage_query raw_days = days;
  raw_days.batch = false;
  const timed days_raw = time_query(db, queries, raw_days, 1);
  std::filesystem::remove_all(spool_dir);
  std::printf(
      "{\"events\":%zu,\"end_users\":%zu,\"runs\":%d,\"ingest_events_per_s\":%.0f,"
      "\"rollup_catch_up_s\":%.2f,\"right_after\":{\"top20_end_users_month_ms\":%.1f,"
      "\"top20_tag_values_month_ms\":%.1f,\"top20_end_users_30_days_ms\":%.1f},"
      "\"unsummarized_ranges\":%lld,\"summarized_after_s\":%.1f,"
      "\"summarized\":{\"top20_end_users_month_ms\":%.1f,"
      "\"top20_tag_values_month_ms\":%.1f,\"top20_end_users_30_days_ms\":%.1f},"
      "\"top20_end_users_month_without_rollup_ms\":%.0f,"
      "\"top20_end_users_30_days_without_rollup_ms\":%.0f,\"same_answers\":%s,\"groups\":%zu}\n",
      events, users, runs, reuse ? 0.0 : static_cast<double>(events) / ingest_s, catch_up_s,
      users_month.median_ms, tags_month.median_ms, users_days.median_ms,
      static_cast<long long>(ranges), summary_s, users_month_s.median_ms, tags_month_s.median_ms,
      users_days_s.median_ms, users_raw.median_ms, days_raw.median_ms,
      same(users_month.rows, users_raw.rows) && same(users_days.rows, days_raw.rows) ? "true"
                                                                                     : "false",
      users_month.rows.size());
  return 0;
}
