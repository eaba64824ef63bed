// The asynchronous Redis client: see redis_client.hpp.
#include "metering/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>

namespace tollgate::redis {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk_bytes = 16 * 1024;
constexpr auto reconnect_backoff_min = std::chrono::milliseconds(50);
constexpr auto reconnect_backoff_max = std::chrono::milliseconds(2000);

reply convert(const redisReply* r) {
  reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = reply::kind::string; break;
    case REDIS_REPLY_STATUS: out.type = reply::kind::status; break;
    case REDIS_REPLY_ERROR: out.type = reply::kind::error; break;
    case REDIS_REPLY_INTEGER: out.type = reply::kind::integer; break;
    case REDIS_REPLY_ARRAY: out.type = reply::kind::array; break;
    default: out.type = reply::kind::nil; break;
  }
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR) {
    out.str.assign(r->str, r->len);
  } else if (r->type == REDIS_REPLY_INTEGER) {
    out.integer = r->integer;
  } else if (r->type == REDIS_REPLY_ARRAY) {
    out.elements.reserve(r->elements);
    for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
  }
  return out;
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(),
                                       lens.data());
  if (n > 0) out.append(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
}

}  // namespace

script::script(std::string src) : source(std::move(src)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source.data()), source.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned char c : digest) {
    sha1.push_back(hex[c >> 4]);
    sha1.push_back(hex[c & 15]);
  }
}

// One command waiting for its reply: the timer is cancelled when the reply (or a failure) is in.
struct pending {
  explicit pending(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  std::optional<redis_result> result;
};

struct detail::connection_state {
  connection_state(net::any_io_executor e, settings s) : ex(e), cfg(std::move(s)), socket(e) {}
  ~connection_state() {
    if (reader != nullptr) redisReaderFree(reader);
  }

  net::any_io_executor ex;
  settings cfg;
  tcp::socket socket;
  redisReader* reader = nullptr;
  bool connected = false;
  bool connecting = false;
  bool shut_down = false;  // shutdown() was called: never connect again
  bool writing = false;
  std::uint64_t generation = 0;  // one per connection; loops of an older one stop
  std::string outbox;            // formatted commands not yet written
  std::deque<std::shared_ptr<pending>> inflight;          // in the order sent
  std::deque<std::shared_ptr<pending>> waiting_connect;   // commands waiting for a connection
  std::function<void(const std::string&, const std::string&)> on_message;  // pub/sub
  clock::time_point next_attempt{};
  std::chrono::milliseconds backoff{0};

  // Ends the connection: every command in flight fails with `why`.
  void fail_all(const std::string& why) {
    ++generation;
    connected = false;
    writing = false;
    outbox.clear();
    boost::system::error_code ec;
    socket.close(ec);
    if (reader != nullptr) {
      redisReaderFree(reader);
      reader = nullptr;
    }
    auto failed = std::move(inflight);
    inflight.clear();
    for (auto& p : failed) {
      if (!p->result) p->result = redis_error{why};
      p->timer.cancel();
    }
  }

  void wake_connect_waiters() {
    auto waiters = std::move(waiting_connect);
    waiting_connect.clear();
    for (auto& p : waiters) p->timer.cancel();
  }
};

namespace {

using state_ptr = std::shared_ptr<detail::connection_state>;

net::awaitable<void> read_loop(state_ptr st, std::uint64_t gen) {
  std::vector<char> buf(read_chunk_bytes);
  for (;;) {
    auto [ec, n] = co_await st->socket.async_read_some(net::buffer(buf),
                                                       net::as_tuple(net::use_awaitable));
    if (st->generation != gen) co_return;
    if (ec) {
      st->fail_all("the Redis connection was lost: " + ec.message());
      co_return;
    }
    if (redisReaderFeed(st->reader, buf.data(), n) != REDIS_OK) {
      st->fail_all("Redis protocol error");
      co_return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(st->reader, &raw) != REDIS_OK) {
        st->fail_all("Redis protocol error");
        co_return;
      }
      if (raw == nullptr) break;
      reply r = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      if (st->on_message && r.type == reply::kind::array && r.elements.size() == 3 &&
          r.elements[0].str == "message") {
        st->on_message(r.elements[1].str, r.elements[2].str);
        continue;
      }
      if (st->inflight.empty()) {
        st->fail_all("Redis sent a reply nobody asked for");
        co_return;
      }
      auto p = st->inflight.front();
      st->inflight.pop_front();
      p->result = std::move(r);
      p->timer.cancel();
    }
  }
}

net::awaitable<void> write_loop(state_ptr st, std::uint64_t gen) {
  std::string data;
  while (st->generation == gen && !st->outbox.empty()) {
    data.clear();
    data.swap(st->outbox);
    auto [ec, n] = co_await net::async_write(st->socket, net::buffer(data),
                                             net::as_tuple(net::use_awaitable));
    (void)n;
    if (st->generation != gen) co_return;
    if (ec) {
      st->fail_all("writing to Redis failed: " + ec.message());
      co_return;
    }
  }
  if (st->generation == gen) st->writing = false;
}

// Queues one command on the open connection and waits for its reply or the timeout.
net::awaitable<redis_result> send(state_ptr st, std::vector<std::string> args) {
  append_command(st->outbox, args);
  auto p = std::make_shared<pending>(st->ex);
  p->timer.expires_after(st->cfg.command_timeout);
  st->inflight.push_back(p);
  if (!st->writing) {
    st->writing = true;
    net::co_spawn(st->ex, write_loop(st, st->generation), net::detached);
  }
  co_await p->timer.async_wait(net::as_tuple(net::use_awaitable));
  if (p->result) co_return std::move(*p->result);
  // No reply in time: later replies could no longer be matched to their commands.
  st->fail_all("a command timed out");
  co_return redis_error{"Redis did not answer within " +
                        std::to_string(st->cfg.command_timeout.count()) + " ms"};
}

}  // namespace

client::client(net::any_io_executor ex, settings s)
    : st_(std::make_shared<detail::connection_state>(ex, std::move(s))) {}

client::~client() { st_->fail_all("the client was closed"); }

bool client::connected() const { return st_->connected; }

void client::on_message(
    std::function<void(const std::string& channel, const std::string& payload)> handler) {
  st_->on_message = std::move(handler);
}

void client::close(const std::string& why) { st_->fail_all(why); }

void client::shutdown() {
  st_->shut_down = true;
  st_->fail_all("the client was shut down");
  st_->wake_connect_waiters();
}

net::awaitable<bool> client::ensure_connected(std::string& error) {
  auto st = st_;
  if (st->shut_down) {
    error = "the Redis client is shut down";
    co_return false;
  }
  if (st->connected) co_return true;
  if (st->connecting) {
    auto p = std::make_shared<pending>(st->ex);
    p->timer.expires_after(st->cfg.connect_timeout + st->cfg.command_timeout);
    st->waiting_connect.push_back(p);
    co_await p->timer.async_wait(net::as_tuple(net::use_awaitable));
    if (!st->connected) error = "cannot connect to Redis";
    co_return st->connected;
  }
  if (clock::now() < st->next_attempt) {
    error = "Redis is unreachable (reconnecting)";
    co_return false;
  }
  st->connecting = true;
  const std::uint64_t gen = ++st->generation;
  bool ok = false;
  {
    // Connect with a deadline: a timer closes the socket if the connect takes too long.
    boost::system::error_code ec;
    const auto address = net::ip::make_address(st->cfg.host, ec);
    tcp::endpoint endpoint;
    if (!ec) {
      endpoint = tcp::endpoint(address, st->cfg.port);
    } else {
      tcp::resolver resolver(st->ex);
      auto [rec, results] = co_await resolver.async_resolve(
          st->cfg.host, std::to_string(st->cfg.port), net::as_tuple(net::use_awaitable));
      if (rec || results.empty()) {
        error = "cannot resolve Redis host " + st->cfg.host;
      } else {
        endpoint = *results.begin();
      }
    }
    if (error.empty()) {
      net::steady_timer deadline(st->ex);
      deadline.expires_after(st->cfg.connect_timeout);
      auto timed_out = std::make_shared<bool>(false);
      deadline.async_wait([st, timed_out](boost::system::error_code tec) {
        if (!tec) {
          *timed_out = true;
          boost::system::error_code ignored;
          st->socket.close(ignored);
        }
      });
      st->socket = tcp::socket(st->ex);
      auto [cec] = co_await st->socket.async_connect(endpoint, net::as_tuple(net::use_awaitable));
      deadline.cancel();
      if (!cec && !*timed_out && st->shut_down) {
        error = "the Redis client is shut down";
        st->socket.close(ec);
      } else if (cec || *timed_out) {
        error = "cannot connect to Redis at " + st->cfg.host + ":" +
                std::to_string(st->cfg.port) + ": " +
                (*timed_out ? std::string("timed out") : cec.message());
      } else {
        st->socket.set_option(tcp::no_delay(true), ec);
        st->reader = redisReaderCreate();
        st->connected = true;
        st->generation = gen;
        net::co_spawn(st->ex, read_loop(st, gen), net::detached);
        ok = true;
        if (!st->cfg.password.empty()) {
          std::vector<std::string> auth{"AUTH", st->cfg.password};
          auto r = co_await send(st, std::move(auth));
          if (!r || r->is_error()) {
            error = "Redis AUTH failed: " + (r ? r->str : r.error().message);
            st->fail_all(error);
            ok = false;
          }
        }
      }
    }
  }
  st->connecting = false;
  if (ok) {
    st->backoff = std::chrono::milliseconds(0);
  } else {
    st->backoff = std::min<std::chrono::milliseconds>(
        std::max<std::chrono::milliseconds>(st->backoff * 2, reconnect_backoff_min),
        reconnect_backoff_max);
    st->next_attempt = clock::now() + st->backoff;
  }
  st->wake_connect_waiters();
  co_return ok;
}

net::awaitable<redis_result> client::command(std::vector<std::string> args) {
  std::string error;
  if (!co_await ensure_connected(error)) co_return redis_error{error};
  co_return co_await send(st_, std::move(args));
}

net::awaitable<redis_result> client::eval(const script& s, std::vector<std::string> keys,
                                          std::vector<std::string> args) {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.push_back("EVALSHA");
  cmd.push_back(s.sha1);
  cmd.push_back(std::to_string(keys.size()));
  for (auto& k : keys) cmd.push_back(std::move(k));
  for (auto& a : args) cmd.push_back(std::move(a));
  std::vector<std::string> retry = cmd;
  auto r = co_await command(std::move(cmd));
  if (!r || !r->is_error() || r->str.rfind("NOSCRIPT", 0) != 0) co_return r;
  std::vector<std::string> load{"SCRIPT", "LOAD", s.source};
  auto loaded = co_await command(std::move(load));
  if (!loaded) co_return loaded;
  if (loaded->is_error()) co_return loaded;
  co_return co_await command(std::move(retry));
}

}  // namespace tollgate::redis
