// The ledger writer: see ledger_writer.hpp.
#include "billing/ledger_writer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>

#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

// Sealed segments larger than this are not kept growing while the database is away, so that a
// replay reads the spool back in pieces of bounded size.
constexpr std::uint64_t spool_segment_bytes_max = 8ull << 20;
constexpr auto partition_check_interval = std::chrono::hours(1);
constexpr auto reconnect_backoff_max = std::chrono::milliseconds(5000);

// Text fields come from requests (a model name the gateway does not serve, say): they are
// capped and stripped of NUL, which PostgreSQL text cannot hold.
constexpr std::size_t text_field_bytes_max = 256;

void add_text(std::string& out, std::string_view v) {
  if (v.size() > text_field_bytes_max) {
    v = v.substr(0, text_field_bytes_max);
    // Do not end inside a UTF-8 sequence: drop a trailing partial character.
    while (!v.empty() && (static_cast<unsigned char>(v.back()) & 0xC0) == 0x80) v.remove_suffix(1);
    if (!v.empty() && static_cast<unsigned char>(v.back()) >= 0xC0) v.remove_suffix(1);
  }
  if (v.find('\0') == std::string_view::npos) {
    pg::append_copy_text(out, v);
  } else {
    std::string clean(v);
    std::erase(clean, '\0');
    pg::append_copy_text(out, clean);
  }
  out.push_back('\t');
}
void add_opt_text(std::string& out, std::string_view v) {
  if (v.empty()) {
    out += "\\N\t";
  } else {
    add_text(out, v);
  }
}
void add_int(std::string& out, std::int64_t v) {
  out += std::to_string(v);
  out.push_back('\t');
}
void add_opt_int(std::string& out, std::int64_t v) {  // negative = NULL
  if (v < 0) {
    out += "\\N\t";
  } else {
    add_int(out, v);
  }
}
void add_bool(std::string& out, bool v) { out += v ? "t\t" : "f\t"; }

void add_timestamp(std::string& out, std::int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00\t", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  out += buf;
}

// Whether an error is about the rows (data exceptions, class 22; integrity violations, class
// 23) rather than about the database being unavailable (shutdown 57P01, connection 08...,
// resources 53..., a statement timeout 57014), which is passing and retried.
bool refuses_rows(const pg::db_error& e) {
  if (e.connection_lost || e.sqlstate.size() != 5) return false;
  return e.sqlstate.compare(0, 2, "22") == 0 || e.sqlstate.compare(0, 2, "23") == 0;
}

}  // namespace

const char* const usage_event_columns =
    "tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream, "
    "stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens, "
    "reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, usage_reported, "
    "estimated, latency_us, ttft_us, client_disconnected, error_code, client_request_id";

void append_usage_row(std::string& out, const metering::usage_record& r) {
  add_text(out, r.tenant_id);
  add_timestamp(out, r.occurred_at_ms);
  add_text(out, r.request_id);
  add_opt_text(out, r.project_id);
  add_opt_text(out, r.api_key_id);
  add_text(out, r.endpoint);
  add_text(out, r.model);
  add_text(out, r.upstream);
  add_bool(out, r.stream);
  add_bool(out, r.batch);
  add_int(out, r.status);
  add_int(out, r.prompt_tokens);
  add_int(out, r.cached_tokens);
  add_int(out, r.completion_tokens);
  add_int(out, r.reasoning_tokens);
  add_opt_int(out, r.counted_prompt_tokens);
  add_opt_int(out, r.counted_completion_tokens);
  add_bool(out, r.usage_reported);
  add_bool(out, r.estimated);
  add_int(out, r.latency_us);
  add_opt_int(out, r.ttft_us);
  add_bool(out, r.client_disconnected);
  add_opt_text(out, r.error_code);
  add_opt_text(out, r.client_request_id);
  out.back() = '\n';
}

ledger_writer::ledger_writer(net::any_io_executor ex, pg::connection_settings db,
                             ledger_settings settings, metrics::registry& registry, logger& log)
    : ex_(ex),
      settings_(std::move(settings)),
      log_(log),
      spool_(settings_.spool_dir, settings_.spool_bytes_max),
      conn_(ex, std::move(db)),
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
                                     {"stage"})) {
  for (std::uint64_t seq : spool_.sealed()) pending_.push_back(batch{seq, false, {}, 0});
  if (!pending_.empty()) {
    json_object_writer f;
    f.add("segments", static_cast<std::int64_t>(pending_.size()))
        .add("bytes", static_cast<std::int64_t>(spool_.bytes()))
        .add("dir", spool_.dir());
    log_.info("ledger spool found; it is replayed once the database answers", f);
  }
  update_gauges();
}

ledger_writer::~ledger_writer() = default;

void ledger_writer::start() {
  timer_ = std::make_unique<net::steady_timer>(ex_);
  stopped_ = std::make_unique<net::steady_timer>(ex_, clock::time_point::max());
  net::co_spawn(ex_, run(), net::detached);
}

net::awaitable<void> ledger_writer::stop() {
  stopping_ = true;
  timer_->cancel();
  co_await stopped_->async_wait(net::as_tuple(net::use_awaitable));
}

void ledger_writer::record(const metering::usage_record& r) {
  if (r.tenant_id.empty()) return;
  std::string row;
  row.reserve(320);
  append_usage_row(row, r);
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    const bool journaled = spool_.append(row);
    if (!journaled) failures_.with({"spool"}).inc();
    if (journaled && queued_ >= settings_.queue_events_max) {
      // The database is slow: keep memory bounded; the row is in the journal.
      open_segment_on_disk_only_ = true;
    } else {
      queue_ += row;
    }
    ++queued_;
    wake = queued_ >= settings_.flush_events_max;
  }
  if (wake && !wake_posted_.exchange(true)) {
    net::post(ex_, [this] {
      wake_posted_ = false;
      if (timer_) timer_->cancel();
    });
  }
}

net::awaitable<void> ledger_writer::run() {
  for (;;) {
    timer_->expires_after(settings_.flush_interval);
    co_await timer_->async_wait(net::as_tuple(net::use_awaitable));
    co_await flush();
    if (stopping_) break;
  }
  stopped_->cancel();
}

net::awaitable<bool> ledger_writer::ensure_connected() {
  if (conn_.ok()) co_return true;
  const auto now = clock::now();
  if (now < next_connect_) co_return false;
  auto r = co_await conn_.connect();
  if (r) {
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
      f.add("error", r.error().message).add("spool", spool_.dir());
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
  static const std::string direct_sql =
      std::string("COPY usage_events (") + usage_event_columns + ") FROM STDIN";
  static const std::string copy_sql =
      std::string("COPY usage_staging (") + usage_event_columns + ") FROM STDIN";
  static const std::string insert_sql = std::string("INSERT INTO usage_events (") +
                                        usage_event_columns + ") SELECT " + usage_event_columns +
                                        " FROM usage_staging ON CONFLICT DO NOTHING";
  if (!may_repeat) {
    // Fresh events: one COPY straight into usage_events, atomic on its own. Should any row
    // exist already (a commit whose answer was lost, then replayed), the COPY fails as a whole
    // with a unique violation and the batch takes the idempotent path below.
    auto direct = co_await conn_.copy_in(direct_sql, rows);
    if (direct) co_return *direct;
    if (direct.error().sqlstate != "23505") co_return direct.error();
  }
  auto begin = co_await conn_.exec("BEGIN");
  if (!begin) co_return begin.error();
  auto copied = co_await conn_.copy_in(copy_sql, rows);
  std::int64_t inserted = 0;
  std::optional<pg::db_error> error;
  if (!copied) {
    error = copied.error();
  } else {
    auto ins = co_await conn_.query(insert_sql);
    if (!ins) {
      error = ins.error();
    } else {
      inserted = ins->affected();
      auto commit = co_await conn_.exec("COMMIT");
      if (!commit) error = commit.error();
    }
  }
  if (error) {
    if (conn_.ok()) co_await conn_.exec("ROLLBACK");
    co_return *error;
  }
  co_return inserted;
}

void ledger_writer::spool_pending() {
  // The batches in memory are in their sealed segments: make those durable and drop the copies.
  for (auto& b : pending_) {
    if (b.in_memory) {
      if (!spool_.sync(b.seq)) failures_.with({"spool"}).inc();
      b.in_memory = false;
      b.rows.clear();
      b.rows.shrink_to_fit();
    }
  }
}

net::awaitable<void> ledger_writer::flush() {
  const bool db = co_await ensure_connected();
  if (!db) {
    // Group commit to the spool: everything journaled so far becomes durable; the copies in
    // memory are dropped. The open segment keeps growing up to a bounded size.
    std::uint64_t sealed = 0;
    {
      std::lock_guard lock(mu_);
      queue_.clear();
      queued_ = 0;
      open_segment_on_disk_only_ = true;
      if (spool_.open_bytes() >= spool_segment_bytes_max) sealed = spool_.seal();
    }
    if (sealed != 0) {
      if (!spool_.sync(sealed)) failures_.with({"spool"}).inc();
      pending_.push_back(batch{sealed, false, {}, 0});
    } else if (!spool_.sync_open()) {
      failures_.with({"spool"}).inc();
    }
    spool_pending();
    update_gauges();
    co_return;
  }

  {
    std::lock_guard lock(mu_);
    const std::uint64_t seq = spool_.seal();
    if (seq != 0) {
      batch b{seq, !open_segment_on_disk_only_, {}, queued_};
      if (b.in_memory) b.rows.swap(queue_);
      pending_.push_back(std::move(b));
    }
    queue_.clear();
    queued_ = 0;
    open_segment_on_disk_only_ = false;
  }

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

  while (!pending_.empty() && conn_.ok()) {
    batch& b = pending_.front();
    std::string from_disk;
    std::uint64_t events = b.events;
    if (!b.in_memory) {
      bool damaged = false;
      const auto records = spool_.read(b.seq, damaged);
      if (damaged) {
        json_object_writer f;
        f.add("segment", static_cast<std::int64_t>(b.seq))
            .add("records_read", static_cast<std::int64_t>(records.size()));
        log_.warn("ledger: spool segment ends in a partial record (a crash mid-append); "
                  "replaying the complete records",
                  f);
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
        // writes them). Keep the segment for an operator rather than block the ledger.
        const std::string kept = spool_.quarantine(b.seq);
        json_object_writer q;
        q.add("path", kept).add("error", written.error().message);
        log_.error("ledger: the database refused a batch; it is kept aside for inspection", q);
        pending_.pop_front();
        continue;
      }
      // Anything else (the server shutting down, a timeout, a lost connection) is passing:
      // start over on a fresh connection at the next flush; the rows stay in the spool.
      conn_.close();
      spool_pending();
      break;
    }
    flush_latency_.observe_us(
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count());
    events_written_.inc(static_cast<std::uint64_t>(*written));
    if (!b.in_memory) events_replayed_.inc(events);
    spool_.remove(b.seq);
    pending_.pop_front();
  }
  update_gauges();
}

void ledger_writer::update_gauges() {
  std::uint64_t queued = 0;
  {
    std::lock_guard lock(mu_);
    queued = queued_;
  }
  queue_depth_.set(static_cast<std::int64_t>(queued));
  const std::uint64_t bytes = spool_.bytes();
  spool_bytes_.set(static_cast<std::int64_t>(bytes));
  const bool full = bytes >= settings_.spool_bytes_max;
  if (full == accepting_.load()) {
    accepting_ = !full;
    spool_full_.set(full ? 1 : 0);
    json_object_writer f;
    f.add("spool_bytes", static_cast<std::int64_t>(bytes))
        .add("spool_bytes_max", static_cast<std::int64_t>(settings_.spool_bytes_max));
    if (full) {
      log_.error("ledger: the spool is FULL; new requests are refused with 503 until the "
                 "database is back",
                 f);
    } else {
      log_.info("ledger: the spool is below its limit again; taking requests", f);
    }
  }
}

}  // namespace tollgate::billing
