// A generic HTTP/1.1 server shell on Boost.Beast and C++20 coroutines: one io_context per I/O
// thread, one coroutine per connection, keep-alive and pipelining, limits on header and body size,
// read/idle/write timeouts, a connection cap, and graceful shutdown on SIGTERM/SIGINT (stop
// accepting, close idle connections, let in-flight requests finish up to the drain timeout).
// It knows nothing about OpenAI: listeners hand each parsed request to a handler coroutine, and
// may check a request's header (authorization) before any of its body is read.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "core/client_stream.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/http1_parser.hpp"
#include "core/http_request.hpp"
#include "core/limits.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace tollgate::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// A client connection: one deadline, enforced by its I/O thread's sweeper (client_stream.hpp).
using tcp_stream = client_stream;

using response = bhttp::response<bhttp::string_body>;

struct server_limits {
  std::uint64_t header_limit_bytes = limits::header_limit_bytes_default;
  std::uint64_t body_limit_bytes = limits::body_limit_bytes_default;
  std::uint64_t request_read_timeout_ms = limits::request_read_timeout_ms_default;
  std::uint64_t keepalive_idle_timeout_ms = limits::keepalive_idle_timeout_ms_default;
  std::uint64_t client_write_timeout_ms = limits::client_write_timeout_ms_default;
  std::uint64_t max_connections = limits::max_connections_default;
  std::uint64_t drain_timeout_ms = limits::drain_timeout_ms_default;

  static server_limits from(const server_config& c);
};

// The header fields of a whole response as wire text ("Name: value\r\n" each), written as
// they are added: cheaper than a field container for the request path's answers. The server
// adds Connection and Content-Length itself. A field whose name is not a token, or whose value
// holds CR, LF or NUL, is not written.
class response_fields {
 public:
  response_fields& add(std::string_view name, std::string_view value);
  std::string_view text() const { return text_; }

 private:
  std::string text_;
};

// One request on one connection, handed to a handler. The handler answers through the send_*
// helpers, which apply the write timeout and report a failed write (client gone) as `false`.
class exchange {
 public:
  exchange(tcp_stream& stream, request& req, unsigned worker_index,
           std::chrono::milliseconds write_timeout, bool close_after)
      : stream_(stream),
        req_(req),
        worker_index_(worker_index),
        write_timeout_(write_timeout),
        close_after_(close_after),
        received_at_(std::chrono::steady_clock::now()) {}

  request& req() { return req_; }
  // The request target without its query string.
  std::string_view path() const;
  unsigned worker_index() const { return worker_index_; }
  std::chrono::steady_clock::time_point received_at() const { return received_at_; }
  tcp_stream& stream() { return stream_; }

  // A whole response. Sets version, keep-alive and Content-Length; a HEAD request gets the
  // body's length and no body, a 1xx, 204 or 304 answer neither.
  net::awaitable<bool> send(response res);
  // The same from a status, the fields and the body.
  net::awaitable<bool> send(unsigned status, const response_fields& fields, std::string_view body);
  // A JSON body with `status` (200, 201, ...); `request_id` goes in x-request-id when not empty.
  net::awaitable<bool> send_json(unsigned status, std::string body,
                                 std::string_view request_id = {});
  // An OpenAI-shaped error response; `request_id` is echoed in x-request-id when not empty.
  net::awaitable<bool> send_error(api_error error, std::string_view request_id = {});
  // 405 naming the method and path, with an Allow header listing `allowed`.
  net::awaitable<bool> send_method_not_allowed(std::string_view allowed,
                                               std::string_view request_id = {});
  // 404 "Invalid URL (METHOD /path)", as OpenAI answers unknown paths.
  net::awaitable<bool> send_unknown_url(std::string_view request_id = {});
  // A chunked response: the header first, then chunks, then the terminating chunk.
  net::awaitable<bool> send_chunked_header(bhttp::response<bhttp::empty_body> header);
  net::awaitable<bool> send_chunk(std::string_view data);
  net::awaitable<bool> send_last_chunk();
  // The terminating chunk with trailer fields (announced in the header's `Trailer`).
  net::awaitable<bool> send_last_chunk(const std::vector<std::pair<std::string, std::string>>& trailers);

  // Watches the client connection while the handler waits on something else (an upstream): if
  // the client closes it, `on_gone` runs once, so the handler can cancel that work. A pipelined
  // request arriving meanwhile is left unread for the next exchange. Watching stops by itself
  // before anything is written to the client.
  void watch_for_disconnect(std::function<void()> on_gone);

  // Whether the connection ends after this exchange (client asked, server draining, or error).
  bool close_after() const { return close_after_; }
  void set_close_after() { close_after_ = true; }
  // True once a write to the client failed: the client went away.
  bool client_gone() const { return client_gone_; }
  unsigned status() const { return status_; }
  // A short, bounded label naming what the request was routed to (for metrics). Must be a
  // string literal or otherwise live as long as the server: it is cached by address.
  void set_route(std::string_view route) { route_ = route; }
  std::string_view route() const { return route_; }
  // What the listener's pre-body check handed on for this request (null when none).
  const std::shared_ptr<const void>& checked() const { return checked_; }

 private:
  friend class server;
  bool write_finished(boost::system::error_code ec);
  struct watch_state;
  static void arm_watch(std::shared_ptr<watch_state> state, tcp_stream::socket_type& socket);
  void stop_watching();

  tcp_stream& stream_;
  std::shared_ptr<watch_state> watch_;
  request& req_;
  unsigned worker_index_;
  std::chrono::milliseconds write_timeout_;
  bool close_after_;
  bool client_gone_ = false;
  unsigned status_ = 0;
  std::string_view route_ = "unmatched";
  std::chrono::steady_clock::time_point received_at_;
  std::shared_ptr<const void> checked_;
};

using handler = std::function<net::awaitable<void>(exchange&)>;

// Runs once a request's header is read, before `100 Continue` is sent or any body byte is read:
// an error is answered at once and the connection closes with the body unread. `peer` is the
// client's address. The request's body is empty at this point.
// `refused` is answered at once; otherwise `checked` (may be null) goes to the request's handler
// (exchange::checked()), which can use what the check found (an authenticated caller) instead
// of doing the same work again.
struct pre_body_verdict {
  std::optional<api_error> refused;
  std::shared_ptr<const void> checked;
};
using pre_body_check = std::function<net::awaitable<pre_body_verdict>(
    const request& header, const net::ip::address& peer)>;

struct listener_spec {
  std::string name;  // metrics label, e.g. "api" or "admin"
  listen_address address;
  handler on_request;
  // Keep accepting while draining (health and metrics stay reachable, /readyz can say 503).
  // Its connections do not hold the drain up.
  bool serve_while_draining = false;
  // Optional: a larger body limit for some requests (file uploads), by method and target;
  // 0 keeps the server's limit. Called once a request's header has been read.
  std::function<std::uint64_t(bhttp::verb method, std::string_view target)> body_limit_for = {};
  std::uint64_t body_limit_max = 0;  // the largest body_limit_for may return
  // Optional: authorization before resources (see pre_body_check).
  pre_body_check before_body = {};
  // Open connections this listener accepts; 0 = the server's max_connections. Each listener
  // counts its own, so a flood on one never locks another out.
  std::uint64_t max_connections = 0;
};

class server {
 public:
  server(server_limits limits, unsigned threads, logger& log, metrics::registry& registry);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds and listens now (throws std::runtime_error naming the address if that fails).
  void add_listener(listener_spec spec);
  // Runs the I/O threads (the caller's thread is one of them); returns after shutdown.
  void run();
  // Starts a graceful shutdown; safe from any thread.
  void request_stop();
  // Runs `hook(worker_index)` on each I/O thread once the drain is over, before that thread's
  // event loop is let run out of work: for clients that keep a connection (and a read) open,
  // which must close it for the thread to end. Register before run().
  void add_drain_hook(std::function<void(unsigned)> hook) { drain_hooks_.push_back(std::move(hook)); }
  // Runs on every worker (with its index) when the drain times out, before the event loops
  // stop with requests still open: their handlers record what they have so far.
  void add_drain_timeout_hook(std::function<void(unsigned)> hook) {
    drain_timeout_hooks_.push_back(std::move(hook));
  }
  bool draining() const { return draining_.load(); }
  unsigned thread_count() const { return static_cast<unsigned>(workers_.size()); }
  net::io_context& io(unsigned worker_index) { return workers_[worker_index]->ioc; }

 private:
  struct worker {
    // Declared before ioc: destroying ioc destroys unfinished connection coroutines, which
    // still unregister themselves here.
    std::unordered_set<tcp_stream*> idle_streams;  // waiting for the next request
    // The connections' deadlines; likewise declared before ioc (the streams unregister).
    deadline_sweeper sweeper;
    // Request metrics children by (listener, route, status), looked up once per worker so the
    // hot path needs no registry lock.
    struct request_metrics {
      metrics::counter* total;
      metrics::latency_histogram* duration;
    };
    // Keyed by listener, route (a static string: its address is enough) and status.
    std::map<std::tuple<const void*, const char*, unsigned>, request_metrics> request_metrics_cache;
    net::io_context ioc{1};
    net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
    unsigned index = 0;
    ~worker() { sweeper.stop(); }  // its timer goes before ioc; the sweeper itself after
  };
  struct listener;

  net::awaitable<void> accept_loop(listener& l);
  net::awaitable<void> session(worker& w, listener& l, tcp_stream::socket_type socket);
  net::awaitable<http1::outcome> read_head(tcp_stream& stream, beast::flat_buffer& buffer,
                                           http1::request_head& head, std::size_t& head_bytes);
  net::awaitable<http1::outcome> read_body(tcp_stream& stream, beast::flat_buffer& buffer,
                                           const http1::request_head& head,
                                           std::uint64_t body_limit, std::string& body);
  // `method` and `version`: the request's, once its head was read (a HEAD answer has no body).
  net::awaitable<void> reject(tcp_stream& stream, worker& w, listener& l, api_error error,
                              const char* route = "unreadable",
                              bhttp::verb method = bhttp::verb::unknown, unsigned version = 11);
  void begin_drain();
  void finish_drain();
  void session_ended(listener& l);

  server_limits limits_;
  logger& log_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<std::unique_ptr<listener>> listeners_;
  std::vector<std::function<void(unsigned)>> drain_hooks_;
  std::vector<std::function<void(unsigned)>> drain_timeout_hooks_;
  std::unique_ptr<net::signal_set> signals_;
  std::unique_ptr<net::steady_timer> drain_timer_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> destroying_{false};
  std::atomic<std::uint64_t> sessions_{0};        // all open connections
  std::atomic<std::uint64_t> drain_sessions_{0};  // those the drain waits for
  std::atomic<bool> drain_finished_{false};
  std::atomic<unsigned> next_worker_{0};

  metrics::family<metrics::gauge>& connections_active_;
  metrics::family<metrics::counter>& connections_rejected_;
  metrics::family<metrics::counter>& requests_total_;
  metrics::family<metrics::latency_histogram>& request_duration_;
};

}  // namespace tollgate::http
