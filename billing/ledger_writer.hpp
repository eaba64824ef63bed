// The ledger writer: the usage sink that makes every authenticated request's usage a row of
// usage_events in PostgreSQL, exactly once.
//   record() (I/O threads): encode the row (COPY text), append it to the spool journal, queue it.
//   The journal has lanes: a spool each (the spool folder, and `lane-N` folders in it), with
//   their own lock, open segment and queue. A thread keeps the lane it first got, so the I/O
//   threads append without waiting for each other's write(2).
//   flush loop (the billing thread, every flush_interval_ms or once flush_events_max events are
//   queued in all lanes): seal each lane's journal segment, then in one transaction rate the
//   batch's events on the period accumulators (billing/rating.hpp; the accumulator rows locked,
//   updated once per batch), pay what they cost from the tenants' credit grants
//   (billing/credits.hpp, double entry) and COPY them with their cost and credit into usage_events;
//   then delete the segments. A batch that may hold rows already stored (a spool replay, or a COPY
//   refused for a duplicate) first goes through a staging table to find and drop those rows, so
//   that they are neither stored nor rated twice: the request id makes it idempotent.
// Every rollup_interval, on a second connection, it advances the usage rollup: the sums per
// tenant, day, month, end user and tag that usage reports read (docs/LEDGER.md).
// While PostgreSQL is unreachable the journal is fsynced each interval and kept (the spool);
// on reconnect, and after a restart, it is replayed and deleted only once committed.
// Nothing answered is lost, and nothing is answered that cannot be recorded:
//   - a row leaves memory only once PostgreSQL committed it, or once its journal segment is
//     fsynced (the spool);
//   - a row the journal cannot take (disk full, I/O error) stays in memory and goes to
//     PostgreSQL from there; while the database is away it is journaled again as soon as the
//     disk takes it;
//   - while neither the journal nor the database takes rows, or memory-only rows reach
//     queue_events_max, or the spool is over spool_bytes_max, accepting() is false and the
//     gateway answers new requests 503;
//   - a segment whose records end in damage (a torn write, a crash mid-append) is replayed up
//     to the damage and then moved aside (`.damaged`), counted and logged, never deleted.
// Journal records carry a format version (billing/ledger_record.hpp).
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "billing/allowance_rollover.hpp"
#include "billing/credits.hpp"
#include "billing/pg.hpp"
#include "billing/rating.hpp"
#include "billing/rating_plans.hpp"
#include "billing/spool.hpp"
#include "billing/tag_sets.hpp"
#include "billing/token_bundles.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "metering/usage.hpp"

namespace tollgate::billing {

struct ledger_settings {
  std::chrono::milliseconds flush_interval{50};
  std::uint64_t flush_events_max = 10'000;     // flush early once this many are queued
  std::uint64_t queue_events_max = 200'000;    // beyond this, queued rows live on disk only
  std::string spool_dir;                       // the journal/spool folder
  std::uint64_t spool_bytes_max = 1ull << 30;  // past this the gateway stops taking requests
  // Journal lanes that take appends (at least one). Lane folders found on disk beyond these,
  // from a run with more, are replayed and take no appends.
  std::size_t journal_lanes = 4;
  bool rate_events = true;  // price each event as it is stored (billing/rating.hpp)
  // How often the usage rollup is advanced (sql/015_usage_rollup.sql), on a connection of its
  // own so that flushes never wait for it; 0: never (another gateway does it).
  std::chrono::milliseconds rollup_interval{2000};
};

// The usage_events columns a ledger row carries, in COPY order. The journal's lines hold the
// tags (JSON) where this names tag_set_id: the writer swaps them (billing/tag_sets.hpp).
extern const char* const usage_event_columns;

// A rated event's spend counter in Redis and what to add to it: billed minus settled.
struct spend_correction {
  std::string tenant_id;
  std::string counter;  // the Redis key the settlement counted on
  std::int64_t delta = 0;
};
using spend_correction_listener = std::function<void(std::vector<spend_correction>)>;

struct ledger_record;  // billing/ledger_record.hpp

// Appends `r` as one line of COPY text format (tab-separated, \N for NULL, ending in '\n'),
// with its tags as JSON in tag_set_id's place (the journal's form).
void append_usage_row(std::string& out, const metering::usage_record& r);

class ledger_writer final : public metering::usage_sink {
 public:
  ledger_writer(boost::asio::any_io_executor ex, pg::connection_settings db,
                ledger_settings settings, metrics::registry& registry, logger& log);
  ~ledger_writer() override;

  // Starts the flush loop on the executor given at construction.
  void start();
  // Stops the loop after one last flush; completes when it has stopped (runs on the executor).
  boost::asio::awaitable<void> stop();

  // Records without a tenant (unauthenticated requests) are not ledger rows and are ignored.
  void record(const metering::usage_record& r) override;
  // False while the ledger could not record a request: neither the journal nor the database
  // takes rows, memory-only rows are at their bound, or the spool is over its size limit. The
  // gateway then refuses new requests (503) rather than serve requests it could not bill.
  bool accepting() const { return accepting_.load(std::memory_order_relaxed); }
  // Called on the billing thread after each commit with the spend corrections of the events
  // it rated (set before start()).
  void on_spend_corrections(spend_correction_listener f) { corrections_listener_ = std::move(f); }

 private:
  // What a token bundle paid of an event.
  struct bundle_paid {
    std::string grant_id;
    int token_class = tc_input;
    std::int64_t tokens = 0;
    std::int64_t amount_micros = 0;
    bool pooled = false;  // counted in the coverage pools (token_bundle::pooled)
  };
  std::vector<std::vector<bundle_paid>> bundle_paid_;  // per event of the batch being rated

  struct segment {
    std::size_t lane = 0;  // whose spool holds it
    std::uint64_t seq = 0;
  };
  // One transaction's rows: the segments one flush sealed (in memory), or one segment to read
  // back (a replay), or rows the journal could not take (no segment, in memory only).
  struct batch {
    std::vector<segment> segments;
    bool in_memory = false;   // false: read it back from its one segment
    std::string rows;         // journal records (billing/ledger_record.hpp), '\n'-separated
    std::uint64_t events = 0;
  };

  boost::asio::awaitable<void> run();
  // Advances the usage rollup every rollup_interval until stopped.
  boost::asio::awaitable<void> run_rollup();
  boost::asio::awaitable<void> flush();
  boost::asio::awaitable<bool> ensure_connected();
  // Commits `rows` in one transaction; `may_repeat` (a spool replay) first drops the rows
  // already stored. Returns the number of rows stored.
  boost::asio::awaitable<pg::db_result<std::int64_t>> write_rows(const std::string& rows,
                                                                 bool may_repeat);
  // The body of write_rows' transaction.
  boost::asio::awaitable<pg::db_result<std::int64_t>> rate_and_store(const std::string& rows,
                                                                     bool may_repeat);
  // Rates `events` (null: a row that is not rated) by `plans` (per event, the plan of its
  // period, or null) on the accumulators in PostgreSQL: locks them, rates in order, writes
  // them back. Fills `rated`, aligned with `events`. Before rating an event it draws the
  // tokens its tenant's token bundles pay for (billing/token_bundles.hpp; their accounts
  // locked after the accumulators), into bundle_paid_; the event's cost includes what the
  // bundles pay. `covers`: per event, what its hold counted on the coverage pools, if it did
  // (pooled bundles pay at most that).
  boost::asio::awaitable<pg::db_result<bool>> rate_batch(
      const std::vector<std::optional<rating_event>>& events,
      const std::vector<const rating_plan*>& plans,
      const std::map<std::string, plan_history>& histories,
      const std::vector<std::optional<pooled_cover>>& covers,
      std::vector<std::optional<rated_event>>& rated);
  // Token banking (billing/allowance_rollover.hpp): makes the rollover grants that rating
  // settled in this batch, before their draws are booked.
  boost::asio::awaitable<pg::db_result<bool>> make_rollover_grants(
      const std::vector<rollover_grant>& grants);
  // Locks the accounts of the token bundles with tokens left of the events' tenants, in
  // drawdown order, and returns them by tenant.
  boost::asio::awaitable<pg::db_result<std::map<std::string, std::vector<token_bundle>>>>
  lock_bundles(const std::vector<std::optional<rating_event>>& events);
  // Pays the rated events' costs from their tenants' credit grants (billing/credits.hpp): locks
  // the grants' accounts, draws for the events in order, and books one drawdown transfer per
  // tenant and period, with the bundles' draws (bundle_paid_). Fills `credit` (what credit
  // and bundles paid of each event), aligned with `events`.
  boost::asio::awaitable<pg::db_result<bool>> draw_credits(
      const std::vector<std::optional<rating_event>>& events,
      const std::vector<std::optional<rated_event>>& rated, std::vector<std::int64_t>& credit);
  void collect_corrections(const std::vector<std::optional<rating_event>>& events,
                           const std::vector<const rating_plan*>& plans,
                           const std::vector<ledger_record>& headers,
                           const std::vector<std::optional<rated_event>>& rated,
                           const std::vector<std::int64_t>& credit);
  void collect_cover_corrections(const rating_event& e, const rating_plan* plan,
                                 const ledger_record& h, const std::vector<bundle_paid>& paid);
  // The database is away: makes the batches in memory durable in the spool where the disk
  // takes them (fsynced segments, or memory-only rows journaled again).
  void spool_pending();
  // Journals the rows of a memory-only batch; those the disk takes leave memory.
  void journal_again(batch& b);
  // fsyncs lane `lane_index`'s segment `seq`, sealed on disk only while the database is away;
  // if that fails, its `tail` (rows journaled since the last fsync) stays in memory.
  void keep_until_synced(std::size_t lane_index, std::uint64_t seq, std::string tail);
  // Sends the batch at the front to PostgreSQL; false when the database is away.
  boost::asio::awaitable<bool> write_front();
  // Partitions ahead and credit expiry, checked on every flush that reaches the database.
  boost::asio::awaitable<void> housekeeping();
  void quarantine(const segment& s, const char* why, const std::string& detail);
  // A row the journal did not take: kept in memory until committed, or dropped if it is a
  // refusal while memory-only rows are at their bound.
  void keep_unjournaled(std::string row, bool refusal);
  // The lane this thread appends to (assigned on its first record, round robin).
  std::size_t lane_of_this_thread() const;
  std::uint64_t spool_bytes() const;  // all lanes
  void update_gauges();
  void update_accepting();

  boost::asio::any_io_executor ex_;
  ledger_settings settings_;
  logger& log_;

  // A journal lane. The billing thread takes `mu` to seal the lane and take its queue.
  struct lane {
    lane(std::string dir, std::uint64_t bytes_max) : spool(std::move(dir), bytes_max) {}
    std::mutex mu;
    billing::spool spool;
    std::string queue;  // rows journaled in the open segment (unless on disk only)
    std::uint64_t queued = 0;
    bool open_segment_on_disk_only = false;  // queued rows were dropped from memory
  };
  std::vector<std::unique_ptr<lane>> lanes_;
  std::size_t appending_lanes_ = 1;  // the first lanes_; the others are only replayed
  // Rows queued in all lanes' open segments (what flush_events_max and queue_events_max bound).
  std::atomic<std::uint64_t> queued_events_{0};
  pg::connection conn_;
  tag_set_ids tag_sets_;  // of conn_'s database; used by rate_and_store
  // Token banking: the (tenant, period) pairs whose earlier periods' rollovers are settled, so
  // their accumulators need not be locked again; those of the open transaction wait in
  // settling_ until it commits.
  std::set<std::pair<std::string, std::string>> settled_, settling_;
  std::chrono::steady_clock::time_point next_connect_{};
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_partition_check_{};
  std::chrono::steady_clock::time_point next_credit_expiry_{};
  bool db_down_logged_ = false;
  bool stopping_ = false;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::unique_ptr<boost::asio::steady_timer> stopped_;
  pg::connection rollup_conn_;
  std::unique_ptr<boost::asio::steady_timer> rollup_timer_;
  std::unique_ptr<boost::asio::steady_timer> rollup_stopped_;

  // Shared with record() on the I/O threads.
  std::mutex unjournaled_mu_;
  std::string unjournaled_;  // rows the journal could not take: in memory only
  std::uint64_t unjournaled_events_ = 0;
  std::atomic<bool> wake_posted_{false};
  std::atomic<bool> accepting_{true};
  std::mutex accepting_mu_;  // serializes update_accepting()
  std::atomic<bool> journal_ok_{true};   // the last append to the journal succeeded
  std::atomic<bool> database_ok_{true};  // the last flush reached the database
  std::atomic<std::uint64_t> memory_only_events_{0};  // unjournaled_ + memory-only batches
  std::vector<spend_correction> corrections_;  // of the transaction being written
  spend_correction_listener corrections_listener_;

  std::deque<batch> pending_;  // sealed segments not yet committed, oldest first
  rating_plan_loader plans_{&log_};  // the tenants' plans, version prices parsed once

  metrics::gauge& queue_depth_;
  metrics::counter& events_written_;
  metrics::counter& events_replayed_;
  metrics::latency_histogram& flush_latency_;
  metrics::gauge& spool_bytes_;
  metrics::gauge& spool_full_;
  metrics::family<metrics::counter>& failures_;
  metrics::counter& quarantined_;
  metrics::gauge& memory_only_;
  metrics::counter& rollup_failures_;
};

}  // namespace tollgate::billing
