// Integration tests of the ledger writer against a real PostgreSQL (scripts/pg.sh, migrated with
// billing::migrate): a fresh batch that holds a row already stored is refused by the fast COPY
// (unique violation) and goes through the idempotent staging path, which stores the new rows
// and skips the old one; the journal's lanes: rows of several threads, each thread's in its
// own lane, stored once in one transaction per flush, a lane folder left by a run with more
// lanes replayed, and flush_events_max counted over all lanes; tag sets are stored once, shared
// between writers, and never cached from a transaction that rolled back; the client's prepared
// queries are prepared once per session, and again after a reconnect, a change of columns or
// the session's statements being dropped; a text array parameter carries any value.
#define CATCH_CONFIG_MAIN
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "billing/ledger_record.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/migrations.hpp"
#include "billing/pg.hpp"
#include "billing/spool.hpp"
#include "billing/tag_sets.hpp"
#include "tests/integration/redis_fixture.hpp"  // free_port

namespace net = boost::asio;
using namespace tollgate;

namespace {

struct postgres_server {
  postgres_server() : port(test::free_port()) {
    dir = (std::filesystem::temp_directory_path() /
           ("tollgate-ledger-test-" + std::to_string(::getpid())))
              .string();
    std::filesystem::create_directories(dir);
    std::filesystem::permissions(dir, std::filesystem::perms::all & ~std::filesystem::perms::group_write &
                                          ~std::filesystem::perms::others_write);
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/pg.sh start " + dir +
                            "/data " + std::to_string(port);
    REQUIRE(std::system(cmd.c_str()) == 0);
    url = "postgresql://tollgate@127.0.0.1:" + std::to_string(port) + "/tollgate";
  }
  ~postgres_server() {
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/pg.sh stop " + dir + "/data";
    (void)std::system(cmd.c_str());
    std::filesystem::remove_all(dir);
  }
  int port;
  std::string dir;
  std::string url;
};

metering::usage_record record(int i) {
  metering::usage_record r;
  r.tenant_id = "ten_dup";
  r.request_id = "req_dup_" + std::to_string(i);
  r.occurred_at_ms = 1795345200000 + i;
  r.endpoint = "/v1/chat/completions";
  r.model = "m";
  r.upstream = "u";
  r.status = 200;
  r.prompt_tokens = 10 + i;
  r.completion_tokens = 1;
  r.usage_reported = true;
  return r;
}

net::awaitable<std::int64_t> count_rows(pg::connection& c) {
  auto r = co_await c.query("SELECT count(*) FROM usage_events WHERE tenant_id = 'ten_dup'");
  co_return r ? r->int64(0, 0) : -1;
}

net::awaitable<std::string> text_of(pg::connection& c, std::string sql) {
  auto r = co_await c.query(sql);
  co_return r && r->size() > 0 ? std::string(r->text(0, 0)) : std::string("<error>");
}

net::awaitable<bool> connect(pg::connection& c) { co_return static_cast<bool>(co_await c.connect()); }

net::awaitable<bool> insert_copy(pg::connection& c, std::string rows) {
  const std::string sql =
      std::string("COPY usage_events (") + billing::usage_event_columns + ") FROM STDIN";
  co_return static_cast<bool>(co_await c.copy_in(sql, rows));
}

std::uint64_t metric(const metrics::registry& registry, const std::string& name) {
  const std::string text = registry.render();
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? 0 : std::stoull(text.substr(at + name.size() + 2));
}

// An empty spool folder's path under the temporary folder, named `prefix` and this process.
std::string fresh_spool(const std::string& prefix) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  return dir;
}

// Nothing was set aside or left behind in the spool, in any lane; then the folder goes.
void expect_spool_emptied(const std::string& spool) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(spool)) {
    if (e.is_regular_file()) CHECK(e.file_size() == 0);
  }
  std::filesystem::remove_all(spool);
}

// Waits up to `seconds` for the writer to have committed `events` events.
void wait_for_written(const metrics::registry& registry, std::uint64_t events, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (metric(registry, "tollgate_ledger_events_written_total") < events &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The settings of a database at `url`, migrated first.
pg::connection_settings migrated(const std::string& url) {
  REQUIRE(billing::migrate(url));
  pg::connection_settings s;
  s.conninfo = url;
  return s;
}

// A migrated PostgreSQL, an event loop on its own thread and a connection on it.
struct ledger_database {
  // CHECK, not REQUIRE: a throw here would leave the thread running.
  ledger_database() { CHECK(net::co_spawn(io, connect(conn), net::use_future).get()); }
  ~ledger_database() {
    conn.close();
    guard.reset();
    thread.join();
  }
  postgres_server server;
  pg::connection_settings settings = migrated(server.url);
  net::io_context io{1};
  net::executor_work_guard<net::io_context::executor_type> guard = net::make_work_guard(io);
  std::thread thread{[this] { io.run(); }};
  pg::connection conn{io.get_executor(), settings};
};

}  // namespace

TEST_CASE("a fresh batch with a row already stored falls back to the idempotent path") {
  ledger_database db;
  net::io_context& io = db.io;
  const pg::connection_settings& settings = db.settings;
  pg::connection& conn = db.conn;

  // Row 0 is already in the ledger (a commit whose answer was lost, say).
  std::string first;
  billing::append_usage_row(first, record(0));
  REQUIRE(net::co_spawn(io, insert_copy(conn, first), net::use_future).get());

  const std::string spool = fresh_spool("tollgate-ledger-test-spool-");
  metrics::registry registry;
  logger log{stderr, log_level::error};
  billing::ledger_settings ls;
  ls.spool_dir = spool;
  {
    billing::ledger_writer writer(io.get_executor(), settings, ls, registry, log);
    writer.start();
    for (int i = 0; i < 5; ++i) writer.record(record(i));  // 0 again, then 1..4 new
    wait_for_written(registry, 4, 10);
    CHECK(metric(registry, "tollgate_ledger_events_written_total") == 4);
    CHECK(registry.render().find("tollgate_ledger_failures_total{") == std::string::npos);
    net::co_spawn(io, writer.stop(), net::use_future).get();
  }
  CHECK(net::co_spawn(io, count_rows(conn), net::use_future).get() == 5);
  expect_spool_emptied(spool);
}

TEST_CASE("journal lanes: each thread appends to its own lane, one transaction per flush") {
  ledger_database db;
  net::io_context& io = db.io;
  const pg::connection_settings& settings = db.settings;
  pg::connection& conn = db.conn;

  const std::string spool = fresh_spool("tollgate-ledger-lanes-");
  std::string left_path;
  {
    // A run with six lanes left a segment in its last lane.
    billing::spool left(spool + "/lane-5", 1ull << 30);
    std::string row;
    billing::append_ledger_record(row, record(5000));
    REQUIRE(left.append(row));
    REQUIRE(left.seal() != 0);
    for (const auto& e : std::filesystem::directory_iterator(spool + "/lane-5")) {
      left_path = e.path().string();
    }
  }
  metrics::registry registry;
  logger log{stderr, log_level::error};
  billing::ledger_settings ls;
  ls.spool_dir = spool;
  ls.journal_lanes = 2;                          // and lane-5, found, is replayed only
  ls.flush_interval = std::chrono::seconds(30);  // nothing flushes before stop()
  {
    billing::ledger_writer writer(io.get_executor(), settings, ls, registry, log);
    writer.start();
    CHECK(std::filesystem::is_directory(spool + "/lane-1"));
    CHECK(!std::filesystem::exists(spool + "/lane-2"));  // no folders made for lane-5's sake
    // Two threads made one after the other get the two lanes.
    for (int t = 0; t < 2; ++t) {
      std::thread([&writer, t] {
        for (int i = 0; i < 100; ++i) writer.record(record(1000 + t * 100 + i));
      }).join();
    }
    // The bytes of each lane's segments but the one left: the two appending lanes hold 100
    // rows each, lane-5 none.
    const auto bytes_in = [&](const std::string& dir) {
      std::uintmax_t bytes = 0;
      for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.is_regular_file() && e.path().string() != left_path) bytes += e.file_size();
      }
      return bytes;
    };
    CHECK(bytes_in(spool) > 0);
    CHECK(bytes_in(spool) == bytes_in(spool + "/lane-1"));  // equal rows, equal sizes
    CHECK(bytes_in(spool + "/lane-5") == 0);
    CHECK(std::filesystem::file_size(left_path) > 0);
    net::co_spawn(io, writer.stop(), net::use_future).get();
    CHECK(metric(registry, "tollgate_ledger_events_written_total") == 201);
    CHECK(metric(registry, "tollgate_ledger_events_replayed_total") == 1);
    // The lane-5 segment's replay, then both lanes' rows in one transaction.
    CHECK(metric(registry, "tollgate_ledger_flush_duration_seconds_count") == 2);
    CHECK(registry.render().find("tollgate_ledger_failures_total{") == std::string::npos);
  }
  CHECK(net::co_spawn(io, count_rows(conn), net::use_future).get() == 201);
  expect_spool_emptied(spool);
}

TEST_CASE("journal lanes: flush_events_max counts the rows of all lanes together") {
  ledger_database db;
  const std::string spool = fresh_spool("tollgate-ledger-lanes-wake-");
  metrics::registry registry;
  logger log{stderr, log_level::error};
  billing::ledger_settings ls;
  ls.spool_dir = spool;
  ls.journal_lanes = 2;
  ls.flush_interval = std::chrono::seconds(30);
  ls.flush_events_max = 150;
  {
    billing::ledger_writer writer(db.io.get_executor(), db.settings, ls, registry, log);
    writer.start();
    // 149 rows in two lanes: below the bound together, though one lane holds more than half
    // of it.
    for (int t = 0; t < 2; ++t) {
      std::thread([&writer, t] {
        for (int i = 0; i < (t == 0 ? 100 : 49); ++i) writer.record(record(2000 + t * 100 + i));
      }).join();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(metric(registry, "tollgate_ledger_events_written_total") == 0);
    // The 150th wakes the flush, long before the interval.
    writer.record(record(2300));
    wait_for_written(registry, 150, 10);
    CHECK(metric(registry, "tollgate_ledger_events_written_total") == 150);
    net::co_spawn(db.io, writer.stop(), net::use_future).get();
  }
  std::filesystem::remove_all(spool);
}

namespace {

metering::usage_record tagged_record(const std::string& writer, int i) {
  metering::usage_record r = record(i);
  r.tenant_id = "ten_tags";
  r.request_id = "req_tags_" + writer + "_" + std::to_string(i);
  if (i % 3 == 0) r.attribution.tags = {{"team", "a"}};
  if (i % 3 == 1) r.attribution.tags = {{"env", "x"}, {"team", "b\t\"q\""}};
  return r;
}

// One transaction that resolves `line`'s tags with `ids`, then rolls back or commits; the line
// as it would be stored.
net::awaitable<std::string> resolve_in_transaction(pg::connection& c, billing::tag_set_ids& ids,
                                                   std::string line, bool commit) {
  std::vector<std::string_view> lines{line};
  const std::vector<bool> has_tags{true};
  std::deque<std::string> rewritten;
  co_await c.exec("BEGIN");
  auto done = co_await ids.substitute(c, lines, has_tags, rewritten);
  std::string out = done ? std::string(lines[0]) : std::string("<error>");
  co_await c.exec(commit ? "COMMIT" : "ROLLBACK");
  if (commit) {
    ids.commit();
  } else {
    ids.rollback();
  }
  co_return out;
}

}  // namespace

TEST_CASE("tag sets: stored once, shared by concurrent writers, not cached from a rollback") {
  ledger_database db;
  net::io_context& io = db.io;
  const pg::connection_settings& settings = db.settings;
  pg::connection& conn = db.conn;
  const auto sql = [&](const std::string& q) {
    return net::co_spawn(io, text_of(conn, q), net::use_future).get();
  };

  SECTION("two writers at once: two sets, every event joined to its own") {
    metrics::registry registry_a, registry_b;
    logger log{stderr, log_level::error};
    const auto tmp = std::filesystem::temp_directory_path();
    billing::ledger_settings la, lb;
    la.spool_dir = (tmp / ("tollgate-tags-a-" + std::to_string(::getpid()))).string();
    lb.spool_dir = (tmp / ("tollgate-tags-b-" + std::to_string(::getpid()))).string();
    la.flush_events_max = lb.flush_events_max = 50;
    {
      billing::ledger_writer a(io.get_executor(), settings, la, registry_a, log);
      billing::ledger_writer b(io.get_executor(), settings, lb, registry_b, log);
      a.start();
      b.start();
      for (int i = 0; i < 600; ++i) {
        a.record(tagged_record("a", i));
        b.record(tagged_record("b", i));
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while ((metric(registry_a, "tollgate_ledger_events_written_total") < 600 ||
              metric(registry_b, "tollgate_ledger_events_written_total") < 600) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      net::co_spawn(io, a.stop(), net::use_future).get();
      net::co_spawn(io, b.stop(), net::use_future).get();
    }
    CHECK(sql("SELECT count(*) FROM usage_events WHERE tenant_id = 'ten_tags'") == "1200");
    CHECK(sql("SELECT count(*) FROM usage_tag_sets") == "2");
    CHECK(sql("SELECT count(*) FROM usage_events WHERE tenant_id = 'ten_tags'"
              " AND tag_set_id IS NULL") == "400");
    // Each event's set is the one its request sent (the request id's number says which).
    CHECK(sql("SELECT count(*) FROM usage_events e" + std::string(billing::join_tag_sets) +
              " WHERE e.tenant_id = 'ten_tags' AND ts.tags IS DISTINCT FROM CASE"
              " split_part(e.request_id, '_', 4)::int % 3 WHEN 0 THEN '{\"team\":\"a\"}'::jsonb"
              " WHEN 1 THEN '{\"env\":\"x\",\"team\":\"b\\t\\\"q\\\"\"}'::jsonb END") == "0");
    std::filesystem::remove_all(la.spool_dir);
    std::filesystem::remove_all(lb.spool_dir);
  }

  SECTION("the key order of a set does not make another set") {
    CHECK(sql("SELECT tollgate_tag_set_id('{\"b\":\"1\",\"a\":\"2\"}') ="
              " tollgate_tag_set_id('{\"a\":\"2\",\"b\":\"1\"}')") == "t");
    CHECK(sql("SELECT count(*) FROM usage_tag_sets") == "1");
  }

  SECTION("a set made in a transaction that rolled back is looked up again") {
    metering::usage_record r = tagged_record("rb", 0);
    r.attribution.tags = {{"rolled", "back"}};
    std::string line;
    billing::append_usage_row(line, r);
    line.pop_back();  // its '\n'
    billing::tag_set_ids ids;
    const std::string first =
        net::co_spawn(io, resolve_in_transaction(conn, ids, line, false), net::use_future).get();
    REQUIRE(first != "<error>");
    CHECK(first != line);  // the id was in place while the transaction lasted
    CHECK(sql("SELECT count(*) FROM usage_tag_sets") == "0");
    CHECK(ids.size() == 0);
    const std::string second =
        net::co_spawn(io, resolve_in_transaction(conn, ids, line, true), net::use_future).get();
    const auto span = billing::tags_field_of(second);
    REQUIRE(span);
    const std::string id = second.substr(span->first, span->second);
    CHECK(sql("SELECT tags::text FROM usage_tag_sets WHERE id = " + id) ==
          "{\"rolled\": \"back\"}");
    CHECK(ids.size() == 1);
  }
}

namespace {

// What one query_prepared call gave: its first value or the error's SQLSTATE, and its columns.
struct prepared_outcome {
  bool ok = false;
  std::string value;
  std::string sqlstate;
  int columns = 0;
};

net::awaitable<prepared_outcome> run_prepared(pg::connection& c, std::string sql,
                                              std::vector<pg::param> params) {
  auto r = co_await c.query_prepared(sql, std::move(params));
  prepared_outcome out;
  if (!r) {
    out.sqlstate = r.error().sqlstate;
    co_return out;
  }
  out.ok = true;
  out.columns = r->columns();
  if (r->size() > 0) out.value = std::string(r->text(0, 0));
  co_return out;
}

net::awaitable<bool> exec_ok(pg::connection& c, std::string sql) {
  co_return static_cast<bool>(co_await c.exec(sql));
}

net::awaitable<bool> reconnect(pg::connection& c) {
  c.close();
  co_return static_cast<bool>(co_await c.connect());
}

}  // namespace

TEST_CASE("prepared queries: prepared once per session, again after a reconnect or a change") {
  ledger_database db;
  net::io_context& io = db.io;
  pg::connection& conn = db.conn;
  const auto run = [&](const std::string& q, std::vector<pg::param> params) {
    return net::co_spawn(io, run_prepared(conn, q, std::move(params)), net::use_future).get();
  };
  const auto sql = [&](const std::string& q) {
    return net::co_spawn(io, text_of(conn, q), net::use_future).get();
  };
  const std::string add_one = "SELECT $1::bigint + 1";
  const std::string count_add_one =
      "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::bigint + 1'";

  SECTION("run twice with other values: one statement on the server, each value's answer") {
    CHECK(run(add_one, {std::string("41")}).value == "42");
    CHECK(run(add_one, {std::string("-8")}).value == "-7");
    CHECK(run(add_one, {std::nullopt}).ok);  // NULL + 1
    CHECK(sql(count_add_one) == "1");
  }

  SECTION("a statement that does not prepare is not kept; the next one prepares") {
    const prepared_outcome bad = run("SELEC $1", {std::string("x")});
    CHECK_FALSE(bad.ok);
    CHECK(bad.sqlstate == "42601");  // syntax error
    CHECK(sql("SELECT count(*) FROM pg_prepared_statements") == "0");
    CHECK(run(add_one, {std::string("1")}).value == "2");
  }

  SECTION("a new session prepares it again") {
    CHECK(run(add_one, {std::string("1")}).value == "2");
    REQUIRE(net::co_spawn(io, reconnect(conn), net::use_future).get());
    CHECK(sql(count_add_one) == "0");
    CHECK(run(add_one, {std::string("2")}).value == "3");
    CHECK(sql(count_add_one) == "1");
  }

  SECTION("statements dropped from the session: refused once, then all prepared again") {
    CHECK(run(add_one, {std::string("1")}).value == "2");
    REQUIRE(net::co_spawn(io, exec_ok(conn, "DEALLOCATE ALL"), net::use_future).get());
    const prepared_outcome refused = run(add_one, {std::string("1")});
    CHECK_FALSE(refused.ok);
    CHECK(refused.sqlstate == "26000");  // prepared statement does not exist
    CHECK(run(add_one, {std::string("5")}).value == "6");
    CHECK(sql(count_add_one) == "1");
  }

  SECTION("text arrays: every value comes back as it was sent") {
    const std::vector<std::string> values = {
        "plain",    "",     "with \"quotes\"", "back\\slash", "a,b",   "{braces}",
        " spaced ", "NULL", "caf\xc3\xa9",     "tab\there",   "\\\"\\"};
    const prepared_outcome back =
        run("SELECT string_agg(v, '|' ORDER BY n) || '|' || count(*) FROM unnest($1::text[])"
            " WITH ORDINALITY AS x(v, n)",
            {pg::text_array(values)});
    std::string expected;
    for (const auto& v : values) expected += v + "|";
    CHECK(back.value == expected + std::to_string(values.size()));
  }

  SECTION("a table whose columns changed: refused once, then prepared with the new columns") {
    const auto exec = [&](const std::string& q) {
      return net::co_spawn(io, exec_ok(conn, q), net::use_future).get();
    };
    REQUIRE(exec("CREATE TABLE prepared_probe (a int); INSERT INTO prepared_probe VALUES (7)"));
    const std::string all = "SELECT * FROM prepared_probe WHERE a = $1::int";
    const prepared_outcome before = run(all, {std::string("7")});
    CHECK(before.value == "7");
    CHECK(before.columns == 1);
    REQUIRE(exec("ALTER TABLE prepared_probe ADD COLUMN b int"));
    const prepared_outcome refused = run(all, {std::string("7")});
    CHECK_FALSE(refused.ok);
    CHECK(refused.sqlstate == "0A000");  // cached plan must not change result type
    const prepared_outcome after = run(all, {std::string("7")});
    CHECK(after.ok);
    CHECK(after.columns == 2);
  }
}
