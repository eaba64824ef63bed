// tollgate-ledger-bench: ledger ingest rate into a real PostgreSQL, against plain COPY of the
// same rows measured in the same run.
//   tollgate-ledger-bench --db URL [--events N] [--rounds R] [--spool DIR]
// Baselines: one COPY of all rows straight into usage_events (same partitions and indexes), the
// same with the attribution columns filled, and one COPY into a plain table without indexes. Ledger: the rows go through ledger_writer.record()
// (encoding, the spool journal, the queue) from one producer thread, and the writer commits them
// in batches; the clock stops when all N are committed. It runs three times: without rating
// (ledger.rate_events false), with every event rated (the 50 tenants on a three-tier price book
// for both models), and rated with the attribution columns filled (10,000 end users, 200 per
// tenant; 2 to 4 tags per event from 50 values; a session per 20 calls). After each run the
// usage rollup is brought up to date and timed too. Prints the median events/s of each and the
// ratios.
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_args.hpp"
#include "tests/bench/bench_db.hpp"
#include "billing/ledger_record.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/pg.hpp"
#include "billing/tag_sets.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

using namespace tollgate;
using namespace tollgate::bench;
namespace net = boost::asio;
using bench_clock = std::chrono::steady_clock;

namespace {

// 2 to 4 tags from 50 values: team (10), feature (20), env (5), region (15).
void add_tags(metering::usage_record& r, std::size_t i) {
  auto& tags = r.attribution.tags;
  if (i % 3 != 0) tags.push_back({"env", "env-" + std::to_string(i % 5)});
  tags.push_back({"feature", "feature-" + std::to_string(i % 20)});
  if (i % 3 != 1) tags.push_back({"region", "region-" + std::to_string(i % 15)});
  tags.push_back({"team", "team-" + std::to_string(i % 10)});
}

std::vector<metering::usage_record> make_records(std::size_t n, int round, bool attributed) {
  std::vector<metering::usage_record> out(n);
  const std::int64_t base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  for (std::size_t i = 0; i < n; ++i) {
    auto& r = out[i];
    r.tenant_id = "ten_bench" + std::to_string(i % 50);
    r.project_id = "proj_bench" + std::to_string(i % 200);
    r.api_key_id = "key_bench" + std::to_string(i % 1000);
    r.request_id = "req_r" + std::to_string(round) + (attributed ? "a_" : "_") + std::to_string(i);
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
    if (attributed) {
      // 10,000 end users: 200 of each tenant.
      r.attribution.end_user =
          "user-" + std::to_string(i % 50) + "-" + std::to_string((i * 2654435761u) % 200);
      add_tags(r, i);
      r.attribution.session = "sess-" + std::to_string(round) + "-" + std::to_string(i / 20);
    }
  }
  return out;
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

// `rows` (COPY lines as the journal holds them) with their tags swapped for their sets' ids.
net::awaitable<std::string> with_tag_set_ids(pg::connection& c, const std::string& rows) {
  std::vector<std::string_view> lines;
  billing::for_each_ledger_line(rows, [&](std::string_view line) { lines.push_back(line); });
  const std::vector<bool> has_tags(lines.size(), true);
  std::deque<std::string> rewritten;
  billing::tag_set_ids ids;
  auto done = co_await ids.substitute(c, lines, has_tags, rewritten);
  if (!done) std::fprintf(stderr, "ledger-bench: tag sets: %s\n", done.error().message.c_str());
  std::string out;
  out.reserve(rows.size());
  for (const auto line : lines) out.append(line).push_back('\n');
  co_return out;
}

// One ledger writer run over `records`: the seconds until every row is committed, and then
// until the rollup holds them (-1 on failure).
std::pair<double, double> writer_run(bench_session& db, const std::string& spool_dir, bool rate,
                                     const std::vector<metering::usage_record>& records) {
  std::filesystem::remove_all(spool_dir);
  metrics::registry registry;
  logger log{stderr, log_level::warn};
  billing::ledger_settings ls;
  ls.spool_dir = spool_dir;
  ls.rate_events = rate;
  billing::ledger_writer writer(db.io.get_executor(), db.settings, ls, registry, log);
  writer.start();
  const auto t0 = bench_clock::now();
  for (const auto& r : records) writer.record(r);
  while (written_so_far(registry) < records.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (bench_clock::now() - t0 > std::chrono::minutes(5)) {
      std::fprintf(stderr, "ledger-bench: the writer did not finish\n");
      db.run(writer.stop());  // its coroutines must not outlive it
      return {-1, -1};
    }
  }
  const double ingest = std::chrono::duration<double>(bench_clock::now() - t0).count();
  const double rollup = db.run(catch_up_rollup(*db.conn));
  db.run(writer.stop());
  db.sql("TRUNCATE usage_events, rating_accumulators, usage_rollup");
  return {ingest, rollup};
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
  bench_session db(url);
  if (!db.run(connect(*db.conn))) return 1;
  pg::connection& conn = *db.conn;
  const std::string cols = billing::usage_event_columns;
  db.sql("DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain (LIKE usage_events);"
         " TRUNCATE usage_events, usage_rollup");
  // 50 tenants on one graduated three-tier book (for the rated runs).
  db.sql("INSERT INTO tenants (id, name) SELECT 'ten_bench' || i, 'bench' FROM"
         " generate_series(0, 49) i ON CONFLICT DO NOTHING;" + bench_plan_sql("ten_bench%"));

  // Seconds per round: COPY baselines, the writer (unrated, rated, rated with attribution)
  // and the rollup after each writer run.
  std::vector<double> plain_s, table_s, table_attr_s, ledger_s, rated_s, attr_s;
  std::vector<double> ledger_r, rated_r, attr_r;
  for (int round = 0; round < rounds; ++round) {
    const auto records = make_records(events, round, false);
    const auto attributed = make_records(events, round, true);
    std::string rows, attributed_rows;
    for (const auto& r : records) billing::append_usage_row(rows, r);
    for (const auto& r : attributed) billing::append_usage_row(attributed_rows, r);

    // Baseline 1: COPY into a table with no indexes.
    const double p = db.run(timed_copy(conn, "COPY bench_plain (" + cols + ") FROM STDIN", rows));
    // Baseline 2: COPY straight into usage_events (its partitions, key and indexes).
    const double t =
        db.run(timed_copy(conn, "COPY usage_events (" + cols + ") FROM STDIN", rows));
    db.sql("TRUNCATE usage_events");
    // Baseline 3: the same with the attribution columns filled (tags as their sets' ids, as
    // the writer stores them).
    const std::string tagged_rows = db.run(with_tag_set_ids(conn, attributed_rows));
    const double ta =
        db.run(timed_copy(conn, "COPY usage_events (" + cols + ") FROM STDIN", tagged_rows));
    if (p < 0 || t < 0 || ta < 0) return 1;
    plain_s.push_back(p);
    table_s.push_back(t);
    table_attr_s.push_back(ta);
    db.sql("TRUNCATE usage_events, bench_plain, usage_rollup");

    // The ledger writer, fed from this thread as the I/O threads feed it.
    const struct {
      bool rate;
      const std::vector<metering::usage_record>* rows;
      std::vector<double>* ingest;
      std::vector<double>* rollup;
    } runs[] = {{false, &records, &ledger_s, &ledger_r},
                {true, &records, &rated_s, &rated_r},
                {true, &attributed, &attr_s, &attr_r}};
    for (const auto& run : runs) {
      const auto [ingest, rollup] = writer_run(db, spool_dir, run.rate, *run.rows);
      if (ingest < 0) return 1;
      run.ingest->push_back(ingest);
      run.rollup->push_back(rollup);
    }
    std::fprintf(stderr,
                 "round %d: plain COPY %.3f s, COPY into usage_events %.3f s (attribution "
                 "filled %.3f s), ledger %.3f s (+ rollup %.3f s), rated %.3f s (+ %.3f s), "
                 "rated with attribution %.3f s (+ %.3f s)\n",
                 round + 1, p, t, ta, ledger_s.back(), ledger_r.back(), rated_s.back(),
                 rated_r.back(), attr_s.back(), attr_r.back());
  }
  db.sql("DROP TABLE bench_plain");
  std::filesystem::remove_all(spool_dir);

  const double n = static_cast<double>(events);
  const double plain = n / median(plain_s), table = n / median(table_s),
               table_attr = n / median(table_attr_s),
               ledger = n / median(ledger_s), rated = n / median(rated_s),
               attr = n / median(attr_s);
  // With the rollup brought up to date after the run, per round.
  std::vector<double> rated_all, attr_all;
  for (std::size_t i = 0; i < rated_s.size(); ++i) {
    rated_all.push_back(rated_s[i] + rated_r[i]);
    attr_all.push_back(attr_s[i] + attr_r[i]);
  }
  const double rated_with_rollup = n / median(rated_all), attr_with_rollup = n / median(attr_all);
  std::printf(
      "{\"events\":%zu,\"rounds\":%d,\"plain_copy_events_per_s\":%.0f,"
      "\"copy_into_usage_events_per_s\":%.0f,"
      "\"copy_into_usage_events_attributed_per_s\":%.0f,\"ledger_events_per_s\":%.0f,"
      "\"ledger_rated_events_per_s\":%.0f,\"ledger_rated_attributed_events_per_s\":%.0f,"
      "\"rated_with_rollup_events_per_s\":%.0f,"
      "\"rated_attributed_with_rollup_events_per_s\":%.0f,"
      "\"ledger_vs_plain_copy\":%.2f,\"ledger_vs_copy_into_usage_events\":%.2f,"
      "\"rated_vs_unrated_ledger\":%.2f,\"rated_vs_copy_into_usage_events\":%.2f,"
      "\"attributed_vs_empty_rated\":%.2f,\"attributed_vs_empty_rated_with_rollup\":%.2f}\n",
      events, rounds, plain, table, table_attr, ledger, rated, attr, rated_with_rollup,
      attr_with_rollup,
      ledger / plain, ledger / table, rated / ledger, rated / table, attr / rated,
      attr_with_rollup / rated_with_rollup);
  return 0;
}
