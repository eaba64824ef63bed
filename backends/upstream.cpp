// Upstream HTTP client and per-thread connection pool: see upstream.hpp.
#include "backends/upstream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>

#include "core/limits.hpp"

namespace tollgate::backends {
namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t read_chunk_bytes = 16 * 1024;

std::chrono::milliseconds ms(std::uint64_t v) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(v));
}

upstream_failure failure_from(boost::system::error_code ec, const char* during) {
  using k = upstream_failure::kind;
  if (ec == beast::error::timeout) return {k::timeout, std::string("timed out ") + during, {}};
  if (ec == bhttp::error::body_limit) return {k::too_large, "response body over the limit", {}};
  if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::error::broken_pipe ||
      ec == bhttp::error::partial_message || ec == net::error::operation_aborted ||
      ec == net::ssl::error::stream_truncated) {
    return {k::closed, std::string("connection closed ") + during + " (" + ec.message() + ")", {}};
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
    return {k::protocol, std::string("invalid HTTP ") + during + " (" + ec.message() + ")", {}};
  }
  return {k::closed, std::string("failed ") + during + " (" + ec.message() + ")", {}};
}

// A reused connection that fails this way before any response byte was seen was most likely
// closed by the upstream while idle; the request can be sent again on a fresh connection.
bool stale_connection_error(boost::system::error_code ec) {
  return ec == bhttp::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::ssl::error::stream_truncated;
}

// Runs one I/O operation on the connection's outermost layer: TLS when there is one, else TCP.
// `op` is called with either stream type and returns the same awaitable type for both.
template <class Op>
auto on_stream(upstream_connection& conn, Op&& op) {
  return conn.tls() ? op(*conn.tls()) : op(conn.tcp());
}

}  // namespace

api_error upstream_failure::to_api_error(std::string_view upstream_name) const {
  const std::string where = "Upstream '" + std::string(upstream_name) + "' ";
  switch (what) {
    case kind::connect: {
      // No endpoint took the connection (an engine restarting, say): the client may retry as
      // soon as one is back.
      api_error e = upstream_unavailable(where + "is unreachable: " + detail);
      e.retry_after_s = 1;
      return e;
    }
    case kind::timeout:
      return upstream_timeout(where + detail);
    case kind::closed: {
      // The upstream went away mid-request (an engine killed, say): worth a retry too.
      api_error e = upstream_unavailable(where + detail);
      e.retry_after_s = 1;
      return e;
    }
    case kind::protocol:
      return upstream_unavailable(where + "answered with " + detail);
    case kind::too_large:
      return upstream_unavailable(where + "sent a " + detail);
    case kind::certificate:
    case kind::tls:
      return upstream_unavailable(where + detail);
    case kind::overloaded:
      return service_unavailable(where + detail, "upstream_overloaded", 1);
  }
  return upstream_unavailable(where + detail);
}

std::string_view upstream_failure::label() const {
  switch (what) {
    case kind::connect:
      return "connect_error";
    case kind::timeout:
      return "timeout";
    case kind::closed:
      return "closed";
    case kind::protocol:
      return "protocol_error";
    case kind::too_large:
      return "too_large";
    case kind::certificate:
      return "certificate_error";
    case kind::tls:
      return "tls_error";
    case kind::overloaded:
      return "overloaded";
  }
  return "error";
}

// ---- pool ----------------------------------------------------------------------------------

upstream_pool::per_upstream::per_upstream(const upstream_config& config, upstream_group* g)
    : group(g),
      endpoints(config.endpoints.size()),
      budget(config.retry_budget_percent, config.retry_budget_min_retries,
             static_cast<std::int64_t>(limits::upstream_retry_budget_window_ms)) {}

upstream_pool::upstream_pool(net::io_context::executor_type executor,
                             std::shared_ptr<upstream_groups> groups)
    : executor_(executor),
      groups_(std::move(groups)),
      handshakes_(groups_->handshakes()),
      rng_(std::random_device{}()) {}

upstream_pool::per_upstream& upstream_pool::state(const upstream_config& upstream) {
  auto it = upstreams_.find(upstream.name);
  if (it == upstreams_.end()) {
    it = upstreams_
             .emplace(upstream.name,
                      std::make_unique<per_upstream>(upstream, groups_->find(upstream.name)))
             .first;
  }
  return *it->second;
}

std::unique_ptr<upstream_connection> upstream_pool::take(const upstream_config& upstream,
                                                         std::size_t ep) {
  auto& list = state(upstream).endpoints[ep].idle;
  const auto now = std::chrono::steady_clock::now();
  while (!list.empty()) {
    auto c = std::move(list.back());
    list.pop_back();
    if (now - c.second < ms(limits::upstream_pooled_idle_ms_max) &&
        c.first->tcp().socket().is_open()) {
      return std::move(c.first);
    }
  }
  return nullptr;
}

void upstream_pool::give_back(const upstream_config& upstream, std::size_t ep,
                              std::unique_ptr<upstream_connection> conn) {
  auto& list = state(upstream).endpoints[ep].idle;
  if (list.size() >= upstream.max_idle_connections) return;  // closes it
  list.emplace_back(std::move(conn), std::chrono::steady_clock::now());
}

std::size_t upstream_pool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [name, u] : upstreams_) {
    for (const auto& e : u->endpoints) n += e.idle.size();
  }
  return n;
}

std::unique_ptr<upstream_connection> upstream_pool::make_connection(
    const upstream_config& upstream, std::size_t ep) {
  if (!upstream.endpoints[ep].tls) return std::make_unique<upstream_connection>(executor_);
  net::ssl::context* ctx = groups_->tls() ? groups_->tls()->find(upstream.name) : nullptr;
  if (ctx == nullptr) return nullptr;
  return std::make_unique<upstream_connection>(executor_, *ctx);
}

SSL_SESSION* upstream_pool::session(const upstream_config& upstream, std::size_t ep) {
  return state(upstream).endpoints[ep].session.get();
}

void upstream_pool::save_session(const upstream_config& upstream, std::size_t ep,
                                 upstream_connection& conn) {
  if (conn.tls() == nullptr) return;
  ssl_session_ptr current{SSL_get1_session(conn.tls()->native_handle())};
  if (!current || SSL_SESSION_is_resumable(current.get()) != 1) return;
  conn.session_unsaved = false;
  state(upstream).endpoints[ep].session = std::move(current);
}

void upstream_pool::count_handshake(const upstream_config& upstream, bool resumed) {
  handshakes_.with({upstream.name, resumed ? "true" : "false"}).inc();
}

// ---- call ----------------------------------------------------------------------------------

upstream_call::upstream_call(std::shared_ptr<upstream_pool> pool, const upstream_config& upstream,
                             std::size_t endpoint)
    : pool_(std::move(pool)),
      upstream_(upstream),
      endpoint_(endpoint),
      ep_(upstream.endpoints[endpoint]),
      head_timeout_ms_(upstream.first_byte_timeout_ms) {
  reset_parser();
}

void upstream_call::reset_parser() {
  parser_.emplace();
  parser_->body_limit(upstream_.response_limit_bytes);
}

upstream_call::~upstream_call() {
  // Only a connection whose response was read whole, with nothing extra buffered, is reusable.
  // By then a TLS 1.3 server's session tickets have arrived: keep the session for resumption.
  if (!stream_ || aborted_ || !parser_->is_done()) return;
  if (stream_->session_unsaved) pool_->save_session(upstream_, endpoint_, *stream_);
  if (stream_->tcp().socket().is_open() && parser_->keep_alive() && buffer_.size() == 0) {
    stream_->tcp().expires_never();
    pool_->give_back(upstream_, endpoint_, std::move(stream_));
  }
}

std::string_view upstream_call::content_type() const {
  return parser_->get()[bhttp::field::content_type];
}

std::string_view upstream_call::retry_after() const {
  return parser_->get()[bhttp::field::retry_after];
}

bool upstream_call::is_event_stream() const {
  return content_type().rfind("text/event-stream", 0) == 0;
}

void upstream_call::abort() {
  aborted_ = true;
  close_connection();
}

// Closes the socket but keeps the stream object: a pending operation on it completes with an
// error instead of touching a destroyed object.
void upstream_call::close_connection() {
  if (!stream_) return;
  boost::system::error_code ignored;
  stream_->tcp().socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_->tcp().socket().close(ignored);
}

net::awaitable<std::optional<upstream_failure>> upstream_call::connect() {
  if (aborted_) co_return upstream_failure{upstream_failure::kind::closed, "cancelled", {}};
  auto stream = pool_->make_connection(upstream_, endpoint_);
  if (!stream) {
    co_return upstream_failure{upstream_failure::kind::tls, "has no TLS settings", {}};
  }
  net::ip::tcp::resolver resolver(pool_->executor());
  auto [rec, endpoints] =
      co_await resolver.async_resolve(ep_.host, std::to_string(ep_.port), use_tuple);
  if (rec) {
    co_return upstream_failure{upstream_failure::kind::connect,
                               "cannot resolve " + ep_.host + " (" + rec.message() + ")",
                               {}};
  }
  // One deadline covers the TCP connect and, for https, the TLS handshake.
  stream->tcp().expires_after(ms(upstream_.connect_timeout_ms));
  auto [cec, endpoint] = co_await stream->tcp().async_connect(endpoints, use_tuple);
  if (cec) {
    if (cec == beast::error::timeout) {
      co_return upstream_failure{upstream_failure::kind::timeout, "connecting", {}};
    }
    co_return upstream_failure{
        upstream_failure::kind::connect,
        ep_.host + ":" + std::to_string(ep_.port) + " (" + cec.message() + ")",
        {}};
  }
  if (aborted_) co_return upstream_failure{upstream_failure::kind::closed, "cancelled", {}};
  boost::system::error_code ignored;
  stream->tcp().socket().set_option(net::ip::tcp::no_delay(true), ignored);
  if (stream->tls() != nullptr) {
    if (auto f = co_await handshake(*stream)) co_return f;
    if (aborted_) co_return upstream_failure{upstream_failure::kind::closed, "cancelled", {}};
  }
  stream_ = std::move(stream);
  reused_ = false;
  co_return std::nullopt;
}

// The TLS handshake of a new connection, offering the pool's last session of this upstream.
net::awaitable<std::optional<upstream_failure>> upstream_call::handshake(
    upstream_connection& conn) {
  SSL* ssl = conn.tls()->native_handle();
  prepare_tls_client(ssl, ep_.host, pool_->session(upstream_, endpoint_));
  auto [ec] = co_await conn.tls()->async_handshake(net::ssl::stream_base::client, use_tuple);
  if (ec) {
    if (ec == beast::error::timeout) {
      co_return upstream_failure{upstream_failure::kind::timeout, "connecting (TLS handshake)", {}};
    }
    bool certificate = false;
    std::string reason = tls_failure_reason(ssl, ec, certificate);
    if (certificate) {
      co_return upstream_failure{upstream_failure::kind::certificate,
                                 "is unavailable: its TLS certificate could not be verified",
                                 std::move(reason)};
    }
    co_return upstream_failure{upstream_failure::kind::tls,
                               "is unavailable: the TLS handshake failed", std::move(reason)};
  }
  pool_->count_handshake(upstream_, SSL_session_reused(ssl) == 1);
  conn.session_unsaved = true;
  // TLS 1.2: resumable now; TLS 1.3: after the tickets.
  pool_->save_session(upstream_, endpoint_, conn);
  co_return std::nullopt;
}

net::awaitable<std::optional<upstream_failure>> upstream_call::exchange_head(bool& retryable) {
  retryable = false;
  stream_->tcp().expires_after(ms(head_timeout_ms_));
  const std::array<net::const_buffer, 2> request{net::buffer(request_head_),
                                                 net::buffer(request_body_)};
  auto [wec, wn] = co_await on_stream(
      *stream_, [&](auto& s) { return net::async_write(s, request, use_tuple); });
  if (wec) {
    retryable = reused_ && stale_connection_error(wec);
    co_return failure_from(wec, "sending the request");
  }
  auto [rec, rn] = co_await on_stream(
      *stream_, [&](auto& s) { return bhttp::async_read_header(s, buffer_, *parser_, use_tuple); });
  if (rec) {
    retryable = reused_ && stale_connection_error(rec) && buffer_.size() == 0;
    co_return failure_from(rec, "waiting for the response");
  }
  co_return std::nullopt;
}

net::awaitable<std::optional<upstream_failure>> upstream_call::start(std::string_view path,
                                                                     std::string_view body,
                                                                     std::string_view request_id,
                                                                     std::string_view traceparent) {
  request_body_ = body;
  std::string target = ep_.base_path;
  target += path;
  co_return co_await send("POST", target, request_id, traceparent);
}

net::awaitable<std::optional<upstream_failure>> upstream_call::get(std::string_view target,
                                                                   std::uint64_t timeout_ms) {
  request_body_ = {};
  head_timeout_ms_ = timeout_ms;
  const std::string_view no_id;
  co_return co_await send("GET", target, no_id, no_id);
}

net::awaitable<std::optional<upstream_failure>> upstream_call::send(std::string_view method,
                                                                    std::string_view target,
                                                                    std::string_view request_id,
                                                                    std::string_view traceparent) {
  std::string& h = request_head_;
  h.clear();
  h.reserve(256);
  h += method;
  h += ' ';
  h += target;
  h += " HTTP/1.1\r\nHost: ";
  const bool ipv6 = ep_.host.find(':') != std::string::npos;
  if (ipv6) h.push_back('[');
  h += ep_.host;
  if (ipv6) h.push_back(']');
  if (ep_.port != (ep_.tls ? 443 : 80)) {
    h.push_back(':');
    h += std::to_string(ep_.port);
  }
  h += method == "POST" ? "\r\nContent-Type: application/json\r\nUser-Agent: tollgate\r\n"
                        : "\r\nUser-Agent: tollgate\r\n";
  if (!upstream_.auth_header_name.empty()) {
    h += upstream_.auth_header_name;
    h += ": ";
    h += upstream_.auth_header_value;
    h += "\r\n";
  }
  if (!request_id.empty()) {
    h += "x-request-id: ";
    h += request_id;
    h += "\r\n";
  }
  if (!traceparent.empty()) {
    h += "traceparent: ";
    h += traceparent;
    h += "\r\n";
  }
  if (method == "POST") {
    h += "Content-Length: ";
    h += std::to_string(request_body_.size());
    h += "\r\n";
  }
  h += "\r\n";

  stream_ = pool_->take(upstream_, endpoint_);
  reused_ = stream_ != nullptr;
  if (!stream_) {
    if (auto f = co_await connect()) {
      f->retryable = true;  // nothing was sent
      co_return f;
    }
  }
  bool retryable = false;
  auto failure = co_await exchange_head(retryable);
  if (failure && retryable && !aborted_) {
    close_connection();
    buffer_.clear();
    reset_parser();
    if (auto f = co_await connect()) {
      f->retryable = true;
      co_return f;
    }
    failure = co_await exchange_head(retryable);
  }
  if (failure) {
    // Closed or reset before any byte of a response: the request was not answered, and another
    // endpoint may take it (a timeout waiting for the head may mean it is being worked on).
    failure->retryable = failure->what == upstream_failure::kind::closed && buffer_.size() == 0 &&
                         !aborted_;
    close_connection();
  }
  co_return failure;
}

net::awaitable<std::optional<upstream_failure>> upstream_call::read_some(std::string& out,
                                                                         bool& done) {
  done = parser_->is_done();
  if (done) co_return std::nullopt;
  if (!stream_ || aborted_) {
    co_return upstream_failure{upstream_failure::kind::closed, "cancelled", {}};
  }
  // Read straight into `out` (no staging buffer: a large array here would make every coroutine
  // frame of this function a large allocation). Size the space by the known body length.
  const auto remaining = parser_->content_length_remaining();
  const std::size_t room =
      remaining ? std::clamp<std::size_t>(*remaining, 1, read_chunk_bytes) : read_chunk_bytes;
  for (;;) {
    const std::size_t start = out.size();
    out.resize(start + room);
    parser_->get().body().data = out.data() + start;
    parser_->get().body().size = room;
    stream_->tcp().expires_after(ms(upstream_.idle_timeout_ms));
    auto [ec, n] = co_await on_stream(
        *stream_, [&](auto& s) { return bhttp::async_read_some(s, buffer_, *parser_, use_tuple); });
    if (ec == bhttp::error::need_buffer) ec = {};
    const std::size_t got = room - parser_->get().body().size;
    out.resize(start + got);
    if (ec) {
      close_connection();
      co_return failure_from(ec, "reading the response body");
    }
    done = parser_->is_done();
    if (got > 0 || done) co_return std::nullopt;
  }
}

net::awaitable<std::optional<upstream_failure>> upstream_call::read_all(std::string& out) {
  bool done = false;
  while (!done) {
    if (auto f = co_await read_some(out, done)) co_return f;
  }
  co_return std::nullopt;
}

}  // namespace tollgate::backends
