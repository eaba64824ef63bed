// The ledger writer: see ledger_writer.hpp.
#include "billing/ledger_writer.hpp"

#include <dirent.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <numeric>

#include "billing/ledger_record.hpp"
#include "billing/period_pricing.hpp"
#include "core/assert.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

// Sealed segments larger than this are not kept growing while the database is away, so that a
// replay reads the spool back in pieces of bounded size.
constexpr std::uint64_t spool_segment_bytes_max = 8ull << 20;
constexpr auto partition_check_interval = std::chrono::hours(1);
constexpr auto credit_expiry_interval = std::chrono::minutes(1);
constexpr auto reconnect_backoff_max = std::chrono::milliseconds(5000);
constexpr std::size_t settled_pairs_max = 100'000;  // the settled rollovers cache, then cleared
// Journal lanes at most (server.threads is at most 256, and two more); `lane-N` folders from
// this number on are not the gateway's and are left alone, with a warning.
constexpr std::size_t lane_folders_max = 1024;

// Whether an error is about the rows (data exceptions, class 22; integrity violations, class
// 23) rather than about the database being unavailable (shutdown 57P01, connection 08...,
// resources 53..., a statement timeout 57014), which is passing and retried.
bool refuses_rows(const pg::db_error& e) {
  if (e.connection_lost || e.sqlstate.size() != 5) return false;
  return e.sqlstate.compare(0, 2, "22") == 0 || e.sqlstate.compare(0, 2, "23") == 0;
}

// The numbers of the `lane-N` folders in `dir` from N = `from` on: lanes of a run that had
// more, whose segments must be replayed. Sorted.
std::vector<std::size_t> lane_folders_from(const std::string& dir, std::size_t from, logger& log) {
  std::vector<std::size_t> found;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return found;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name.size() <= 5 || name.substr(0, 5) != "lane-") continue;
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(name.data() + 5, name.data() + name.size(), n);
    if (ec != std::errc() || end != name.data() + name.size() || n < from) continue;
    if (n < lane_folders_max) {
      found.push_back(n);
    } else {
      json_object_writer f;
      f.add("folder", dir + "/" + std::string(name));
      log.warn("ledger: a lane folder beyond the most lanes a gateway has; not replayed", f);
    }
  }
  ::closedir(d);
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

ledger_writer::ledger_writer(net::any_io_executor ex, pg::connection_settings db,
                             ledger_settings settings, metrics::registry& registry, logger& log)
    : ex_(ex),
      settings_(std::move(settings)),
      log_(log),
      conn_(ex, db),
      rollup_conn_(ex, std::move(db)),
      queue_depth_(registry
                       .add_gauge("tollgate_ledger_queue_events",
                                  "Usage events queued in memory for the next ledger flush.")
                       .get()),
      events_written_(registry
                          .add_counter("tollgate_ledger_events_written_total",
                                       "Usage events committed to usage_events (duplicates "
                                       "skipped by ON CONFLICT are not counted).")
                          .get()),
      events_replayed_(registry
                           .add_counter("tollgate_ledger_events_replayed_total",
                                        "Usage events sent to PostgreSQL from the spool.")
                           .get()),
      flush_latency_(registry
                         .add_histogram("tollgate_ledger_flush_duration_seconds",
                                        "Time to write one batch of usage events.")
                         .get()),
      spool_bytes_(registry
                       .add_gauge("tollgate_ledger_spool_bytes",
                                  "Bytes in the ledger journal and spool on disk.")
                       .get()),
      spool_full_(registry
                      .add_gauge("tollgate_ledger_spool_full",
                                 "1 while the spool is over spool_bytes_max and requests are "
                                 "refused.")
                      .get()),
      failures_(registry.add_counter("tollgate_ledger_failures_total",
                                     "Ledger failures by stage (connect, write, spool).",
                                     {"stage"})),
      quarantined_(registry
                       .add_counter("tollgate_ledger_segments_quarantined_total",
                                    "Spool segments moved aside (damaged, or refused by the "
                                    "database); kept for an operator, never deleted.")
                       .get()),
      memory_only_(registry
                       .add_gauge("tollgate_ledger_memory_only_events",
                                  "Usage events the journal could not take, held in memory "
                                  "until PostgreSQL commits them.")
                       .get()),
      rollup_failures_(registry
                           .add_counter("tollgate_usage_rollup_failures_total",
                                        "Advances of the usage rollup that failed (reports stay "
                                        "exact; they read more events until one succeeds).")
                           .get()) {
  // Lane 0 is the spool folder itself (made by its spool), lane N its `lane-N` folder. The
  // appending lanes come first; lane folders of a run with more follow, to be replayed.
  appending_lanes_ = std::clamp<std::size_t>(settings_.journal_lanes, 1, lane_folders_max);
  lanes_.push_back(std::make_unique<lane>(settings_.spool_dir, settings_.spool_bytes_max));
  std::vector<std::size_t> folders(appending_lanes_ - 1);
  std::iota(folders.begin(), folders.end(), std::size_t{1});
  for (std::size_t n : lane_folders_from(settings_.spool_dir, appending_lanes_, log_)) {
    folders.push_back(n);
  }
  for (std::size_t n : folders) {
    lanes_.push_back(std::make_unique<lane>(settings_.spool_dir + "/lane-" + std::to_string(n),
                                            settings_.spool_bytes_max));
  }
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    for (std::uint64_t seq : lanes_[i]->spool.sealed()) {
      pending_.push_back(batch{{segment{i, seq}}, false, {}, 0});
    }
  }
  if (!pending_.empty()) {
    json_object_writer f;
    f.add("segments", static_cast<std::int64_t>(pending_.size()))
        .add("bytes", static_cast<std::int64_t>(spool_bytes()))
        .add("dir", settings_.spool_dir);
    log_.info("ledger spool found; it is replayed once the database answers", f);
  }
  update_gauges();
}

ledger_writer::~ledger_writer() = default;

void ledger_writer::start() {
  timer_ = std::make_unique<net::steady_timer>(ex_);
  stopped_ = std::make_unique<net::steady_timer>(ex_, clock::time_point::max());
  rollup_timer_ = std::make_unique<net::steady_timer>(ex_);
  rollup_stopped_ = std::make_unique<net::steady_timer>(ex_, clock::time_point::max());
  net::co_spawn(ex_, run(), net::detached);
  if (settings_.rollup_interval.count() > 0) {
    net::co_spawn(ex_, run_rollup(), net::detached);
  } else {
    rollup_stopped_.reset();
  }
}

net::awaitable<void> ledger_writer::stop() {
  stopping_ = true;
  timer_->cancel();
  co_await stopped_->async_wait(net::as_tuple(net::use_awaitable));
  if (rollup_stopped_) {
    rollup_timer_->cancel();
    co_await rollup_stopped_->async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> ledger_writer::run_rollup() {
  // Exactness does not depend on this loop (reports read the events above the watermark), only
  // how many events a report reads: a failure is counted and retried at the next interval.
  while (!stopping_) {
    rollup_timer_->expires_after(settings_.rollup_interval);
    co_await rollup_timer_->async_wait(net::as_tuple(net::use_awaitable));
    if (stopping_) break;
    if (!rollup_conn_.ok() && !co_await rollup_conn_.connect()) {
      rollup_failures_.inc();
      continue;
    }
    auto r = co_await rollup_conn_.query("SELECT tollgate_advance_usage_rollup()");
    if (!r) {
      rollup_failures_.inc();
      json_object_writer f;
      f.add("error", r.error().message);
      log_.warn("ledger: could not advance the usage rollup", f);
      if (!r.error().sqlstate.empty()) continue;
      rollup_conn_.close();
    }
  }
  rollup_stopped_->cancel();
}

std::size_t ledger_writer::lane_of_this_thread() const {
  static std::atomic<std::size_t> next_thread{0};
  thread_local const std::size_t thread_number =
      next_thread.fetch_add(1, std::memory_order_relaxed);
  return thread_number % appending_lanes_;
}

std::uint64_t ledger_writer::spool_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& l : lanes_) bytes += l->spool.bytes();
  return bytes;
}

void ledger_writer::record(const metering::usage_record& r) {
  if (r.tenant_id.empty()) return;
  std::string row;
  row.reserve(320);
  append_ledger_record(row, r);
  bool wake = false;
  bool journaled = false;
  {
    lane& l = *lanes_[lane_of_this_thread()];
    std::lock_guard lock(l.mu);
    if (l.spool.append(row)) {
      journaled = true;
      const std::uint64_t queued = queued_events_.fetch_add(1, std::memory_order_relaxed);
      if (queued >= settings_.queue_events_max) {
        // The database is slow: keep memory bounded; the row is in the journal.
        l.open_segment_on_disk_only = true;
      } else {
        l.queue += row;
      }
      ++l.queued;
      wake = queued + 1 >= settings_.flush_events_max;
    }
  }
  if (journaled) {
    journal_ok_.store(true, std::memory_order_relaxed);
  } else {
    keep_unjournaled(std::move(row), r.status != 200 && !r.usage_reported);
    wake = true;  // commit it from memory without waiting for the interval
  }
  if (wake && !wake_posted_.exchange(true)) {
    net::post(ex_, [this] {
      wake_posted_ = false;
      if (timer_) timer_->cancel();
    });
  }
}

void ledger_writer::keep_unjournaled(std::string row, bool refusal) {
  bool dropped = false;
  {
    std::lock_guard lock(unjournaled_mu_);
    if (refusal &&
        memory_only_events_.load(std::memory_order_relaxed) >= settings_.queue_events_max) {
      // A refusal (nothing to bill) while memory-only rows are at their bound: dropped, so
      // that a flood of refused requests cannot grow memory.
      dropped = true;
    } else {
      // The journal cannot take it (disk full, I/O error): the row stays in memory until
      // PostgreSQL commits it.
      unjournaled_ += row;
      ++unjournaled_events_;
      memory_only_events_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (dropped) failures_.with({"dropped_refusal"}).inc();
  failures_.with({"spool"}).inc();
  journal_ok_.store(false, std::memory_order_relaxed);
  update_accepting();
}

net::awaitable<void> ledger_writer::run() {
  for (;;) {
    timer_->expires_after(settings_.flush_interval);
    co_await timer_->async_wait(net::as_tuple(net::use_awaitable));
    co_await flush();
    if (stopping_) break;
  }
  if (const std::uint64_t lost = memory_only_events_.load(); lost > 0) {
    // Neither the journal nor the database took them before the end: nothing more can be done.
    json_object_writer f;
    f.add("events", static_cast<std::int64_t>(lost));
    log_.error("ledger: stopping with usage events that neither the journal nor the database "
               "could take; they are lost",
               f);
  }
  stopped_->cancel();
}

net::awaitable<bool> ledger_writer::ensure_connected() {
  if (conn_.ok()) co_return true;
  const auto now = clock::now();
  if (now < next_connect_) co_return false;
  auto r = co_await conn_.connect();
  if (r) {
    // Only a replayed batch uses it: a transaction that touches no temporary table skips
    // emptying them at its commit.
    r = co_await conn_.exec(
        "CREATE TEMP TABLE IF NOT EXISTS usage_staging "
        "(LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
  }
  if (!r) {
    failures_.with({"connect"}).inc();
    backoff_ = std::min<std::chrono::milliseconds>(
        std::max<std::chrono::milliseconds>(backoff_ * 2, std::chrono::milliseconds(100)),
        reconnect_backoff_max);
    next_connect_ = clock::now() + backoff_;
    if (!db_down_logged_) {
      db_down_logged_ = true;
      json_object_writer f;
      f.add("error", r.error().message).add("spool", settings_.spool_dir);
      log_.error("ledger: database unreachable; spooling usage events to disk", f);
    }
    co_return false;
  }
  backoff_ = std::chrono::milliseconds(0);
  if (db_down_logged_) {
    db_down_logged_ = false;
    json_object_writer f;
    f.add("spooled_segments", static_cast<std::int64_t>(pending_.size()));
    log_.info("ledger: database reachable again; replaying the spool", f);
  }
  co_return true;
}

net::awaitable<pg::db_result<std::int64_t>> ledger_writer::write_rows(const std::string& rows,
                                                                      bool may_repeat) {
  for (;;) {
    auto begin = co_await conn_.exec("BEGIN");
    if (!begin) co_return begin.error();
    auto stored = co_await rate_and_store(rows, may_repeat);
    if (stored) {
      auto commit = co_await conn_.exec("COMMIT");
      if (!commit) {
        tag_sets_.rollback();
        settling_.clear();
        co_return commit.error();
      }
      tag_sets_.commit();
      if (settled_.size() > settled_pairs_max) settled_.clear();  // only a cache
      settled_.merge(settling_);
      settling_.clear();
      co_return *stored;
    }
    tag_sets_.rollback();
    settling_.clear();
    if (conn_.ok()) co_await conn_.exec("ROLLBACK");
    // A fresh batch holding a row that is stored already (a commit whose answer was lost,
    // then replayed): do it again, dropping the rows that are there.
    if (may_repeat || stored.error().sqlstate != "23505") co_return stored.error();
    may_repeat = true;
  }
}

void ledger_writer::journal_again(batch& b) {
  // Only where an fsync works: rows appended but not made durable would stay in memory and be
  // appended again at every flush.
  lane& l = *lanes_.front();
  if (!journal_ok_.load(std::memory_order_relaxed) || !l.spool.sync_open()) return;
  std::string kept;
  std::uint64_t kept_events = 0;
  std::uint64_t journaled = 0;
  {
    std::lock_guard lock(l.mu);
    for_each_ledger_line(b.rows, [&](std::string_view line) {
      std::string record(line);
      record.push_back('\n');
      if (l.spool.append(record)) {
        ++journaled;
      } else {
        kept += record;
        ++kept_events;
      }
    });
    // The open segment now holds rows that are not in the lane's queue.
    if (journaled > 0) l.open_segment_on_disk_only = true;
  }
  if (journaled > 0 && !l.spool.sync_open()) {
    failures_.with({"spool"}).inc();
    return;  // not durable: the rows stay in memory as well (a replay is idempotent)
  }
  memory_only_events_.fetch_sub(journaled, std::memory_order_relaxed);
  b.rows.swap(kept);
  b.events = kept_events;
}

void ledger_writer::spool_pending() {
  // The batches in memory are in their sealed segments: make those durable, then drop the
  // copies. Memory-only rows are journaled again where the disk takes them.
  std::deque<batch> spooled;
  for (auto& b : pending_) {
    if (!b.in_memory) {
      spooled.push_back(std::move(b));
      continue;
    }
    if (b.segments.empty()) {
      journal_again(b);
      if (!b.rows.empty()) spooled.push_back(std::move(b));
      continue;
    }
    const bool durable = std::all_of(b.segments.begin(), b.segments.end(), [&](const segment& s) {
      return lanes_[s.lane]->spool.sync(s.seq);
    });
    if (!durable) {
      failures_.with({"spool"}).inc();
      spooled.push_back(std::move(b));  // not durable: keep the copy in memory
      continue;
    }
    // Durable: each segment is read back on its own once the database answers.
    for (const segment& s : b.segments) spooled.push_back(batch{{s}, false, {}, 0});
  }
  pending_.swap(spooled);
}

void ledger_writer::keep_until_synced(std::size_t lane_index, std::uint64_t seq, std::string tail) {
  // The segment was sealed while the database is away, its rows on disk only, but the rows
  // journaled since the last group commit are not fsynced yet: fsync it now (nothing appends to
  // a sealed segment), or keep those rows in memory until PostgreSQL commits them.
  if (lanes_[lane_index]->spool.sync(seq)) return;
  failures_.with({"spool"}).inc();
  if (tail.empty()) return;  // rows over queue_events_max: on disk only, and not durable
  std::uint64_t events = 0;
  for_each_ledger_line(tail, [&](std::string_view) { ++events; });
  memory_only_events_.fetch_add(events, std::memory_order_relaxed);
  pending_.push_back(batch{{}, true, std::move(tail), events});
}

net::awaitable<void> ledger_writer::flush() {
  if (!journal_ok_.load(std::memory_order_relaxed) && lanes_.front()->spool.probe()) {
    // The journal takes a write again (a real one, cut off at once): let requests and the
    // memory-only rows use it. An append that still fails turns this back off.
    journal_ok_.store(true, std::memory_order_relaxed);
  }
  const bool db = co_await ensure_connected();
  database_ok_.store(db, std::memory_order_relaxed);
  // Seal each lane's open segment (always while the database answers; at a bounded size while
  // it is away) and take the rows in memory with it: those of all lanes make one batch, a
  // segment whose rows left memory a batch of its own.
  batch sealed{{}, true, {}, 0};
  std::vector<std::string> taken;  // the lanes' queues, joined once their locks are released
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    lane& l = *lanes_[i];
    std::string tail;  // rows of a segment on disk only, journaled since its last fsync
    std::uint64_t seq = 0;
    bool disk_only = false;
    {
      std::lock_guard lock(l.mu);
      const bool seal = db || l.spool.open_bytes() >= spool_segment_bytes_max || l.spool.broken();
      seq = seal ? l.spool.seal() : 0;
      if (seq == 0) continue;
      queued_events_.fetch_sub(l.queued, std::memory_order_relaxed);
      disk_only = l.open_segment_on_disk_only;
      if (disk_only) {
        pending_.push_back(batch{{segment{i, seq}}, false, {}, l.queued});
        tail.swap(l.queue);
      } else {
        sealed.segments.push_back(segment{i, seq});
        sealed.events += l.queued;
        taken.emplace_back().swap(l.queue);
      }
      l.queued = 0;
      l.open_segment_on_disk_only = false;
    }
    if (disk_only && !db) keep_until_synced(i, seq, std::move(tail));
  }
  if (!sealed.segments.empty()) {
    sealed.rows = taken.size() == 1 ? std::move(taken.front()) : std::string();
    if (taken.size() > 1) {
      std::size_t bytes = 0;
      for (const auto& t : taken) bytes += t.size();
      sealed.rows.reserve(bytes);
      for (const auto& t : taken) sealed.rows += t;
    }
    pending_.push_back(std::move(sealed));
  }
  {
    std::lock_guard lock(unjournaled_mu_);
    if (!unjournaled_.empty()) {
      pending_.push_back(batch{{}, true, std::move(unjournaled_), unjournaled_events_});
      unjournaled_.clear();
      unjournaled_events_ = 0;
    }
  }
  if (!db) {
    // Group commit to the spool: everything journaled so far becomes durable, and only then
    // leaves memory (rows journaled while the fsync ran stay until the next one).
    bool synced_all = true;
    for (const auto& lp : lanes_) {
      lane& l = *lp;
      std::size_t before_sync = 0;
      {
        std::lock_guard lock(l.mu);
        before_sync = l.queue.size();
      }
      const bool synced = l.spool.sync_open();
      synced_all = synced_all && synced;
      if (synced) {
        std::lock_guard lock(l.mu);
        l.queue.erase(0, std::min(before_sync, l.queue.size()));
        l.open_segment_on_disk_only = true;
      }
    }
    if (!synced_all) failures_.with({"spool"}).inc();
    spool_pending();
    update_gauges();
    co_return;
  }
  co_await housekeeping();
  while (!pending_.empty() && conn_.ok()) {
    if (!co_await write_front()) break;
  }
  update_gauges();
}

net::awaitable<void> ledger_writer::housekeeping() {
  if (clock::now() >= next_partition_check_) {
    next_partition_check_ = clock::now() + partition_check_interval;
    auto r = co_await conn_.query(
        "SELECT tollgate_ensure_usage_partitions((now() AT TIME ZONE 'UTC')::date, 4)");
    if (!r) {
      json_object_writer f;
      f.add("error", r.error().message);
      log_.warn("ledger: could not create usage_events partitions ahead", f);
    }
  }
  if (clock::now() >= next_credit_expiry_) {
    // Expired credit moves to breakage (sql/010_credits.sql), within a minute of expiring.
    next_credit_expiry_ = clock::now() + credit_expiry_interval;
    auto r = co_await conn_.query("SELECT tollgate_expire_credits(now())");
    if (!r) {
      json_object_writer f;
      f.add("error", r.error().message);
      log_.warn("ledger: could not expire credit grants", f);
    }
  }
}

// Moves a segment aside for an operator: its rows cannot all be replayed.
void ledger_writer::quarantine(const segment& s, const char* why, const std::string& detail) {
  const std::string kept = lanes_[s.lane]->spool.quarantine(s.seq, why);
  quarantined_.inc();
  json_object_writer f;
  f.add("segment", static_cast<std::int64_t>(s.seq)).add("path", kept).add("detail", detail);
  log_.error(std::string("ledger: spool segment moved aside (") + why + "); it is kept for an "
                 "operator and not replayed again",
             f);
}

net::awaitable<bool> ledger_writer::write_front() {
  batch& b = pending_.front();
  std::string from_disk;
  std::uint64_t events = b.events;
  bool damaged = false;
  if (!b.in_memory) {
    // A batch read back from disk has one segment (flush and spool_pending make them so).
    TOLLGATE_ASSERT(b.segments.size() == 1);
    bool io_error = false;
    const segment& s = b.segments.front();
    lane& l = *lanes_[s.lane];
    const auto records = l.spool.read(s.seq, damaged, &io_error);
    if (io_error) {
      // Nothing is known about its content: keep it and read it again at the next flush.
      failures_.with({"spool"}).inc();
      json_object_writer f;
      f.add("segment", static_cast<std::int64_t>(s.seq)).add("dir", l.spool.dir());
      log_.error("ledger: a spool segment cannot be read now; it is kept and read again", f);
      co_return false;
    }
    for (const auto& rec : records) from_disk += rec;
    events = records.size();
  }
  const auto started = clock::now();
  auto written = co_await write_rows(b.in_memory ? b.rows : from_disk, !b.in_memory);
  if (!written) {
    failures_.with({"write"}).inc();
    json_object_writer f;
    f.add("error", written.error().message).add("events", static_cast<std::int64_t>(events));
    log_.error("ledger: writing usage events failed; they stay in the spool", f);
    if (refuses_rows(written.error())) {
      // The database refused the rows themselves (it should never happen: the gateway
      // writes them). Keep them for an operator rather than block the ledger.
      if (b.segments.empty()) {
        // Rows that never reached the journal: try once more to put them on disk aside.
        const std::string kept = lanes_.front()->spool.keep_aside(b.rows);
        json_object_writer q;
        q.add("path", kept).add("error", written.error().message);
        // Where not even that file can be written, the rows themselves go to the log.
        if (kept.empty()) q.add("rows", b.rows);
        log_.error("ledger: the database refused rows held in memory; written aside", q);
        memory_only_events_.fetch_sub(b.events, std::memory_order_relaxed);
      } else {
        for (const segment& s : b.segments) quarantine(s, "rejected", written.error().message);
      }
      pending_.pop_front();
      co_return true;
    }
    // Anything else (the server shutting down, a timeout, a lost connection) is passing:
    // start over on a fresh connection at the next flush; the rows stay in the spool.
    conn_.close();
    database_ok_.store(false, std::memory_order_relaxed);
    spool_pending();  // rebuilds pending_: `b` is not valid after it
    co_return false;
  }
  flush_latency_.observe_us(
      std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count());
  events_written_.inc(static_cast<std::uint64_t>(*written));
  if (!b.in_memory) events_replayed_.inc(events);
  if (!corrections_.empty() && corrections_listener_) {
    corrections_listener_(std::move(corrections_));
    corrections_.clear();
  }
  if (b.segments.empty()) {
    memory_only_events_.fetch_sub(b.events, std::memory_order_relaxed);
  } else if (damaged) {
    // Replayed up to the damage; what follows it cannot be read, so the file is kept.
    quarantine(b.segments.front(), "damaged",
               std::to_string(events) + " records replayed before the damage");
  } else {
    for (const segment& s : b.segments) lanes_[s.lane]->spool.remove(s.seq);
  }
  pending_.pop_front();
  co_return true;
}

void ledger_writer::update_accepting() {
  // One at a time: an I/O thread and the billing thread must not apply answers computed from
  // different inputs in the opposite order.
  std::lock_guard lock(accepting_mu_);
  const std::uint64_t spooled = spool_bytes();
  const bool full = spooled >= settings_.spool_bytes_max;
  const bool recordable = journal_ok_.load(std::memory_order_relaxed) ||
                          database_ok_.load(std::memory_order_relaxed);
  const bool memory_bound =
      memory_only_events_.load(std::memory_order_relaxed) >= settings_.queue_events_max;
  const bool accepting = !full && recordable && !memory_bound;
  if (accepting_.exchange(accepting) == accepting) return;
  spool_full_.set(full ? 1 : 0);
  json_object_writer f;
  f.add("spool_bytes", static_cast<std::int64_t>(spooled))
      .add("spool_bytes_max", static_cast<std::int64_t>(settings_.spool_bytes_max))
      .add("journal_ok", journal_ok_.load())
      .add("database_ok", database_ok_.load())
      .add("memory_only_events", static_cast<std::int64_t>(memory_only_events_.load()));
  if (!accepting) {
    log_.error("ledger: usage cannot be recorded safely (journal and database unavailable, or "
               "the spool full); new requests are refused with 503",
               f);
  } else {
    log_.info("ledger: usage can be recorded again; taking requests", f);
  }
}

void ledger_writer::update_gauges() {
  std::uint64_t queued = queued_events_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(unjournaled_mu_);
    queued += unjournaled_events_;
  }
  queue_depth_.set(static_cast<std::int64_t>(queued));
  spool_bytes_.set(static_cast<std::int64_t>(spool_bytes()));
  memory_only_.set(static_cast<std::int64_t>(memory_only_events_.load()));
  update_accepting();
}

}  // namespace tollgate::billing
