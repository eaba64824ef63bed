// Client side of an OpenAI-compatible HTTP upstream, over plain TCP or TLS (https): a keep-alive
// connection pool per I/O thread and endpoint (with the endpoint's last TLS session, for
// resumption, and the thread's routing state: requests in flight, the retry budget, the
// concurrency cap's queue) and one call object per attempt at one endpoint, with connect,
// first-byte and idle timeouts. Bodies are read piece by piece so streams pass through as they
// arrive. Choosing the endpoint and retrying is upstream_exchange's (upstream_exchange.hpp).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <random>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/balancer.hpp"
#include "backends/upstream_group.hpp"
#include "backends/upstream_tls.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"

namespace tollgate::backends {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// A TCP connection to an upstream, bound to the I/O thread's io_context executor (cheaper to
// copy per operation than the type-erased any_io_executor).
using upstream_stream = beast::basic_stream<net::ip::tcp, net::io_context::executor_type>;
using upstream_tls_stream = beast::ssl_stream<upstream_stream>;

// A connection to an upstream: plain TCP, or TLS over TCP for an https upstream. Timeouts are
// set on the TCP layer and cover the TLS records above it.
class upstream_connection {
 public:
  explicit upstream_connection(net::io_context::executor_type ex) : plain_(std::in_place, ex) {}
  upstream_connection(net::io_context::executor_type ex, net::ssl::context& ctx)
      : tls_(std::in_place, ex, ctx) {}

  upstream_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  upstream_tls_stream* tls() { return tls_ ? &*tls_ : nullptr; }

  // A TLS connection whose session (and, in TLS 1.3, the tickets that arrive after the
  // handshake) has not been kept for resumption yet.
  bool session_unsaved = false;

 private:
  std::optional<upstream_stream> plain_;
  std::optional<upstream_tls_stream> tls_;
};

struct upstream_failure {
  enum class kind {
    connect,      // resolve or connect failed
    timeout,      // connect, first byte or idle timeout
    closed,       // connection closed or reset mid-exchange
    protocol,     // not valid HTTP
    too_large,    // response over response_limit_bytes
    certificate,  // TLS: the upstream's certificate could not be verified
    tls,          // TLS: the handshake failed otherwise
    overloaded,   // the upstream's concurrency cap: its queue is full or the wait timed out
  };
  kind what;
  std::string detail;  // for the client: says what happened without internals
  std::string reason;  // for the log only (OpenSSL's reason); may be empty
  // Nothing of the request can have been processed: the connection (or TLS handshake) failed,
  // or it was closed or reset before any byte of a response. Another endpoint may take it.
  bool retryable = false;

  // 502 for everything but timeouts (504) and overload (503); the message names the upstream.
  api_error to_api_error(std::string_view upstream_name) const;
  std::string_view label() const;  // metrics label: connect_error, timeout, ...
};

// One I/O thread's side of the upstreams: idle keep-alive connections and the last TLS session
// of each endpoint, requests in flight there (for the balancer), each upstream's retry budget
// and concurrency cap with its queue. Not thread-safe: each I/O thread owns one, so no locks.
class upstream_pool {
 public:
  // A request waiting for a slot under the upstream's concurrency cap.
  struct slot_waiter {
    explicit slot_waiter(net::io_context::executor_type ex) : timer(ex) {}
    net::steady_timer timer;
    bool granted = false;
  };
  struct per_endpoint {
    std::vector<std::pair<std::unique_ptr<upstream_connection>,
                          std::chrono::steady_clock::time_point>> idle;
    ssl_session_ptr session;
    std::uint64_t in_flight = 0;  // this thread's requests at the endpoint
  };
  struct per_upstream {
    per_upstream(const upstream_config& config, upstream_group* group);
    upstream_group* group;
    std::vector<per_endpoint> endpoints;
    retry_budget budget;
    std::uint64_t active = 0;  // requests holding a slot (with a concurrency cap)
    std::deque<slot_waiter*> waiting;
  };

  explicit upstream_pool(net::io_context::executor_type executor,
                         std::shared_ptr<upstream_groups> groups);

  net::io_context::executor_type executor() const { return executor_; }
  // The thread's state of `upstream` (made on first use).
  per_upstream& state(const upstream_config& upstream);
  std::uint64_t random() { return rng_(); }

  // An idle connection to endpoint `ep` to reuse, or nullptr.
  std::unique_ptr<upstream_connection> take(const upstream_config& upstream, std::size_t ep);
  void give_back(const upstream_config& upstream, std::size_t ep,
                 std::unique_ptr<upstream_connection> conn);
  std::size_t idle_count() const;

  // A new connection, with TLS for an https endpoint; nullptr if its context is missing.
  std::unique_ptr<upstream_connection> make_connection(const upstream_config& upstream,
                                                       std::size_t ep);
  // The session to offer on a new TLS connection to the endpoint (null: none yet).
  SSL_SESSION* session(const upstream_config& upstream, std::size_t ep);
  // Keeps the connection's current session for the next new connection, if it is resumable.
  void save_session(const upstream_config& upstream, std::size_t ep, upstream_connection& conn);
  void count_handshake(const upstream_config& upstream, bool resumed);

 private:
  net::io_context::executor_type executor_;
  std::shared_ptr<upstream_groups> groups_;
  metrics::child_cache<metrics::counter> handshakes_;
  std::unordered_map<std::string, std::unique_ptr<per_upstream>> upstreams_;
  std::minstd_rand rng_;
};

// One request/response exchange with one endpoint of an upstream (one attempt).
class upstream_call {
 public:
  // Holds the pool by shared_ptr: a call destroyed late (shutdown) may still return its connection.
  upstream_call(std::shared_ptr<upstream_pool> pool, const upstream_config& upstream,
                std::size_t endpoint);
  ~upstream_call();
  upstream_call(const upstream_call&) = delete;
  upstream_call& operator=(const upstream_call&) = delete;

  // POSTs `body` (JSON; it must outlive the call) to the endpoint's base_path + `path` and
  // reads the response head. A reused connection that turns out to be closed is replaced once,
  // transparently. `traceparent` ("" for none) is sent as that header (W3C trace context).
  net::awaitable<std::optional<upstream_failure>> start(std::string_view path,
                                                        std::string_view body,
                                                        std::string_view request_id,
                                                        std::string_view traceparent);
  // GETs `target` (as is: not under base_path) with `timeout_ms` for the whole head: the active
  // health check.
  net::awaitable<std::optional<upstream_failure>> get(std::string_view target,
                                                      std::uint64_t timeout_ms);
  std::size_t endpoint() const { return endpoint_; }

  unsigned status() const { return parser_->get().result_int(); }
  std::string_view content_type() const;
  std::string_view retry_after() const;  // the Retry-After header ("" if none)
  bool is_event_stream() const;

  // Reads the next piece of the body and appends it to `out`; sets `done` at the end.
  net::awaitable<std::optional<upstream_failure>> read_some(std::string& out, bool& done);
  // Reads the rest of the body into `out`.
  net::awaitable<std::optional<upstream_failure>> read_all(std::string& out);

  // Closes the connection now, cancelling the request upstream (the client went away). Safe
  // while an operation of this call is pending: it then fails, and the call fails for good.
  void abort();

 private:
  void reset_parser();
  net::awaitable<std::optional<upstream_failure>> connect();
  net::awaitable<std::optional<upstream_failure>> handshake(upstream_connection& conn);
  void close_connection();
  net::awaitable<std::optional<upstream_failure>> exchange_head(bool& retryable);
  net::awaitable<std::optional<upstream_failure>> send(std::string_view method,
                                                       std::string_view target,
                                                       std::string_view request_id,
                                                       std::string_view traceparent);

  std::shared_ptr<upstream_pool> pool_;
  const upstream_config& upstream_;
  std::size_t endpoint_;
  const upstream_endpoint_config& ep_;
  std::uint64_t head_timeout_ms_;
  std::unique_ptr<upstream_connection> stream_;
  bool reused_ = false;
  bool aborted_ = false;  // abort() was called: nothing more is sent or read
  beast::flat_buffer buffer_;
  std::string request_head_;  // request line and headers, serialized once
  std::string_view request_body_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_;
};

}  // namespace tollgate::backends
