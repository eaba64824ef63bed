// An asynchronous PostgreSQL client on libpq and Asio: a non-blocking connection whose socket
// is driven by the io_context (PQconnectPoll, PQsendQueryParams, PQsendQueryPrepared,
// PQputCopyData), a small pool with reconnect and backoff, and client-side deadlines on top of
// the server's statement_timeout.
// A connection is used by one coroutine at a time; everything here runs on one executor.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"

struct pg_conn;
struct pg_result;

namespace tollgate::pg {

// A query's rows, as text (libpq's text format). Values are read by row and column.
class rows {
 public:
  rows() = default;
  explicit rows(pg_result* res);
  rows(rows&& other) noexcept;
  rows& operator=(rows&& other) noexcept;
  rows(const rows&) = delete;
  rows& operator=(const rows&) = delete;
  ~rows();

  int size() const;
  int columns() const;
  bool is_null(int row, int col) const;
  std::string_view text(int row, int col) const;
  std::int64_t int64(int row, int col) const;  // 0 for NULL or non-numbers
  bool boolean(int row, int col) const;        // 't' is true
  int column(std::string_view name) const;     // -1 if absent
  std::int64_t affected() const;               // rows changed by INSERT/UPDATE/DELETE

 private:
  pg_result* res_ = nullptr;
};

// A query parameter in text format; nullopt sends SQL NULL.
using param = std::optional<std::string>;

struct connection_settings {
  std::string conninfo;  // libpq connection string or URI
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds statement_timeout{5000};  // server-side, and the client deadline
};

// Errors carry the SQLSTATE (e.g. "23505" for unique violations) when the server gave one.
struct db_error {
  std::string message;
  std::string sqlstate;  // "" for connection and protocol failures
  bool connection_lost = false;
};

template <typename T>
using db_result = basic_result<T, db_error>;

class connection {
 public:
  explicit connection(boost::asio::any_io_executor ex, connection_settings settings);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  boost::asio::awaitable<db_result<bool>> connect();
  bool ok() const;
  void close();
  // An idle connection the server has since closed (a restart, an administrator's kill, an
  // idle timeout) reads as ok until libpq next touches its socket; this reads whatever is
  // waiting there without blocking, so such a connection is found and closed before use.
  void close_if_closed_by_server();

  // One statement with parameters ($1, $2, ...), in its own implicit transaction unless a
  // BEGIN is open.
  boost::asio::awaitable<db_result<rows>> query(std::string_view sql, std::vector<param> params);
  // (No default argument: GCC 12 mishandles temporaries made inside a co_await expression.)
  boost::asio::awaitable<db_result<rows>> query(std::string_view sql) {
    return query(sql, std::vector<param>{});
  }
  // The same, for a statement this connection runs over and over (the ledger's flush): parsed
  // by the server once per session (a named prepared statement), then bound and run; PostgreSQL
  // plans its first runs one by one and then usually keeps one generic plan. `sql` must be the
  // same text each time, not built with values in it (each text stays prepared while the
  // session lasts).
  boost::asio::awaitable<db_result<rows>> query_prepared(std::string_view sql,
                                                         std::vector<param> params);
  // Several statements without parameters, in one round trip (simple query protocol).
  boost::asio::awaitable<db_result<bool>> exec(std::string_view sql);
  // COPY ... FROM STDIN with `data` in COPY text format.
  boost::asio::awaitable<db_result<std::int64_t>> copy_in(std::string_view copy_sql,
                                                          std::string_view data);

 private:
  struct socket_waiter;
  boost::asio::awaitable<db_result<bool>> wait(bool for_write,
                                               std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<db_result<bool>> flush(std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<db_result<rows>> collect(std::chrono::steady_clock::time_point deadline);
  db_error fail(std::string what);
  boost::asio::awaitable<db_result<std::string>> prepared_name(
      const std::string& sql, int params, std::chrono::steady_clock::time_point deadline);

  boost::asio::any_io_executor ex_;
  connection_settings settings_;
  pg_conn* conn_ = nullptr;
  std::unique_ptr<socket_waiter> socket_;
  // The statements prepared on this session, by their text; emptied when it closes.
  std::unordered_map<std::string, std::string> prepared_;
  std::uint64_t prepared_made_ = 0;  // names are never reused within a session
};

// A fixed number of connections shared by coroutines on one executor; acquire() waits for a
// free one and reconnects a broken one (with backoff between failed attempts).
class pool {
 public:
  pool(boost::asio::any_io_executor ex, connection_settings settings, std::size_t size);
  ~pool();

  class lease {
   public:
    lease(pool* p, connection* c) : pool_(p), conn_(c) {}
    lease(lease&& o) noexcept : pool_(o.pool_), conn_(o.conn_) { o.conn_ = nullptr; }
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease();
    connection& operator*() const { return *conn_; }
    connection* operator->() const { return conn_; }

   private:
    pool* pool_;
    connection* conn_;
  };

  boost::asio::awaitable<db_result<lease>> acquire();
  const connection_settings& settings() const { return settings_; }

 private:
  friend class lease;
  void release(connection* c);

  struct waiter;
  boost::asio::any_io_executor ex_;
  connection_settings settings_;
  std::vector<std::unique_ptr<connection>> all_;
  std::vector<connection*> free_;
  std::deque<std::shared_ptr<waiter>> waiters_;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::chrono::milliseconds backoff_{0};
};

// Escapes a value for COPY text format (backslash, tab, newline, carriage return).
void append_copy_text(std::string& out, std::string_view value);

// Appends an integer's decimal digits (a COPY text field, a journal record's field) without the
// temporary string std::to_string makes.
inline void append_int(std::string& out, std::int64_t value) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

// A PostgreSQL array literal of text values, {"a","b"}, for a `$1::text[]` parameter.
template <class Strings>
std::string text_array(const Strings& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char ch : v) {
      if (ch == '"' || ch == '\\') out.push_back('\\');
      out.push_back(ch);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

}  // namespace tollgate::pg
