// The asynchronous PostgreSQL client: see pg.hpp. libpq runs in non-blocking mode; whenever it
// would block, the coroutine waits on the connection's socket through Asio.
#include "billing/pg.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include <poll.h>

#include "core/byte_words.hpp"

namespace tollgate::pg {

namespace net = boost::asio;
using clock = std::chrono::steady_clock;

// The SQLSTATEs of "cached plan must not change result type" and of "prepared statement does
// not exist".
constexpr std::string_view feature_not_supported = "0A000";
constexpr std::string_view invalid_statement_name = "26000";

// ---- rows ------------------------------------------------------------------------------------

rows::rows(pg_result* res) : res_(res) {}
rows::rows(rows&& other) noexcept : res_(other.res_) { other.res_ = nullptr; }
rows& rows::operator=(rows&& other) noexcept {
  if (this != &other) {
    if (res_ != nullptr) PQclear(res_);
    res_ = other.res_;
    other.res_ = nullptr;
  }
  return *this;
}
rows::~rows() {
  if (res_ != nullptr) PQclear(res_);
}
int rows::size() const { return res_ == nullptr ? 0 : PQntuples(res_); }
int rows::columns() const { return res_ == nullptr ? 0 : PQnfields(res_); }
bool rows::is_null(int row, int col) const { return PQgetisnull(res_, row, col) != 0; }
std::string_view rows::text(int row, int col) const {
  return {PQgetvalue(res_, row, col), static_cast<std::size_t>(PQgetlength(res_, row, col))};
}
std::int64_t rows::int64(int row, int col) const {
  const std::string_view t = text(row, col);
  std::int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}
bool rows::boolean(int row, int col) const {
  const std::string_view t = text(row, col);
  return !t.empty() && t[0] == 't';
}
int rows::column(std::string_view name) const {
  for (int i = 0; i < columns(); ++i) {
    if (name == PQfname(res_, i)) return i;
  }
  return -1;
}
std::int64_t rows::affected() const {
  if (res_ == nullptr) return 0;
  const char* t = PQcmdTuples(res_);
  std::int64_t v = 0;
  std::from_chars(t, t + std::char_traits<char>::length(t), v);
  return v;
}

// ---- connection ------------------------------------------------------------------------------

// The libpq socket wrapped for Asio. libpq owns the descriptor, so it is released, never closed.
struct connection::socket_waiter {
  explicit socket_waiter(net::any_io_executor ex) : sd(ex) {}
  ~socket_waiter() { detach(); }
  void attach(int fd) {
    if (fd == fd_) return;
    detach();
    boost::system::error_code ec;
    sd.assign(fd, ec);
    fd_ = ec ? -1 : fd;
  }
  void detach() {
    if (fd_ >= 0) {
      boost::system::error_code ec;
      sd.cancel(ec);
      sd.release();
      fd_ = -1;
    }
  }
  net::posix::stream_descriptor sd;
  int fd_ = -1;
};

connection::connection(net::any_io_executor ex, connection_settings settings)
    : ex_(std::move(ex)),
      settings_(std::move(settings)),
      socket_(std::make_unique<socket_waiter>(ex_)) {}

connection::~connection() { close(); }

bool connection::ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

void connection::close() {
  socket_->detach();
  prepared_.clear();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

void connection::close_if_closed_by_server() {
  // The server's goodbye (an error message, then the end of the stream) may take more than one
  // read to see through; a few rounds suffice, and an open idle socket has nothing to read.
  constexpr int reads_max = 4;
  for (int i = 0; i < reads_max && ok(); ++i) {
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    if (PQconsumeInput(conn_) == 0 || !ok()) close();
  }
}

db_error connection::fail(std::string what) {
  db_error e;
  e.message = std::move(what);
  if (conn_ != nullptr) {
    std::string detail = PQerrorMessage(conn_);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    if (!detail.empty()) e.message += ": " + detail;
  }
  e.connection_lost = !ok();
  if (e.connection_lost) close();
  return e;
}

net::awaitable<db_result<bool>> connection::wait(bool for_write, clock::time_point deadline) {
  socket_->attach(PQsocket(conn_));
  if (socket_->fd_ < 0) co_return fail("no connection socket");
  struct timer_state {
    bool fired = false;
    bool done = false;
  };
  auto state = std::make_shared<timer_state>();
  net::steady_timer timer{ex_};
  timer.expires_at(deadline);
  timer.async_wait([state, sd = &socket_->sd](boost::system::error_code ec) {
    if (!ec && !state->done) {
      state->fired = true;
      sd->cancel();
    }
  });
  for (;;) {
    auto [ec] = co_await socket_->sd.async_wait(
        for_write ? net::posix::stream_descriptor::wait_write
                  : net::posix::stream_descriptor::wait_read,
        net::as_tuple(net::use_awaitable));
    if (ec == net::error::operation_aborted && !state->fired) continue;  // a stale cancel
    state->done = true;
    timer.cancel();
    if (state->fired) {
      // The server may still be running the statement: this connection cannot be trusted.
      close();
      db_error e{"the database did not answer in time", "", true};
      co_return e;
    }
    if (ec) co_return fail("waiting on the database socket: " + ec.message());
    co_return true;
  }
}

net::awaitable<db_result<bool>> connection::flush(clock::time_point deadline) {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) co_return true;
    if (r < 0) co_return fail("sending to the database");
    // Reading may be needed for the server to accept more (it might be sending notices).
    auto w = co_await wait(/*for_write=*/true, deadline);
    if (!w) co_return w.error();
    if (PQconsumeInput(conn_) == 0) co_return fail("reading from the database");
  }
}

net::awaitable<db_result<rows>> connection::collect(clock::time_point deadline) {
  std::optional<db_error> error;
  rows last;
  for (;;) {
    while (PQisBusy(conn_) != 0) {
      auto w = co_await wait(/*for_write=*/false, deadline);
      if (!w) co_return w.error();
      if (PQconsumeInput(conn_) == 0) co_return fail("reading from the database");
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    const ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
      if (!error) {
        db_error e;
        e.message = PQresultErrorMessage(res);
        while (!e.message.empty() && e.message.back() == '\n') e.message.pop_back();
        if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) e.sqlstate = s;
        error = std::move(e);
      }
      PQclear(res);
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      PQclear(res);
      co_return fail("unexpected COPY state");
    } else {
      last = rows(res);
    }
  }
  if (!ok()) co_return fail("the database connection was lost");
  if (error) co_return *error;
  co_return last;
}

net::awaitable<db_result<bool>> connection::connect() {
  close();
  const auto deadline = clock::now() + settings_.connect_timeout;
  conn_ = PQconnectStart(settings_.conninfo.c_str());
  if (conn_ == nullptr) co_return db_error{"out of memory starting a database connection", "", true};
  if (PQstatus(conn_) == CONNECTION_BAD) co_return fail("cannot connect to the database");
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) co_return fail("cannot connect to the database");
    auto w = co_await wait(poll == PGRES_POLLING_WRITING, deadline);
    if (!w) co_return w.error();
    poll = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) co_return fail("cannot make the connection non-blocking");
  const std::string setup = "SET statement_timeout = " +
                            std::to_string(settings_.statement_timeout.count()) +
                            "; SET TimeZone = 'UTC'; SET application_name = 'tollgate'";
  auto r = co_await exec(setup);
  if (!r) co_return r.error();
  co_return true;
}

net::awaitable<db_result<rows>> connection::query(std::string_view sql, std::vector<param> params) {
  if (!ok()) co_return db_error{"not connected to the database", "", true};
  const auto deadline = clock::now() + settings_.statement_timeout + std::chrono::seconds(1);
  const std::string text(sql);
  std::vector<const char*> values(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i] ? params[i]->c_str() : nullptr;
  }
  if (PQsendQueryParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 0) {
    co_return fail("sending a query");
  }
  auto f = co_await flush(deadline);
  if (!f) co_return f.error();
  co_return co_await collect(deadline);
}

// The name `sql` is prepared under on this session, preparing it first if it is new. A
// statement that fails to prepare (a syntax error, an aborted transaction) is not recorded.
net::awaitable<db_result<std::string>> connection::prepared_name(const std::string& sql, int params,
                                                                 clock::time_point deadline) {
  if (const auto it = prepared_.find(sql); it != prepared_.end()) co_return it->second;
  std::string name = "tollgate_" + std::to_string(++prepared_made_);
  if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), params, nullptr) == 0) {
    co_return fail("preparing a query");
  }
  auto f = co_await flush(deadline);
  if (!f) co_return f.error();
  auto r = co_await collect(deadline);
  if (!r) co_return r.error();
  prepared_.emplace(sql, name);
  co_return name;
}

net::awaitable<db_result<rows>> connection::query_prepared(std::string_view sql,
                                                           std::vector<param> params) {
  if (!ok()) co_return db_error{"not connected to the database", "", true};
  const auto deadline = clock::now() + settings_.statement_timeout + std::chrono::seconds(1);
  const std::string text(sql);
  auto name = co_await prepared_name(text, static_cast<int>(params.size()), deadline);
  if (!name) co_return name.error();
  std::vector<const char*> values(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i] ? params[i]->c_str() : nullptr;
  }
  if (PQsendQueryPrepared(conn_, name->c_str(), static_cast<int>(params.size()), values.data(),
                          nullptr, nullptr, 0) == 0) {
    co_return fail("sending a query");
  }
  auto f = co_await flush(deadline);
  if (!f) co_return f.error();
  auto r = co_await collect(deadline);
  if (!r) {
    // A table the statement reads changed its columns since it was prepared (a migration run
    // by another process): the server refuses the old plan. The next call prepares it again.
    if (r.error().sqlstate == feature_not_supported) prepared_.erase(text);
    // The session's statements are gone (DEALLOCATE ALL, DISCARD ALL): all are prepared again.
    if (r.error().sqlstate == invalid_statement_name) prepared_.clear();
  }
  co_return r;
}

net::awaitable<db_result<bool>> connection::exec(std::string_view sql) {
  if (conn_ == nullptr) co_return db_error{"not connected to the database", "", true};
  const auto deadline = clock::now() + settings_.statement_timeout + std::chrono::seconds(1);
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) co_return fail("sending a statement");
  auto f = co_await flush(deadline);
  if (!f) co_return f.error();
  auto r = co_await collect(deadline);
  if (!r) co_return r.error();
  co_return true;
}

net::awaitable<db_result<std::int64_t>> connection::copy_in(std::string_view copy_sql,
                                                            std::string_view data) {
  if (!ok()) co_return db_error{"not connected to the database", "", true};
  const auto deadline = clock::now() + settings_.statement_timeout + std::chrono::seconds(1);
  const std::string text(copy_sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) co_return fail("sending COPY");
  auto f = co_await flush(deadline);
  if (!f) co_return f.error();
  // Wait for the server to enter COPY IN (or refuse).
  for (;;) {
    while (PQisBusy(conn_) != 0) {
      auto w = co_await wait(false, deadline);
      if (!w) co_return w.error();
      if (PQconsumeInput(conn_) == 0) co_return fail("reading from the database");
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) co_return fail("COPY ended before it started");
    const ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COPY_IN) {
      PQclear(res);
      break;
    }
    db_error e;
    e.message = PQresultErrorMessage(res);
    if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) e.sqlstate = s;
    PQclear(res);
    auto rest = co_await collect(deadline);  // drain to idle
    (void)rest;
    co_return e;
  }
  constexpr std::size_t chunk_bytes = 256 * 1024;
  for (std::size_t at = 0; at < data.size();) {
    const std::size_t n = std::min(chunk_bytes, data.size() - at);
    const int r = PQputCopyData(conn_, data.data() + at, static_cast<int>(n));
    if (r < 0) co_return fail("sending COPY data");
    if (r == 0) {  // would block: let the socket drain
      auto w = co_await wait(true, deadline);
      if (!w) co_return w.error();
      if (PQflush(conn_) < 0) co_return fail("sending COPY data");
      continue;
    }
    at += n;
  }
  for (;;) {
    const int r = PQputCopyEnd(conn_, nullptr);
    if (r < 0) co_return fail("ending COPY");
    if (r == 1) break;
    auto w = co_await wait(true, deadline);
    if (!w) co_return w.error();
  }
  f = co_await flush(deadline);
  if (!f) co_return f.error();
  auto done = co_await collect(deadline);
  if (!done) co_return done.error();
  co_return done->affected();
}

// ---- pool ------------------------------------------------------------------------------------

struct pool::waiter {
  explicit waiter(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  connection* conn = nullptr;
  bool abandoned = false;  // timed out; release() passes it over
};

pool::pool(net::any_io_executor ex, connection_settings settings, std::size_t size)
    : ex_(std::move(ex)), settings_(std::move(settings)) {
  for (std::size_t i = 0; i < size; ++i) {
    all_.push_back(std::make_unique<connection>(ex_, settings_));
    free_.push_back(all_.back().get());
  }
}

pool::~pool() = default;

pool::lease::~lease() {
  if (conn_ != nullptr) pool_->release(conn_);
}

void pool::release(connection* c) {
  while (!waiters_.empty()) {
    auto w = waiters_.front();
    waiters_.pop_front();
    if (!w->abandoned) {
      w->conn = c;
      w->timer.cancel();
      return;
    }
  }
  free_.push_back(c);
}

net::awaitable<db_result<pool::lease>> pool::acquire() {
  connection* c = nullptr;
  if (!free_.empty()) {
    c = free_.back();
    free_.pop_back();
  } else {
    auto w = std::make_shared<waiter>(ex_);
    w->timer.expires_after(settings_.statement_timeout);
    waiters_.push_back(w);
    co_await w->timer.async_wait(net::as_tuple(net::use_awaitable));
    if (w->conn == nullptr) {
      w->abandoned = true;
      co_return db_error{"no database connection became free in time", "", false};
    }
    c = w->conn;
  }
  lease l{this, c};
  c->close_if_closed_by_server();
  if (!c->ok()) {
    const auto now = clock::now();
    if (now < next_attempt_) co_return db_error{"the database is unavailable", "", true};
    auto r = co_await c->connect();
    if (!r) {
      backoff_ = std::min<std::chrono::milliseconds>(
          std::max<std::chrono::milliseconds>(backoff_ * 2, std::chrono::milliseconds(100)),
          std::chrono::milliseconds(5000));
      next_attempt_ = clock::now() + backoff_;
      co_return r.error();
    }
    backoff_ = std::chrono::milliseconds(0);
  }
  co_return std::move(l);
}

// ---- COPY text -------------------------------------------------------------------------------

namespace {

// For each byte, the letter of its COPY text escape (`\\`, `\t`, `\n`, `\r`), or 0 when the
// byte stands for itself: one table load per byte instead of four comparisons.
constexpr std::array<char, 256> copy_escapes = [] {
  std::array<char, 256> table{};
  table['\\'] = '\\';
  table['\t'] = 't';
  table['\n'] = 'n';
  table['\r'] = 'r';
  return table;
}();

}  // namespace

void append_copy_text(std::string& out, std::string_view value) {
  // Runs without a byte to escape are appended whole (most values have none). Words of eight
  // bytes with no backslash and no byte below 14 (the escaped controls are 9, 10 and 13) are
  // crossed at once; the table decides each byte of any other word, and of the last few bytes.
  const auto* bytes = reinterpret_cast<const unsigned char*>(value.data());
  std::size_t from = 0;
  for (std::size_t i = 0; i < value.size();) {
    while (i + 8 <= value.size()) {
      const std::uint64_t word = byte_words::load(value.data() + i);
      if ((byte_words::any_below(word, 14) | byte_words::any_equal(word, '\\')) != 0) break;
      i += 8;
    }
    for (const std::size_t stop = std::min(value.size(), i + 8); i < stop; ++i) {
      const char letter = copy_escapes[bytes[i]];
      if (letter == 0) continue;
      out.append(value.data() + from, i - from);
      out.push_back('\\');
      out.push_back(letter);
      from = i + 1;
    }
  }
  out.append(value.data() + from, value.size() - from);
}

}  // namespace tollgate::pg
