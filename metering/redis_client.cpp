// The asynchronous Redis client: see redis_client.hpp.
#include "metering/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <deque>
#include <optional>

namespace tollgate::redis {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk_bytes = 16 * 1024;
constexpr auto reconnect_backoff_min = std::chrono::milliseconds(50);
constexpr auto reconnect_backoff_max = std::chrono::milliseconds(2000);
constexpr std::size_t cluster_slots = 16384;
constexpr int max_redirects = 5;  // MOVED/ASK hops for one command

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

}  // namespace

void append_resp_command(std::string& out, const std::vector<std::string>& args) {
  // Room for the worst case first (a length takes at most 20 digits), then one pass of plain
  // stores, then trimmed to what was written: no capacity check per piece. (resize grows the
  // capacity geometrically, so an outbox of many commands is not copied over and over.)
  std::size_t bound = 1 + 20 + 2;
  for (const auto& a : args) bound += 1 + 20 + 2 + a.size() + 2;
  const std::size_t start = out.size();
  out.resize(start + bound);
  char* p = out.data() + start;
  char* const limit = out.data() + out.size();
  const auto head = [&](char kind, std::size_t n) {
    *p++ = kind;
    p = std::to_chars(p, limit, n).ptr;
    *p++ = '\r';
    *p++ = '\n';
  };
  head('*', args.size());
  for (const auto& a : args) {
    head('$', a.size());
    std::memcpy(p, a.data(), a.size());
    p += a.size();
    *p++ = '\r';
    *p++ = '\n';
  }
  out.resize(static_cast<std::size_t>(p - out.data()));
}

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
  connection_state(net::any_io_executor e, settings s, std::shared_ptr<ssl::context> tls_ctx)
      : ex(e), cfg(std::move(s)), tls_context(std::move(tls_ctx)), socket(e) {}
  ~connection_state() {
    if (reader != nullptr) redisReaderFree(reader);
  }

  net::any_io_executor ex;
  settings cfg;
  std::shared_ptr<ssl::context> tls_context;  // set when cfg.tls.enabled
  tcp::socket socket;                          // plain connections
  // TLS connections: owns the socket. Shared with the read and write loops, which keep an old
  // stream alive until their aborted operations have completed.
  std::shared_ptr<ssl::stream<tcp::socket>> tls;
  std::string tls_setup_error;  // the TLS settings could not be loaded
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
    tcp_socket().close(ec);
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

  tcp::socket& tcp_socket() { return tls ? tls->next_layer() : socket; }

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
  const auto tls = st->tls;
  for (;;) {
    auto [ec, n] =
        tls ? co_await tls->async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable))
            : co_await st->socket.async_read_some(net::buffer(buf),
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
    const auto tls = st->tls;
    auto [ec, n] =
        tls ? co_await net::async_write(*tls, net::buffer(data), net::as_tuple(net::use_awaitable))
            : co_await net::async_write(st->socket, net::buffer(data),
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

// Queues one command (after an ASKING when `asking`) on the open connection and waits for its
// reply or the timeout. `args` is formatted before the first suspension.
net::awaitable<redis_result> send(state_ptr st, const std::vector<std::string>& args,
                                  bool asking = false) {
  if (asking) {
    static const std::vector<std::string> asking_cmd{"ASKING"};
    append_resp_command(st->outbox, asking_cmd);
    // Its +OK is matched and dropped; the command's own timer covers both.
    st->inflight.push_back(std::make_shared<pending>(st->ex));
  }
  append_resp_command(st->outbox, args);
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

// Wraps the connected socket in TLS and handshakes: the server's certificate must chain to the
// configured CAs and name the server (tls.server_name, else the host; an IP address is checked
// against the certificate's IP addresses). Returns "" or what failed.
net::awaitable<std::string> tls_handshake(state_ptr st) {
  if (!st->tls_context) co_return st->tls_setup_error;
  st->tls = std::make_shared<ssl::stream<tcp::socket>>(std::move(st->socket), *st->tls_context);
  const auto tls = st->tls;
  const std::string& name = st->cfg.tls.server_name.empty() ? st->cfg.host : st->cfg.tls.server_name;
  // OpenSSL checks the name during verification (and names a mismatch as such).
  boost::system::error_code ec;
  net::ip::make_address(name, ec);
  SSL* native = tls->native_handle();
  if (ec) {
    SSL_set_tlsext_host_name(native, name.c_str());  // SNI: names only
    SSL_set1_host(native, name.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), name.c_str());
  }
  tls->set_verify_mode(ssl::verify_peer);
  auto [hec] = co_await tls->async_handshake(ssl::stream_base::client,
                                             net::as_tuple(net::use_awaitable));
  if (!hec) co_return std::string();
  std::string why = hec.message();
  const long verify = SSL_get_verify_result(tls->native_handle());
  if (verify != X509_V_OK) why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
  co_return why;
}

// Opens the connection if it is not open (one attempt at a time; others wait for it), with
// AUTH when configured. After a failure, attempts back off from 50 ms up to 2 s.
net::awaitable<bool> ensure_connected(state_ptr st, std::string& error) {
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
    if (!st->connected) error = "cannot connect to Redis at " + st->cfg.host + ":" +
                                std::to_string(st->cfg.port);
    co_return st->connected;
  }
  if (clock::now() < st->next_attempt) {
    error = "Redis at " + st->cfg.host + ":" + std::to_string(st->cfg.port) +
            " is unreachable (reconnecting)";
    co_return false;
  }
  st->connecting = true;
  const std::uint64_t gen = ++st->generation;
  bool ok = false;
  {
    // Connect (and for TLS, handshake) with a deadline: a timer closes the socket if it takes
    // too long.
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
          st->tcp_socket().close(ignored);
        }
      });
      st->tls.reset();
      st->socket = tcp::socket(st->ex);
      auto [cec] = co_await st->socket.async_connect(endpoint, net::as_tuple(net::use_awaitable));
      if (!cec && !*timed_out && st->cfg.tls.enabled && !st->shut_down) {
        std::string tls_error = co_await tls_handshake(st);
        if (!tls_error.empty()) {
          deadline.cancel();
          error = "TLS with Redis at " + st->cfg.host + ":" + std::to_string(st->cfg.port) +
                  " failed: " + (*timed_out ? std::string("timed out") : tls_error);
          st->tcp_socket().close(ec);
          st->tls.reset();
        }
      }
      deadline.cancel();
      if (!error.empty()) {
        // the TLS handshake failed
      } else if (!cec && !*timed_out && st->shut_down) {
        error = "the Redis client is shut down";
        st->tcp_socket().close(ec);
      } else if (cec || *timed_out) {
        error = "cannot connect to Redis at " + st->cfg.host + ":" +
                std::to_string(st->cfg.port) + ": " +
                (*timed_out ? std::string("timed out") : cec.message());
      } else {
        st->tcp_socket().set_option(tcp::no_delay(true), ec);
        st->reader = redisReaderCreate();
        st->connected = true;
        st->generation = gen;
        net::co_spawn(st->ex, read_loop(st, gen), net::detached);
        ok = true;
        if (!st->cfg.password.empty()) {
          const std::vector<std::string> auth{"AUTH", st->cfg.password};
          auto r = co_await send(st, auth);
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

// One command on one node's connection, connecting first if needed.
net::awaitable<redis_result> call_node(state_ptr st, const std::vector<std::string>& args,
                                       bool asking = false) {
  std::string error;
  if (!co_await ensure_connected(st, error)) co_return redis_error{error};
  co_return co_await send(st, args, asking);
}

// A redirect in an error reply: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>".
struct redirect {
  bool ask = false;
  std::uint16_t slot = 0;
  node_address to;
};

std::optional<redirect> parse_redirect(const std::string& error) {
  redirect r;
  std::string_view rest;
  if (error.rfind("MOVED ", 0) == 0) {
    rest = std::string_view(error).substr(6);
  } else if (error.rfind("ASK ", 0) == 0) {
    r.ask = true;
    rest = std::string_view(error).substr(4);
  } else {
    return std::nullopt;
  }
  const auto space = rest.find(' ');
  const auto colon = rest.rfind(':');
  if (space == std::string_view::npos || colon == std::string_view::npos || colon < space) {
    return std::nullopt;
  }
  unsigned slot = 0;
  unsigned port = 0;
  const auto slot_text = rest.substr(0, space);
  const auto port_text = rest.substr(colon + 1);
  if (std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot).ec !=
          std::errc{} ||
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port).ec !=
          std::errc{} ||
      slot >= cluster_slots || port == 0 || port > 65535) {
    return std::nullopt;
  }
  r.slot = static_cast<std::uint16_t>(slot);
  r.to.host = std::string(rest.substr(space + 1, colon - space - 1));
  r.to.port = static_cast<std::uint16_t>(port);
  return r;
}

// The client side of TLS: trusted CAs (a file, or the system's), and a client certificate
// when configured. Returns null, with `error` set, when a file cannot be loaded.
std::shared_ptr<ssl::context> make_tls_context(const tls_settings& t, std::string& error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (t.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->load_verify_file(t.ca_file, ec);
  }
  if (ec) {
    error = "cannot load the TLS CA file " + t.ca_file + ": " + ec.message();
    return nullptr;
  }
  if (!t.cert_file.empty()) {
    ctx->use_certificate_chain_file(t.cert_file, ec);
    if (!ec) ctx->use_private_key_file(t.key_file, ssl::context::pem, ec);
    if (ec) {
      error = "cannot load the TLS client certificate " + t.cert_file + " / key " + t.key_file +
              ": " + ec.message();
      return nullptr;
    }
  }
  return ctx;
}

}  // namespace

// The connections by node and, in a cluster, which node serves each slot. Used on the
// client's one executor only.
struct detail::router {
  router(net::any_io_executor e, settings s) : ex(e), cfg(std::move(s)) {
    if (cfg.tls.enabled) tls_context = make_tls_context(cfg.tls, tls_context_error);
    node_index(cfg.host, cfg.port);
    if (cfg.cluster) {
      for (const auto& seed : cfg.more_seeds) node_index(seed.host, seed.port);
    }
  }

  net::any_io_executor ex;
  settings cfg;
  std::shared_ptr<ssl::context> tls_context;  // shared by every node's connection
  std::string tls_context_error;              // why the TLS settings could not be loaded
  std::vector<state_ptr> nodes;            // every node known; [0] is the first seed
  std::vector<std::uint16_t> slot_owner;   // slot -> index in nodes; empty until read
  bool map_stale = false;                  // a redirect or a lost node: read the map again
  bool refreshing = false;
  std::size_t keyless_node = 0;            // where commands without a key go
  std::function<void(const std::string&, const std::string&)> on_message;

  // The index of the node at host:port, adding a connection for it when it is new.
  std::size_t node_index(const std::string& host, std::uint16_t port) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i]->cfg.host == host && nodes[i]->cfg.port == port) return i;
    }
    settings node_cfg = cfg;
    node_cfg.host = host;
    node_cfg.port = port;
    node_cfg.more_seeds.clear();
    auto st = std::make_shared<detail::connection_state>(ex, std::move(node_cfg), tls_context);
    st->tls_setup_error = tls_context_error;
    st->on_message = on_message;
    nodes.push_back(std::move(st));
    return nodes.size() - 1;
  }
};

namespace {

using router_ptr = std::shared_ptr<detail::router>;

// Reads the slot map with CLUSTER SLOTS from the first node that answers, starting with the
// one keyless commands use. Slots that no node serves keep their last known owner.
net::awaitable<bool> read_slot_map(router_ptr rt, std::string& error) {
  rt->refreshing = true;
  const std::vector<std::string> cmd{"CLUSTER", "SLOTS"};
  bool ok = false;
  const std::size_t known = rt->nodes.size();
  for (std::size_t n = 0; n < known && !ok; ++n) {
    const std::size_t asked = (rt->keyless_node + n) % known;
    auto st = rt->nodes[asked];
    auto r = co_await call_node(st, cmd);
    if (!r) {
      error = r.error().message;
      continue;
    }
    if (r->type != reply::kind::array) {
      error = "CLUSTER SLOTS failed at " + st->cfg.host + ":" + std::to_string(st->cfg.port) +
              ": " + (r->is_error() ? r->str : std::string("not an array"));
      continue;
    }
    std::vector<std::uint16_t> owners = rt->slot_owner;
    if (owners.empty()) owners.assign(cluster_slots, static_cast<std::uint16_t>(asked));
    for (const auto& range : r->elements) {
      if (range.type != reply::kind::array || range.elements.size() < 3) continue;
      const auto& lo = range.elements[0];
      const auto& hi = range.elements[1];
      const auto& master = range.elements[2];
      if (lo.type != reply::kind::integer || hi.type != reply::kind::integer ||
          master.type != reply::kind::array || master.elements.size() < 2 ||
          master.elements[1].type != reply::kind::integer || lo.integer < 0 ||
          hi.integer >= static_cast<long long>(cluster_slots) || lo.integer > hi.integer) {
        continue;
      }
      std::string host = master.elements[0].str;
      // An empty or unknown endpoint means "the node you asked".
      if (host.empty() || host == "?") host = st->cfg.host;
      const auto index = rt->node_index(host, static_cast<std::uint16_t>(master.elements[1].integer));
      for (long long slot = lo.integer; slot <= hi.integer; ++slot) {
        owners[static_cast<std::size_t>(slot)] = static_cast<std::uint16_t>(index);
      }
    }
    rt->slot_owner = std::move(owners);
    rt->map_stale = false;
    ok = true;
  }
  rt->refreshing = false;
  co_return ok;
}

net::awaitable<void> refresh_slot_map(router_ptr rt) {
  std::string ignored;
  co_await read_slot_map(rt, ignored);
}

// Sends a command where it belongs and follows cluster redirects (at most a few hops). Sets
// `answered_by` to the node whose answer is returned.
net::awaitable<redis_result> dispatch(router_ptr rt, const std::vector<std::string>& args,
                                      std::size_t& answered_by) {
  if (!rt->cfg.cluster) {
    answered_by = 0;
    co_return co_await call_node(rt->nodes[0], args);
  }
  if (rt->slot_owner.empty()) {
    std::string error;
    if (!co_await read_slot_map(rt, error)) {
      co_return redis_error{"cannot read the Redis Cluster slot map: " + error};
    }
  } else if (rt->map_stale && !rt->refreshing) {
    rt->refreshing = true;  // before the spawned refresh runs, so that only one is started
    net::co_spawn(rt->ex, refresh_slot_map(rt), net::detached);
  }
  const auto key = routing_key(args);
  std::size_t node = key ? rt->slot_owner[key_slot(*key)] : rt->keyless_node;
  bool asking = false;
  for (int hop = 0;; ++hop) {
    auto st = rt->nodes[node];
    auto r = co_await call_node(st, args, asking);
    answered_by = node;
    if (!r) {
      // The node may have failed over: read the map again; keyless commands try another node.
      rt->map_stale = true;
      if (!key) rt->keyless_node = (node + 1) % rt->nodes.size();
      co_return r;
    }
    if (!r->is_error() || hop >= max_redirects) co_return r;
    const auto to = parse_redirect(r->str);
    if (!to) co_return r;
    node = rt->node_index(to->to.host, to->to.port);
    asking = to->ask;
    if (!to->ask) {
      rt->slot_owner[to->slot] = static_cast<std::uint16_t>(node);
      rt->map_stale = true;
    }
  }
}

}  // namespace

std::uint16_t key_slot(std::string_view key) {
  // Only the part between the first '{' and the next '}' is hashed, when it is not empty.
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  // CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
  std::uint16_t crc = 0;
  for (const char c : key) {
    crc ^= static_cast<std::uint16_t>(static_cast<unsigned char>(c) << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return static_cast<std::uint16_t>(crc % cluster_slots);
}

std::optional<std::string_view> routing_key(const std::vector<std::string>& args) {
  if (args.size() < 2) return std::nullopt;
  // Every cluster command passes here: compare without copying the name.
  const std::string_view command = args[0];
  auto is = [command](std::string_view upper) {
    return command.size() == upper.size() &&
           std::equal(command.begin(), command.end(), upper.begin(), [](char a, char b) {
             return std::toupper(static_cast<unsigned char>(a)) == b;
           });
  };
  if (is("EVALSHA") || is("EVAL") || is("EVALSHA_RO") || is("EVAL_RO") || is("FCALL") ||
      is("FCALL_RO")) {
    if (args.size() < 4 || args[2] == "0") return std::nullopt;
    return std::string_view(args[3]);
  }
  static constexpr std::string_view keyless[] = {
      "PING",     "AUTH",   "HELLO",  "SELECT",  "ECHO",    "QUIT",        "SUBSCRIBE",
      "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "PUBLISH", "PUBSUB", "SCRIPT", "FUNCTION",
      "CLUSTER",  "INFO",   "CONFIG", "CLIENT",  "COMMAND", "TIME",        "DBSIZE",
      "FLUSHALL", "FLUSHDB", "KEYS",  "SCAN",    "RANDOMKEY", "WAIT",      "ASKING",
      "READONLY", "READWRITE", "MULTI", "EXEC",  "DISCARD", "SHUTDOWN",    "DEBUG"};
  for (const auto k : keyless) {
    if (is(k)) return std::nullopt;
  }
  return std::string_view(args[1]);
}

client::client(net::any_io_executor ex, settings s)
    : rt_(std::make_shared<detail::router>(ex, std::move(s))) {}

client::~client() {
  for (auto& n : rt_->nodes) n->fail_all("the client was closed");
}

bool client::connected() const { return rt_->nodes[rt_->keyless_node]->connected; }

void client::on_message(
    std::function<void(const std::string& channel, const std::string& payload)> handler) {
  rt_->on_message = std::move(handler);
  for (auto& n : rt_->nodes) n->on_message = rt_->on_message;
}

void client::close(const std::string& why) {
  for (auto& n : rt_->nodes) n->fail_all(why);
}

void client::shutdown() {
  rt_->cfg.more_seeds.clear();
  for (auto& n : rt_->nodes) {
    n->shut_down = true;
    n->fail_all("the client was shut down");
    n->wake_connect_waiters();
  }
}

net::awaitable<redis_result> client::command(std::vector<std::string> args) {
  std::size_t answered_by = 0;
  co_return co_await dispatch(rt_, args, answered_by);
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
  std::size_t node = 0;
  auto r = co_await dispatch(rt_, cmd, node);
  if (!r || !r->is_error() || r->str.rfind("NOSCRIPT", 0) != 0) co_return r;
  // Scripts are cached per node: load it on the node that did not know it.
  const std::vector<std::string> load{"SCRIPT", "LOAD", s.source};
  auto loaded = co_await call_node(rt_->nodes[node], load);
  if (!loaded) co_return loaded;
  if (loaded->is_error()) co_return loaded;
  co_return co_await dispatch(rt_, cmd, node);
}

}  // namespace tollgate::redis
