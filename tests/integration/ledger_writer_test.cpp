// Integration test of the ledger writer against a real PostgreSQL (scripts/pg.sh, migrated with
// billing::migrate): a fresh batch that holds a row already stored is refused by the fast COPY
// (unique violation) and goes through the idempotent staging path, which stores the new rows
// and skips the old one.
#define CATCH_CONFIG_MAIN
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "billing/ledger_writer.hpp"
#include "billing/migrations.hpp"
#include "billing/pg.hpp"
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

}  // namespace

TEST_CASE("a fresh batch with a row already stored falls back to the idempotent path") {
  postgres_server server;
  auto migrated = billing::migrate(server.url);
  REQUIRE(migrated);

  net::io_context io{1};
  auto guard = net::make_work_guard(io);
  std::thread thread([&io] { io.run(); });
  pg::connection_settings settings;
  settings.conninfo = server.url;
  pg::connection conn(io.get_executor(), settings);
  REQUIRE(net::co_spawn(io, connect(conn), net::use_future).get());

  // Row 0 is already in the ledger (a commit whose answer was lost, say).
  std::string first;
  billing::append_usage_row(first, record(0));
  REQUIRE(net::co_spawn(io, insert_copy(conn, first), net::use_future).get());

  const std::string spool = (std::filesystem::temp_directory_path() /
                             ("tollgate-ledger-test-spool-" + std::to_string(::getpid())))
                                .string();
  std::filesystem::remove_all(spool);
  metrics::registry registry;
  logger log{stderr, log_level::error};
  billing::ledger_settings ls;
  ls.spool_dir = spool;
  {
    billing::ledger_writer writer(io.get_executor(), settings, ls, registry, log);
    writer.start();
    for (int i = 0; i < 5; ++i) writer.record(record(i));  // 0 again, then 1..4 new
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (metric(registry, "tollgate_ledger_events_written_total") < 4 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(metric(registry, "tollgate_ledger_events_written_total") == 4);
    CHECK(registry.render().find("tollgate_ledger_failures_total{") == std::string::npos);
    net::co_spawn(io, writer.stop(), net::use_future).get();
  }
  CHECK(net::co_spawn(io, count_rows(conn), net::use_future).get() == 5);
  // Nothing was set aside or left behind in the spool.
  for (const auto& e : std::filesystem::directory_iterator(spool)) {
    CHECK(std::filesystem::file_size(e.path()) == 0);
  }
  conn.close();
  guard.reset();
  thread.join();
  std::filesystem::remove_all(spool);
}
