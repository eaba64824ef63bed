// Integration tests of the Redis client against a real redis-server (scripts/redis.sh, its own
// process on a free loopback port): replies, pipelining, EVALSHA with the NOSCRIPT fallback,
// timeouts, a killed connection, the server going away and coming back, AUTH; and against a
// real three-master Redis Cluster: routing by slot, EVALSHA on every node, MOVED and ASK
// during a slot migration; and TLS: verified certificates, client certificates, refusals.
#define CATCH_CONFIG_MAIN
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "metering/redis_client.hpp"
#include "tests/integration/redis_fixture.hpp"

namespace net = boost::asio;
using namespace tollgate;
using namespace tollgate::test;

namespace {

// Short, so that the tests of failures (a server gone, a wrong password) end quickly.
constexpr auto short_timeout = std::chrono::milliseconds(200);

redis::settings cluster_settings(const redis_cluster& cl) {
  redis::settings cfg;
  cfg.port = static_cast<std::uint16_t>(cl.ports[0]);  // one seed is enough to find the rest
  cfg.cluster = true;
  cfg.command_timeout = std::chrono::milliseconds(2000);
  return cfg;
}

redis::settings node_settings(int port) {
  redis::settings cfg;
  cfg.port = static_cast<std::uint16_t>(port);
  cfg.command_timeout = std::chrono::milliseconds(2000);
  return cfg;
}

net::awaitable<redis::redis_result> cmd(redis::client& c, std::vector<std::string> args) {
  co_return co_await c.command(std::move(args));
}

net::awaitable<std::vector<long long>> many_incr(redis::client& c, int n) {
  // n commands issued before any reply arrives: they travel pipelined.
  std::vector<std::future<redis::redis_result>> futures;
  auto ex = co_await net::this_coro::executor;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args{"INCR", "counter"};
    futures.push_back(net::co_spawn(ex, c.command(std::move(args)), net::use_future));
  }
  // Let them all finish: wait on a timer until the last is ready.
  net::steady_timer t(ex);
  for (;;) {
    if (futures.back().wait_for(std::chrono::seconds(0)) == std::future_status::ready) break;
    t.expires_after(std::chrono::milliseconds(1));
    co_await t.async_wait(net::use_awaitable);
  }
  std::vector<long long> values;
  for (auto& f : futures) {
    auto r = f.get();
    values.push_back(r ? r->integer : -1);
  }
  co_return values;
}

// (A named coroutine, not a lambda: GCC 12 miscompiles lambda coroutines.)
net::awaitable<redis::redis_result> eval_incrby(redis::client& c, const redis::script& s,
                                                std::string by) {
  std::vector<std::string> keys{"ev"};
  std::vector<std::string> args{std::move(by)};
  co_return co_await c.eval(s, std::move(keys), std::move(args));
}

net::awaitable<redis::redis_result> eval_on(redis::client& c, const redis::script& s,
                                           std::string key, std::string arg) {
  std::vector<std::string> keys{std::move(key)};
  std::vector<std::string> args{std::move(arg)};
  co_return co_await c.eval(s, std::move(keys), std::move(args));
}

}  // namespace

TEST_CASE("replies of every kind") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  auto set = run(io, cmd(c, {"SET", "k", std::string("v\0\r\n", 4)}));
  REQUIRE(set);
  CHECK(set->type == redis::reply::kind::status);
  CHECK(set->str == "OK");
  auto get = run(io, cmd(c, {"GET", "k"}));
  REQUIRE(get);
  CHECK(get->type == redis::reply::kind::string);
  CHECK(get->str == std::string("v\0\r\n", 4));
  auto missing = run(io, cmd(c, {"GET", "nope"}));
  REQUIRE(missing);
  CHECK(missing->type == redis::reply::kind::nil);
  auto incr = run(io, cmd(c, {"INCRBY", "n", "41"}));
  REQUIRE(incr);
  CHECK(incr->integer == 41);
  auto arr = run(io, cmd(c, {"MGET", "n", "nope"}));
  REQUIRE(arr);
  REQUIRE(arr->elements.size() == 2);
  CHECK(arr->elements[0].str == "41");
  CHECK(arr->elements[1].type == redis::reply::kind::nil);
  auto err = run(io, cmd(c, {"INCR", "k"}));
  REQUIRE(err);  // a Redis error is a reply, not a failure
  CHECK(err->is_error());
  CHECK(c.connected());
}

TEST_CASE("commands of any length and arguments of any content are sent intact") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  // Many arguments, with empty and binary ones among them.
  std::vector<std::string> push{"RPUSH", "list"};
  for (int i = 0; i < 150; ++i) {
    push.push_back(i % 50 == 0 ? std::string() : std::string("v\r\n\0", 4) + std::to_string(i));
  }
  auto pushed = run(io, cmd(c, push));
  REQUIRE(pushed);
  CHECK(pushed->integer == 150);
  auto range = run(io, cmd(c, {"LRANGE", "list", "0", "-1"}));
  REQUIRE(range);
  REQUIRE(range->elements.size() == 150);
  for (std::size_t i = 0; i < 150; ++i) CHECK(range->elements[i].str == push[i + 2]);
  auto empty = run(io, cmd(c, {"SET", "", ""}));
  REQUIRE(empty);
  CHECK(empty->str == "OK");
  auto back = run(io, cmd(c, {"GET", ""}));
  REQUIRE(back);
  CHECK(back->type == redis::reply::kind::string);
  CHECK(back->str.empty());
}

TEST_CASE("concurrent commands are pipelined and answered in order") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  REQUIRE(run(io, cmd(c, {"PING"})));
  const auto values = run(io, many_incr(c, 2000));
  REQUIRE(values.size() == 2000);
  for (std::size_t i = 0; i < values.size(); ++i) CHECK(values[i] == static_cast<long long>(i + 1));
}

TEST_CASE("EVALSHA loads the script after NOSCRIPT, then runs it by hash") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  const redis::script s("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  CHECK(s.sha1.size() == 40);
  REQUIRE(run(io, cmd(c, {"SCRIPT", "FLUSH"})));
  auto ev = [&](std::string by) { return run(io, eval_incrby(c, s, std::move(by))); };
  auto first = ev("5");
  REQUIRE(first);
  CHECK(first->integer == 5);
  auto exists = run(io, cmd(c, {"SCRIPT", "EXISTS", s.sha1}));
  REQUIRE(exists);
  CHECK(exists->elements.at(0).integer == 1);
  auto second = ev("2");
  REQUIRE(second);
  CHECK(second->integer == 7);
}

TEST_CASE("a command past its timeout fails, and the client reconnects for the next") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  REQUIRE(run(io, cmd(c, {"PING"})));
  auto slow = run(io, cmd(c, {"BLPOP", "no-such-list", "0.5"}));  // answers after 500 ms
  CHECK_FALSE(slow);
  CHECK_FALSE(c.connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto after = run(io, cmd(c, {"PING"}));
  REQUIRE(after);
  CHECK(after->str == "PONG");
}

TEST_CASE("a killed connection and a restarted server are survived") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  redis::client admin(io.get_executor(), client_settings(server, short_timeout));
  REQUIRE(run(io, cmd(c, {"CLIENT", "SETNAME", "victim"})));
  REQUIRE(run(io, cmd(admin, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"})));
  // The first command may find the dead connection; within a few tries it is back.
  bool back = false;
  for (int i = 0; i < 5 && !back; ++i) {
    auto r = run(io, cmd(c, {"PING"}));
    back = r && r->str == "PONG";
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(back);

  server.stop();
  auto down = run(io, cmd(c, {"PING"}));
  CHECK_FALSE(down);
  server.start();
  back = false;
  for (int i = 0; i < 40 && !back; ++i) {
    auto r = run(io, cmd(c, {"PING"}));
    back = r && r->str == "PONG";
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(back);
}

TEST_CASE("AUTH with a password; without one the server says NOAUTH") {
  redis_server server("s3cret-pass");
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  auto ok = run(io, cmd(c, {"PING"}));
  REQUIRE(ok);
  CHECK(ok->str == "PONG");
  auto cfg = client_settings(server, short_timeout);
  cfg.password.clear();
  redis::client anonymous(io.get_executor(), cfg);
  auto refused = run(io, cmd(anonymous, {"PING"}));
  REQUIRE(refused);
  CHECK(refused->is_error());
  CHECK(refused->str.rfind("NOAUTH", 0) == 0);
  cfg.password = "wrong";
  redis::client wrong(io.get_executor(), cfg);
  CHECK_FALSE(run(io, cmd(wrong, {"PING"})));
}

TEST_CASE("after shutdown every command fails at once and nothing reconnects") {
  redis_server server;
  net::io_context io;
  redis::client c(io.get_executor(), client_settings(server, short_timeout));
  REQUIRE(run(io, cmd(c, {"PING"})));
  c.shutdown();
  CHECK_FALSE(c.connected());
  auto r = run(io, cmd(c, {"PING"}));
  CHECK_FALSE(r);
  CHECK_FALSE(c.connected());
  // Nothing is left on the event loop: it runs out of work.
  io.restart();
  io.run_for(std::chrono::milliseconds(500));
  CHECK(io.stopped());
}

TEST_CASE("a subscribed connection hands messages to its handler and still answers PING") {
  redis_server server;
  net::io_context io;
  redis::client sub(io.get_executor(), client_settings(server, short_timeout));
  redis::client pub(io.get_executor(), client_settings(server, short_timeout));
  std::vector<std::string> seen;
  sub.on_message([&seen](const std::string& channel, const std::string& payload) {
    seen.push_back(channel + "=" + payload);
  });
  auto subscribed = run(io, cmd(sub, {"SUBSCRIBE", "tg:test"}));
  REQUIRE(subscribed);
  REQUIRE(subscribed->elements.size() == 3);
  CHECK(subscribed->elements[0].str == "subscribe");
  auto delivered = run(io, cmd(pub, {"PUBLISH", "tg:test", "tenant-a"}));
  REQUIRE(delivered);
  CHECK(delivered->integer == 1);
  REQUIRE(run(io, cmd(pub, {"PUBLISH", "tg:test", std::string("b\0c", 3)})));
  REQUIRE(run(io, cmd(pub, {"PUBLISH", "tg:other", "not for us"})));
  // A PING between messages is answered in order, as a reply, not as a message.
  auto pong = run(io, cmd(sub, {"PING"}));
  REQUIRE(pong);
  CHECK_FALSE(pong->is_error());
  CHECK(seen == std::vector<std::string>{"tg:test=tenant-a", std::string("tg:test=b\0c", 11)});
}

// ---- Redis Cluster -------------------------------------------------------------------------

TEST_CASE("cluster: each key goes to the node that serves its slot; one seed finds them all") {
  redis_cluster cluster;
  net::io_context io;
  redis::client c(io.get_executor(), cluster_settings(cluster));
  for (int i = 0; i < 300; ++i) {
    auto set = run(io, cmd(c, {"SET", "key:" + std::to_string(i), std::to_string(i * 7)}));
    REQUIRE(set);
    REQUIRE(set->str == "OK");
  }
  for (int i = 0; i < 300; ++i) {
    auto get = run(io, cmd(c, {"GET", "key:" + std::to_string(i)}));
    REQUIRE(get);
    CHECK(get->str == std::to_string(i * 7));
  }
  // Every master holds some of the keys, and the client's slots agree with the server's.
  long long total = 0;
  for (int port : cluster.ports) {
    redis::client node(io.get_executor(), node_settings(port));
    auto size = run(io, cmd(node, {"DBSIZE"}));
    REQUIRE(size);
    CHECK(size->integer > 50);
    total += size->integer;
    for (const char* key : {"key:1", "tg:{ten_a}:b:x:1", "{user1000}.following", "a{b}c"}) {
      auto slot = run(io, cmd(node, {"CLUSTER", "KEYSLOT", key}));
      REQUIRE(slot);
      CHECK(slot->integer == redis::key_slot(key));
    }
  }
  CHECK(total == 300);
  // Commands without a key (pub/sub, PING) work too.
  auto pong = run(io, cmd(c, {"PING"}));
  REQUIRE(pong);
  CHECK(pong->str == "PONG");
}

TEST_CASE("cluster: EVALSHA loads its script on whichever node lacks it") {
  redis_cluster cluster;
  net::io_context io;
  redis::client c(io.get_executor(), cluster_settings(cluster));
  const redis::script s("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back("ev{" + std::to_string(i) + "}");
  for (int round = 1; round <= 2; ++round) {
    for (const auto& key : keys) {
      auto r = run(io, eval_on(c, s, key, "3"));
      REQUIRE(r);
      REQUIRE_FALSE(r->is_error());
      CHECK(r->integer == 3 * round);
    }
  }
  for (int port : cluster.ports) {
    redis::client node(io.get_executor(), node_settings(port));
    auto exists = run(io, cmd(node, {"SCRIPT", "EXISTS", s.sha1}));
    REQUIRE(exists);
    CHECK(exists->elements.at(0).integer == 1);
  }
}

TEST_CASE("cluster: a slot migration's ASK and MOVED redirects are followed") {
  redis_cluster cluster;
  net::io_context io;
  redis::client c(io.get_executor(), cluster_settings(cluster));
  REQUIRE(run(io, cmd(c, {"SET", "{mig}old", "1"}))->str == "OK");
  const auto slot = std::to_string(redis::key_slot("{mig}"));
  // Which node owns the slot: the one that answers a GET for it without a redirect.
  std::vector<std::unique_ptr<redis::client>> nodes;
  std::vector<std::string> ids;
  int owner = -1;
  for (std::size_t i = 0; i < cluster.ports.size(); ++i) {
    nodes.push_back(std::make_unique<redis::client>(io.get_executor(), node_settings(cluster.ports[i])));
    auto id = run(io, cmd(*nodes[i], {"CLUSTER", "MYID"}));
    REQUIRE(id);
    ids.push_back(id->str);
    auto get = run(io, cmd(*nodes[i], {"GET", "{mig}old"}));
    REQUIRE(get);
    if (!get->is_error()) owner = static_cast<int>(i);
  }
  REQUIRE(owner >= 0);
  auto& from = *nodes[static_cast<std::size_t>(owner)];
  const std::size_t target = (static_cast<std::size_t>(owner) + 1) % nodes.size();
  auto& to = *nodes[target];
  const auto& from_id = ids[static_cast<std::size_t>(owner)];
  const auto& to_id = ids[target];

  // Migration under way: keys still on the old owner are served there; a new key is ASKed
  // over to the importing node.
  REQUIRE(run(io, cmd(to, {"CLUSTER", "SETSLOT", slot, "IMPORTING", from_id}))->str == "OK");
  REQUIRE(run(io, cmd(from, {"CLUSTER", "SETSLOT", slot, "MIGRATING", to_id}))->str == "OK");
  CHECK(run(io, cmd(c, {"GET", "{mig}old"}))->str == "1");
  auto created = run(io, cmd(c, {"SET", "{mig}new", "2"}));
  REQUIRE(created);
  CHECK(created->str == "OK");
  REQUIRE(run(io, cmd(to, {"ASKING"}))->str == "OK");
  CHECK(run(io, cmd(to, {"GET", "{mig}new"}))->str == "2");  // it landed on the new node

  // Migration done: the old owner answers MOVED, which the client follows and remembers.
  REQUIRE_FALSE(run(io, cmd(from, {"MIGRATE", "127.0.0.1", std::to_string(cluster.ports[target]),
                                   "", "0", "5000", "KEYS", "{mig}old"}))
                    ->is_error());
  for (auto& n : nodes) REQUIRE(run(io, cmd(*n, {"CLUSTER", "SETSLOT", slot, "NODE", to_id}))->str == "OK");
  auto moved = run(io, cmd(c, {"GET", "{mig}old"}));
  REQUIRE(moved);
  CHECK(moved->str == "1");
  CHECK(run(io, cmd(c, {"GET", "{mig}new"}))->str == "2");
  auto incr = run(io, cmd(c, {"INCR", "{mig}old"}));
  REQUIRE(incr);
  CHECK(incr->integer == 2);
  // The old owner saw one redirected command from the client at most (the first GET); the
  // rest went straight to the new owner.
  auto stats = run(io, cmd(from, {"INFO", "errorstats"}));
  REQUIRE(stats);
  CHECK(stats->str.find("errorstat_MOVED:count=1") != std::string::npos);
}

// ---- TLS -----------------------------------------------------------------------------------

namespace {

redis::settings tls_settings_for(const redis_tls_server& s) {
  redis::settings cfg;
  cfg.port = static_cast<std::uint16_t>(s.port);
  cfg.command_timeout = std::chrono::milliseconds(2000);
  cfg.tls.enabled = true;
  cfg.tls.ca_file = s.certs + "/ca.crt";
  return cfg;
}

}  // namespace

TEST_CASE("TLS: commands travel over a connection whose certificate was verified") {
  redis_tls_server server;
  net::io_context io;
  redis::client c(io.get_executor(), tls_settings_for(server));
  auto set = run(io, cmd(c, {"SET", "k", std::string(100'000, 'x')}));  // several TLS records
  REQUIRE(set);
  CHECK(set->str == "OK");
  auto get = run(io, cmd(c, {"GET", "k"}));
  REQUIRE(get);
  CHECK(get->str == std::string(100'000, 'x'));
  const auto values = run(io, many_incr(c, 500));
  REQUIRE(values.size() == 500);
  CHECK(values.back() == 500);
  const redis::script s("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  auto ev = run(io, eval_on(c, s, "ev", "4"));
  REQUIRE(ev);
  CHECK(ev->integer == 4);
  // The server saw a TLS client: plain TCP to the same port gets nowhere.
  redis::settings plain;
  plain.port = static_cast<std::uint16_t>(server.port);
  plain.command_timeout = std::chrono::milliseconds(300);
  redis::client p(io.get_executor(), plain);
  auto r = run(io, cmd(p, {"PING"}));
  CHECK_FALSE((r && r->str == "PONG"));
}

TEST_CASE("TLS: an untrusted CA, a wrong name or a missing client certificate is refused") {
  redis_tls_server server("yes");
  net::io_context io;
  auto cfg = tls_settings_for(server);
  // The server requires a client certificate: without one the connection fails.
  redis::client no_cert(io.get_executor(), cfg);
  CHECK_FALSE(run(io, cmd(no_cert, {"PING"})));
  cfg.tls.cert_file = server.certs + "/client.crt";
  cfg.tls.key_file = server.certs + "/client.key";
  redis::client with_cert(io.get_executor(), cfg);
  auto ok = run(io, cmd(with_cert, {"PING"}));
  REQUIRE(ok);
  CHECK(ok->str == "PONG");

  // One fresh client per variant of the settings, one PING each.
  auto ping_with = [&io](redis::settings variant) {
    redis::client c(io.get_executor(), std::move(variant));
    return run(io, cmd(c, {"PING"}));
  };
  auto untrusted = cfg;
  untrusted.tls.ca_file = server.certs + "/other-ca.crt";
  auto ur = ping_with(untrusted);
  REQUIRE_FALSE(ur);
  CHECK_THAT(ur.error().message, Catch::Contains("TLS") && Catch::Contains("certificate"));

  auto wrong_name = cfg;
  wrong_name.tls.server_name = "redis.example.com";  // the certificate names 127.0.0.1, localhost
  auto wr = ping_with(wrong_name);
  REQUIRE_FALSE(wr);
  CHECK_THAT(wr.error().message, Catch::Contains("hostname mismatch"));

  auto wrong_ip = cfg;
  wrong_ip.tls.server_name = "127.0.0.2";
  auto wir = ping_with(wrong_ip);
  REQUIRE_FALSE(wir);
  CHECK_THAT(wir.error().message, Catch::Contains("IP address mismatch"));

  auto by_name = cfg;
  by_name.tls.server_name = "localhost";
  auto nr = ping_with(by_name);
  REQUIRE(nr);
  CHECK(nr->str == "PONG");

  auto missing_ca = cfg;
  missing_ca.tls.ca_file = server.certs + "/no-such-ca.crt";
  auto mr = ping_with(missing_ca);
  REQUIRE_FALSE(mr);
  CHECK_THAT(mr.error().message, Catch::Contains("no-such-ca.crt"));
}
