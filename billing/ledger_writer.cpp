// The ledger writer: see ledger_writer.hpp.
#include "billing/ledger_writer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>

#include "billing/period_pricing.hpp"
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
        "(LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS rating_staging (tenant_id text COLLATE \"C\","
        " period text, model text COLLATE \"C\", token_class text, batch boolean,"
        " position bigint, charged_micros bigint) ON COMMIT DELETE ROWS");
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
  for (;;) {
    auto begin = co_await conn_.exec("BEGIN");
    if (!begin) co_return begin.error();
    auto stored = co_await rate_and_store(rows, may_repeat);
    if (stored) {
      auto commit = co_await conn_.exec("COMMIT");
      if (!commit) co_return commit.error();
      co_return *stored;
    }
    if (conn_.ok()) co_await conn_.exec("ROLLBACK");
    // A fresh batch holding a row that is stored already (a commit whose answer was lost,
    // then replayed): do it again, dropping the rows that are there.
    if (may_repeat || stored.error().sqlstate != "23505") co_return stored.error();
    may_repeat = true;
  }
}

net::awaitable<pg::db_result<std::int64_t>> ledger_writer::rate_and_store(const std::string& rows,
                                                                          bool may_repeat) {
  static const std::string staging_sql =
      std::string("COPY usage_staging (") + usage_event_columns + ") FROM STDIN";
  static const std::string store_sql = std::string("COPY usage_events (") + usage_event_columns +
                                       ", cost_micros, price_book_id, price_book_version," +
                                       " credit_micros) FROM STDIN";
  std::vector<std::string_view> lines;
  for (std::size_t at = 0; at < rows.size();) {
    const std::size_t nl = rows.find('\n', at);
    const std::size_t end = nl == std::string::npos ? rows.size() : nl;
    if (end > at) lines.push_back(std::string_view(rows).substr(at, end - at));
    at = end + 1;
  }
  std::vector<std::optional<rating_event>> events;
  events.reserve(lines.size());
  for (const auto line : lines) events.push_back(parse_rating_event(line));

  if (may_repeat) {
    // Drop the rows that are stored already: they are neither stored nor rated again.
    auto copied = co_await conn_.copy_in(staging_sql, rows);
    if (!copied) co_return copied.error();
    auto present = co_await conn_.query(
        "SELECT s.request_id FROM usage_staging s JOIN usage_events e"
        " ON e.tenant_id = s.tenant_id AND e.occurred_at = s.occurred_at"
        " AND e.request_id = s.request_id");
    if (!present) co_return present.error();
    if (present->size() > 0) {
      std::set<std::string, std::less<>> stored;
      for (int i = 0; i < present->size(); ++i) stored.emplace(present->text(i, 0));
      std::size_t kept = 0;
      for (std::size_t i = 0; i < lines.size(); ++i) {
        // A row too damaged to read its request id is left to the database to refuse.
        if (events[i] && stored.contains(events[i]->request_id)) continue;
        lines[kept] = lines[i];
        events[kept] = std::move(events[i]);
        ++kept;
      }
      lines.resize(kept);
      events.resize(kept);
    }
  }
  if (lines.empty()) co_return 0;

  std::map<std::string, plan_history> plans;
  // Per event, the plan of its period (null: its tenant has none).
  std::vector<const rating_plan*> event_plans(events.size(), nullptr);
  std::vector<std::optional<rated_event>> rated(events.size());
  if (settings_.rate_events) {
    std::set<std::string> tenants;
    for (const auto& e : events) {
      if (e) tenants.insert(e->tenant_id);
    }
    auto loaded = co_await plans_.load(conn_, tenants);
    if (!loaded) co_return loaded.error();
    plans = std::move(*loaded);
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (!events[i]) continue;
      if (const auto it = plans.find(events[i]->tenant_id); it != plans.end()) {
        event_plans[i] = plan_for_period(it->second, period_of(events[i]->occurred_at_s));
      }
    }
    if (!plans.empty()) {
      auto done = co_await rate_batch(events, event_plans, rated);
      if (!done) co_return done.error();
    }
  }
  std::vector<std::int64_t> credit(events.size(), 0);
  if (std::any_of(rated.begin(), rated.end(), [](const auto& r) { return r && r->cost_micros > 0; })) {
    auto drawn = co_await draw_credits(events, rated, credit);
    if (!drawn) co_return drawn.error();
  }

  std::string out;
  out.reserve(rows.size() + lines.size() * 40);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    if (rated[i]) {
      out.push_back('\t');
      out += std::to_string(rated[i]->cost_micros);
      out.push_back('\t');
      pg::append_copy_text(out, event_plans[i]->book_id);
      out.push_back('\t');
      out += std::to_string(rated[i]->version);
    } else {
      out += "\t\\N\t\\N\t\\N";
    }
    if (credit[i] > 0) {
      out.push_back('\t');
      out += std::to_string(credit[i]);
      out.push_back('\n');
    } else {
      out += "\t\\N\n";
    }
  }
  co_return co_await conn_.copy_in(store_sql, out);
}

net::awaitable<pg::db_result<bool>> ledger_writer::rate_batch(
    const std::vector<std::optional<rating_event>>& events,
    const std::vector<const rating_plan*>& plans,
    std::vector<std::optional<rated_event>>& rated) {
  accumulator_map accumulators;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!events[i] || plans[i] == nullptr) continue;
    if (auto target = rating_target_of(*plans[i], *events[i])) {
      for (auto& key : target->keys) accumulators.try_emplace(std::move(key));
    }
  }
  if (accumulators.empty()) co_return true;
  auto accumulator_rows = [&accumulators] {
    std::string text;
    for (const auto& [key, state] : accumulators) {
      const auto& [tenant, period, model, token_class, batch] = key;
      pg::append_copy_text(text, tenant);
      text += '\t' + period + '\t';
      pg::append_copy_text(text, model);
      text += '\t' + token_class + (batch ? "\tt\t" : "\tf\t");
      text += std::to_string(state.position) + '\t' + std::to_string(state.charged_micros) + '\n';
    }
    return text;
  };
  static const std::string keys_sql =
      "COPY rating_staging (tenant_id, period, model, token_class, batch, position,"
      " charged_micros) FROM STDIN";
  // Create the missing accumulators, then lock them all, in one order (no deadlock between
  // gateways), and read where they stand.
  const std::string keys = accumulator_rows();
  auto staged = co_await conn_.copy_in(keys_sql, keys);
  if (!staged) co_return staged.error();
  auto created = co_await conn_.exec(
      "INSERT INTO rating_accumulators"
      " (tenant_id, period, model, token_class, batch, position, charged_micros)"
      " SELECT tenant_id, period, model, token_class, batch, 0, 0 FROM rating_staging"
      " ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING");
  if (!created) co_return created.error();
  auto locked = co_await conn_.query(
      "SELECT a.tenant_id, a.period, a.model, a.token_class, a.batch, a.position,"
      " a.charged_micros FROM rating_accumulators a JOIN rating_staging k"
      " USING (tenant_id, period, model, token_class, batch)"
      " ORDER BY 1, 2, 3, 4, 5 FOR UPDATE OF a");
  if (!locked) co_return locked.error();
  for (int i = 0; i < locked->size(); ++i) {
    const accumulator_key key{std::string(locked->text(i, 0)), std::string(locked->text(i, 1)),
                              std::string(locked->text(i, 2)), std::string(locked->text(i, 3)),
                              locked->boolean(i, 4)};
    accumulators[key] = accumulator_state{locked->int64(i, 5), locked->int64(i, 6)};
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i] && plans[i] != nullptr) {
      rated[i] = rate_event(*plans[i], *events[i], accumulators);
    }
  }
  auto cleared = co_await conn_.exec("DELETE FROM rating_staging");
  if (!cleared) co_return cleared.error();
  const std::string positions = accumulator_rows();
  auto restaged = co_await conn_.copy_in(keys_sql, positions);
  if (!restaged) co_return restaged.error();
  auto updated = co_await conn_.exec(
      "UPDATE rating_accumulators a SET position = k.position,"
      " charged_micros = k.charged_micros, updated_at = now() FROM rating_staging k"
      " WHERE a.tenant_id = k.tenant_id AND a.period = k.period AND a.model = k.model"
      " AND a.token_class = k.token_class AND a.batch = k.batch");
  if (!updated) co_return updated.error();
  co_return true;
}

net::awaitable<pg::db_result<bool>> ledger_writer::draw_credits(
    const std::vector<std::optional<rating_event>>& events,
    const std::vector<std::optional<rated_event>>& rated, std::vector<std::int64_t>& credit) {
  std::set<std::string> tenants;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (rated[i] && rated[i]->cost_micros > 0) tenants.insert(events[i]->tenant_id);
  }
  std::vector<pg::param> params;
  params.emplace_back(pg::text_array(tenants));
  // Locked in drawdown order, the same in every gateway.
  auto found = co_await conn_.query(
      "SELECT g.tenant_id, g.id, a.balance_micros, floor(extract(epoch from g.effective_at)),"
      " floor(extract(epoch from g.expires_at)), array_to_json(g.models)::text"
      " FROM credit_accounts a JOIN credit_grants g ON g.id = a.grant_id"
      " WHERE g.tenant_id = ANY($1::text[]) AND a.balance_micros > 0"
      " ORDER BY g.tenant_id, g.priority, g.expires_at NULLS LAST, g.effective_at, g.id"
      " FOR UPDATE OF a",
      std::move(params));
  if (!found) co_return found.error();
  if (found->size() == 0) co_return true;
  std::map<std::string, std::vector<credit_grant_balance>> grants;  // by tenant, drawdown order
  for (int i = 0; i < found->size(); ++i) {
    credit_grant_balance g;
    g.grant_id = std::string(found->text(i, 1));
    g.balance_micros = found->int64(i, 2);
    g.effective_at_s = found->int64(i, 3);
    if (!found->is_null(i, 4)) g.expires_at_s = found->int64(i, 4);
    if (!found->is_null(i, 5)) {
      const std::string text(found->text(i, 5));
      const auto doc = json::document::parse(text);
      std::vector<std::string> models;
      if (doc && doc->root().is_array()) {
        doc->root().for_each_element([&models](json::value m) {
          if (m.is_string()) models.emplace_back(m.as_string());
        });
      }
      g.models = std::move(models);
    }
    grants[std::string(found->text(i, 0))].push_back(std::move(g));
  }
  // One transfer per tenant and period: each grant drawn gives, the usage account takes.
  struct transfer {
    std::string id;
    std::map<std::string, std::int64_t> by_grant;
    std::int64_t total = 0;
  };
  std::map<std::pair<std::string, std::string>, transfer> transfers;  // tenant, period
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!rated[i] || rated[i]->cost_micros <= 0) continue;
    const rating_event& e = *events[i];
    const auto it = grants.find(e.tenant_id);
    if (it == grants.end()) continue;
    const auto draws = draw_credit(it->second, e.model, e.occurred_at_s, rated[i]->cost_micros);
    if (draws.empty()) continue;
    const std::string period = period_of(e.occurred_at_s);
    transfer& t = transfers[{e.tenant_id, period}];
    if (t.id.empty()) t.id = "draw:" + e.tenant_id + ":" + period + ":" + e.request_id;
    for (const auto& d : draws) {
      t.by_grant[it->second[d.grant].grant_id] += d.amount_micros;
      t.total += d.amount_micros;
      credit[i] += d.amount_micros;
    }
  }
  if (transfers.empty()) co_return true;
  std::string transfer_rows;
  std::string entry_rows;
  for (const auto& [key, t] : transfers) {
    pg::append_copy_text(transfer_rows, t.id);
    transfer_rows.push_back('\t');
    pg::append_copy_text(transfer_rows, key.first);
    transfer_rows += "\tdrawdown\t" + key.second + "\n";
    for (const auto& [grant_id, amount] : t.by_grant) {
      pg::append_copy_text(entry_rows, t.id);
      entry_rows += "\tgrant:";
      pg::append_copy_text(entry_rows, grant_id);
      entry_rows += "\t-" + std::to_string(amount) + "\n";
    }
    pg::append_copy_text(entry_rows, t.id);
    entry_rows += "\tusage:";
    pg::append_copy_text(entry_rows, key.first);
    entry_rows += "\t" + std::to_string(t.total) + "\n";
  }
  static const std::string transfers_sql =
      "COPY credit_transfers (id, tenant_id, kind, period) FROM STDIN";
  static const std::string entries_sql =
      "COPY credit_entries (transfer_id, account_id, amount_micros) FROM STDIN";
  auto booked = co_await conn_.copy_in(transfers_sql, transfer_rows);
  if (!booked) co_return booked.error();
  auto entered = co_await conn_.copy_in(entries_sql, entry_rows);
  if (!entered) co_return entered.error();
  co_return true;
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
