// HTTP/1.1 server shell: see http_server.hpp.
#include "core/http_server.hpp"

#include "core/byte_words.hpp"
#include "core/request_id.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <thread>

namespace tollgate::http {
namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::chrono::milliseconds ms(std::uint64_t v) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(v));
}

// The bytes one read from a client asks for: a whole head and a typical body at once.
constexpr std::size_t client_read_bytes = 16 * 1024;

// The answer to a request whose head or body could not be parsed (`why` says what was wrong),
// or nothing when the client simply left or timed out.
std::optional<api_error> unreadable_error(http1::outcome o, std::string_view why,
                                          const server_limits& limits) {
  switch (o) {
    case http1::outcome::head_too_large:
      return api_error{
          431, "invalid_request_error", "Request headers too large.", {}, "headers_too_large"};
    case http1::outcome::body_too_large:
      return request_too_large(limits.body_limit_bytes);
    case http1::outcome::bad_request:
      return invalid_request("Malformed HTTP request: " + std::string(why) + ".", {},
                             "malformed_request");
    case http1::outcome::need_more:
    case http1::outcome::done:
      break;
  }
  return std::nullopt;
}

// Where the first blank line ("\n\r\n" or "\n\n") at or after `from` ends (its last '\n'), or
// npos.
std::size_t blank_line_end(std::string_view in, std::size_t from) {
  for (std::size_t i = in.find('\n', from); i != std::string_view::npos; i = in.find('\n', i + 1)) {
    if (i + 1 < in.size() && in[i + 1] == '\n') return i + 1;
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return i + 2;
  }
  return std::string_view::npos;
}

std::string_view text_of(const beast::flat_buffer& buffer) {
  return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

}  // namespace

server_limits server_limits::from(const server_config& c) {
  server_limits l;
  l.header_limit_bytes = c.header_limit_bytes;
  l.body_limit_bytes = c.body_limit_bytes;
  l.request_read_timeout_ms = c.request_read_timeout_ms;
  l.keepalive_idle_timeout_ms = c.keepalive_idle_timeout_ms;
  l.client_write_timeout_ms = c.client_write_timeout_ms;
  l.max_connections = c.max_connections;
  l.drain_timeout_ms = c.drain_timeout_ms;
  return l;
}

// ---- exchange ------------------------------------------------------------------------------

bool exchange::write_finished(boost::system::error_code ec) {
  stream_.expires_never();
  if (ec) {
    client_gone_ = true;
    close_after_ = true;
    return false;
  }
  return true;
}

namespace {

// A whole response's head: status line, the fields, then the framing this server decides
// (Connection, Content-Length), sized once and written into one buffer. `content_length`
// nullopt: none is sent (1xx, 204 and 304 responses, which never have a body).
std::string whole_head(unsigned version, unsigned status, std::string_view fields, bool keep_alive,
                       std::optional<std::size_t> content_length) {
  const std::string_view reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  std::string head;
  head.reserve(64 + reason.size() + fields.size());
  head += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  char code[8];
  head.append(code, std::to_chars(code, code + sizeof code, status).ptr);
  head.push_back(' ');
  head += reason;
  head += "\r\n";
  head += fields;
  // HTTP/1.1 keeps the connection unless told; HTTP/1.0 closes it unless told.
  if (version == 10 && keep_alive) head += "Connection: keep-alive\r\n";
  if (version != 10 && !keep_alive) head += "Connection: close\r\n";
  if (content_length) {
    char length[24];
    head += "Content-Length: ";
    head.append(length, std::to_chars(length, length + sizeof length, *content_length).ptr);
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

// Responses that end at their head (RFC 9110, 6.4.1). None gets a Content-Length: 1xx and 204
// must not have one, and a 304's could only repeat the length of a 200 (8.6).
bool never_has_body(unsigned status) {
  return status < 200 || status == 204 || status == 304;
}

// Bytes a field name may hold: RFC 9110's token characters.
constexpr auto token_byte = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  }
  return t;
}();

// Whether a field value holds CR, LF or NUL: one pass, eight bytes at a time.
bool breaks_line(std::string_view value) {
  using namespace byte_words;
  std::size_t i = 0;
  for (; i + 8 <= value.size(); i += 8) {
    const std::uint64_t word = load(value.data() + i);
    if ((any_equal(word, '\n') | any_equal(word, '\r') | any_below(word, 1)) != 0) return true;
  }
  for (; i < value.size(); ++i) {
    if (value[i] == '\n' || value[i] == '\r' || value[i] == '\0') return true;
  }
  return false;
}

}  // namespace

response_fields& response_fields::add(std::string_view name, std::string_view value) {
  // A name is a token and a value holds no line break: nothing added can end the head early.
  bool name_ok = !name.empty();
  for (const char c : name) name_ok &= token_byte[static_cast<unsigned char>(c)];
  if (!name_ok) return *this;
  if (breaks_line(value)) return *this;
  const std::size_t at = text_.size();
  const std::size_t size = name.size() + value.size() + 4;
  if (at == 0) text_.reserve(512);
  text_.resize(at + size);
  char* out = text_.data() + at;
  std::memcpy(out, name.data(), name.size());
  out += name.size();
  std::memcpy(out, ": ", 2);
  if (!value.empty()) std::memcpy(out + 2, value.data(), value.size());
  std::memcpy(out + 2 + value.size(), "\r\n", 2);
  return *this;
}

namespace {

// A Beast response's fields as wire text, less the framing fields: the server writes
// Connection and Content-Length itself, and a whole response is never chunked.
response_fields fields_of(const response& res) {
  response_fields fields;
  for (const auto& field : res) {
    if (field.name() == bhttp::field::connection || field.name() == bhttp::field::content_length ||
        field.name() == bhttp::field::transfer_encoding) {
      continue;
    }
    fields.add(field.name_string(), field.value());
  }
  return fields;
}

}  // namespace

struct exchange::watch_state {
  std::function<void()> on_gone;
  bool stopping = false;  // set by stop_watching; a late completion then does nothing
  bool gone = false;
  char peek_byte = 0;  // the watch's receive buffer; peeked bytes stay in the socket
};

void exchange::watch_for_disconnect(std::function<void()> on_gone) {
  if (watch_) return;
  watch_ = std::make_shared<watch_state>();
  watch_->on_gone = std::move(on_gone);
  arm_watch(watch_, stream_.socket());
}

// Peeks at the client socket (MSG_PEEK: nothing is consumed) through Asio's reactor: end of
// stream or an error means the client left; data means it sent more (a pipelined request), which
// stays in the socket for the next read. A receive, unlike a plain wait for readability, needs no
// epoll_ctl to start: the socket is already registered and the reactor just queues the operation
// (or tries the peek once when the socket may hold data). A plain completion handler, not a
// coroutine: it runs once per request and must cost next to nothing.
void exchange::arm_watch(std::shared_ptr<watch_state> state, tcp_stream::socket_type& socket) {
  auto* byte = &state->peek_byte;
  socket.async_receive(net::buffer(byte, 1), net::socket_base::message_peek,
                       [state = std::move(state)](boost::system::error_code ec, std::size_t n) {
                         if (state->stopping || ec == net::error::operation_aborted) return;
                         if (!ec && n > 0) return;  // a pipelined request: not a disconnect
                         state->gone = true;
                         if (state->on_gone) state->on_gone();
                       });
}

// Synchronous: once `stopping` is set, a completion that is still queued only returns.
void exchange::stop_watching() {
  if (!watch_) return;
  auto state = std::move(watch_);
  if (state->gone) {
    client_gone_ = true;
    close_after_ = true;
    return;
  }
  state->stopping = true;
  boost::system::error_code ignored;
  stream_.socket().cancel(ignored);  // only the watch's wait is pending
}

std::string_view exchange::path() const {
  std::string_view target = req_.target();
  return target.substr(0, target.find('?'));
}

net::awaitable<bool> exchange::send(response res) {
  // Named, not made inside the co_await: GCC 12 mishandles temporaries there.
  const response_fields fields = fields_of(res);
  co_return co_await send(res.result_int(), fields, res.body());
}

net::awaitable<bool> exchange::send(unsigned status, const response_fields& fields,
                                    std::string_view body) {
  stop_watching();
  if (client_gone_) co_return false;
  status_ = status;
  // A HEAD answer says the length of the body a GET would get, and sends none of it.
  const bool bodiless = never_has_body(status);
  const bool head_only = req_.method() == bhttp::verb::head;
  const std::string head =
      whole_head(req_.version(), status, fields.text(), !close_after_,
                 bodiless ? std::nullopt : std::optional<std::size_t>(body.size()));
  const std::string_view sent = bodiless || head_only ? std::string_view{} : body;
  const std::array<net::const_buffer, 2> buffers{net::buffer(head), net::buffer(sent)};
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await net::async_write(stream_, buffers, use_tuple);
  co_return write_finished(ec);
}

net::awaitable<bool> exchange::send_json(unsigned status, std::string body,
                                         std::string_view request_id) {
  response_fields fields;
  fields.add("Content-Type", "application/json");
  if (!request_id.empty()) fields.add("x-request-id", request_id);
  co_return co_await send(status, fields, body);
}

net::awaitable<bool> exchange::send_error(api_error error, std::string_view request_id) {
  response_fields fields;
  fields.add("Content-Type", "application/json");
  if (!request_id.empty()) fields.add("x-request-id", request_id);
  if (error.retry_after_s > 0) fields.add("Retry-After", std::to_string(error.retry_after_s));
  const std::string body = error.to_json();
  co_return co_await send(error.status, fields, body);
}

net::awaitable<bool> exchange::send_method_not_allowed(std::string_view allowed,
                                                       std::string_view request_id) {
  const api_error error =
      method_not_allowed("Method " + std::string(req_.method_string()) + " is not allowed for " +
                         std::string(path()) + "; use " + std::string(allowed) + ".");
  response_fields fields;
  fields.add("Content-Type", "application/json");
  fields.add("Allow", allowed);
  if (!request_id.empty()) fields.add("x-request-id", request_id);
  const std::string body = error.to_json();
  co_return co_await send(error.status, fields, body);
}

net::awaitable<bool> exchange::send_unknown_url(std::string_view request_id) {
  api_error error = not_found_error("Invalid URL (" + std::string(req_.method_string()) + " " +
                                    std::string(path()) + ")");
  co_return co_await send_error(std::move(error), request_id);
}

net::awaitable<bool> exchange::send_chunked_header(bhttp::response<bhttp::empty_body> header) {
  stop_watching();
  if (client_gone_) co_return false;
  header.version(req_.version());
  header.keep_alive(!close_after_);
  header.chunked(true);
  status_ = header.result_int();
  bhttp::response_serializer<bhttp::empty_body> serializer{header};
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await bhttp::async_write_header(stream_, serializer, use_tuple);
  co_return write_finished(ec);
}

net::awaitable<bool> exchange::send_chunk(std::string_view data) {
  if (data.empty()) co_return !client_gone_;  // an empty chunk would end the body
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await net::async_write(
      stream_, bhttp::make_chunk(net::const_buffer(data.data(), data.size())), use_tuple);
  co_return write_finished(ec);
}

net::awaitable<bool> exchange::send_last_chunk() {
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk_last(), use_tuple);
  co_return write_finished(ec);
}

net::awaitable<bool> exchange::send_last_chunk(
    const std::vector<std::pair<std::string, std::string>>& trailers) {
  bhttp::fields fields;
  for (const auto& [name, value] : trailers) fields.set(name, value);
  const auto last = bhttp::make_chunk_last(fields);
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await net::async_write(stream_, last, use_tuple);
  co_return write_finished(ec);
}

// ---- server --------------------------------------------------------------------------------

struct server::listener {
  listener_spec spec;
  std::unique_ptr<net::ip::tcp::acceptor> acceptor;
  metrics::gauge* connections_active = nullptr;
  metrics::counter* connections_rejected = nullptr;
  std::uint64_t max_connections = 0;
  std::atomic<std::uint64_t> sessions{0};  // this listener's open connections
};

// How often each I/O thread sweeps its connections' deadlines: a tenth of the shortest client
// timeout, the lingering close's included (so at most 200 ms).
static std::chrono::milliseconds sweep_period_of(const server_limits& l) {
  return deadline_sweeper::period_for(
      ms(std::min({l.request_read_timeout_ms, l.keepalive_idle_timeout_ms,
                   l.client_write_timeout_ms, limits::linger_ms_max})));
}

server::server(server_limits limits, unsigned threads, logger& log, metrics::registry& registry)
    : limits_(limits),
      log_(log),
      workers_([threads, sweep_period = sweep_period_of(limits)] {
        std::vector<std::unique_ptr<worker>> w;
        const unsigned n =
            threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
        for (unsigned i = 0; i < n; ++i) {
          w.push_back(std::make_unique<worker>());
          w.back()->index = i;
          w.back()->sweeper.start(w.back()->ioc, sweep_period);
        }
        return w;
      }()),
      signals_(std::make_unique<net::signal_set>(workers_[0]->ioc, SIGTERM, SIGINT)),
      drain_timer_(std::make_unique<net::steady_timer>(workers_[0]->ioc)),
      connections_active_(registry.add_gauge("tollgate_http_connections_active",
                                             "Open client connections.", {"listener"})),
      connections_rejected_(registry.add_counter(
          "tollgate_http_connections_rejected_total",
          "Client connections closed at accept because max_connections was reached.",
          {"listener"})),
      requests_total_(registry.add_counter("tollgate_http_requests_total",
                                           "HTTP requests answered, by route and status.",
                                           {"listener", "route", "status"})),
      request_duration_(registry.add_histogram(
          "tollgate_http_request_duration_seconds",
          "Time from a request being read to its response being fully written.",
          {"listener", "route"})) {
  signals_->async_wait([this](boost::system::error_code ec, int signo) {
    if (ec) return;
    json_object_writer f;
    f.add("signal", signo);
    log_.info("shutdown requested", f);
    begin_drain();
  });
}

// Unfinished connections (only after a drain timeout) are destroyed with their io_context; they
// must find the listeners still alive and must not post to a destroyed io_context.
server::~server() {
  destroying_.store(true);
  signals_.reset();
  drain_timer_.reset();
  for (auto& l : listeners_) l->acceptor.reset();
  workers_.clear();
}

void server::add_listener(listener_spec spec) {
  auto& ioc = workers_[0]->ioc;
  boost::system::error_code ec;
  const auto address = net::ip::make_address(spec.address.host, ec);
  if (ec) {
    throw std::runtime_error("listener " + spec.name + ": bad address " + spec.address.host);
  }
  net::ip::tcp::endpoint endpoint{address, spec.address.port};
  net::ip::tcp::acceptor acceptor{ioc};
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("listener " + spec.name + ": cannot listen on " +
                             spec.address.to_string() + ": " + ec.message());
  }
  auto l = std::make_unique<listener>();
  l->spec = std::move(spec);
  l->acceptor = std::make_unique<net::ip::tcp::acceptor>(std::move(acceptor));
  l->max_connections =
      l->spec.max_connections != 0 ? l->spec.max_connections : limits_.max_connections;
  l->connections_active = &connections_active_.with({l->spec.name});
  l->connections_rejected = &connections_rejected_.with({l->spec.name});
  json_object_writer f;
  f.add("listener", l->spec.name).add("addr", l->spec.address.to_string());
  log_.info("listening", f);
  listeners_.push_back(std::move(l));
}

void server::run() {
  for (auto& l : listeners_) {
    net::co_spawn(workers_[0]->ioc, accept_loop(*l), net::detached);
  }
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    threads.emplace_back([w = workers_[i].get()] { w->ioc.run(); });
  }
  workers_[0]->ioc.run();
  for (auto& t : threads) t.join();
  log_.info("stopped");
}

void server::request_stop() {
  net::post(workers_[0]->ioc, [this] { begin_drain(); });
}

// Runs on worker 0. Stops accepting on the API listeners and closes idle connections; busy ones
// end after their current response (sessions check draining_ before waiting for another).
void server::begin_drain() {
  if (draining_.exchange(true)) return;
  boost::system::error_code ignored;
  for (auto& l : listeners_) {
    if (!l->spec.serve_while_draining) l->acceptor->close(ignored);
  }
  signals_->cancel(ignored);
  for (auto& w : workers_) {
    net::post(w->ioc, [w = w.get()] {
      for (auto* stream : w->idle_streams) stream->cancel();
    });
  }
  json_object_writer f;
  f.add("in_flight_connections", static_cast<std::int64_t>(drain_sessions_.load()))
      .add("drain_timeout_ms", static_cast<std::int64_t>(limits_.drain_timeout_ms));
  log_.info("draining", f);
  drain_timer_->expires_after(ms(limits_.drain_timeout_ms));
  drain_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // cancelled: every connection ended in time
    json_object_writer f;
    f.add("open_connections", static_cast<std::int64_t>(drain_sessions_.load()));
    log_.warn("drain timeout reached; stopping with connections open", f);
    for (auto& w : workers_) {
      net::post(w->ioc, [this, w = w.get()] {
        for (const auto& hook : drain_timeout_hooks_) hook(w->index);
        w->ioc.stop();
      });
    }
  });
  if (drain_sessions_.load() == 0) finish_drain();
}

// Runs on worker 0 once no connection the drain waits for is left: closes the rest and lets
// every event loop run out of work.
void server::finish_drain() {
  if (drain_finished_.exchange(true)) return;
  drain_timer_->cancel();
  boost::system::error_code ignored;
  for (auto& l : listeners_) l->acceptor->close(ignored);
  for (auto& w : workers_) {
    net::post(w->ioc, [this, w = w.get()] {
      for (auto* stream : w->idle_streams) stream->cancel();
      for (const auto& hook : drain_hooks_) hook(w->index);
      w->guard.reset();
    });
  }
}

void server::session_ended(listener& l) {
  sessions_.fetch_sub(1);
  l.sessions.fetch_sub(1);
  if (l.spec.serve_while_draining) return;
  if (drain_sessions_.fetch_sub(1) == 1 && draining_.load() && !destroying_.load()) {
    net::post(workers_[0]->ioc, [this] {
      if (drain_sessions_.load() == 0) finish_drain();
    });
  }
}

net::awaitable<void> server::accept_loop(listener& l) {
  for (;;) {
    worker& w = *workers_[next_worker_.fetch_add(1) % workers_.size()];
    auto [ec, socket] = co_await l.acceptor->async_accept(w.ioc, use_tuple);
    if (ec) {
      if (ec == net::error::operation_aborted || !l.acceptor->is_open()) co_return;
      json_object_writer f;
      f.add("listener", l.spec.name).add("error", ec.message());
      log_.warn("accept failed", f);
      // Out of descriptors and the like: back off briefly instead of spinning.
      net::steady_timer pause{workers_[0]->ioc,
                              std::chrono::milliseconds(limits::accept_retry_pause_ms)};
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (l.sessions.load() >= l.max_connections) {
      l.connections_rejected->inc();
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(net::ip::tcp::no_delay(true), ignored);
    sessions_.fetch_add(1);
    l.sessions.fetch_add(1);
    if (!l.spec.serve_while_draining) drain_sessions_.fetch_add(1);
    net::co_spawn(w.ioc, session(w, l, std::move(socket)), [this](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        json_object_writer f;
        f.add("error", ex.what());
        log_.error("connection ended by an exception", f);
      }
    });
  }
}

// Reads until `buffer` starts with a whole request head (parsed into `head`; `head_bytes` is
// its length, left in the buffer for the caller to consume once it has copied what it needs).
// Waits at most the keep-alive idle timeout for it. need_more: the client left or timed out.
net::awaitable<http1::outcome> server::read_head(tcp_stream& stream, beast::flat_buffer& buffer,
                                                 http1::request_head& head,
                                                 std::size_t& head_bytes) {
  bool deadline_set = false;
  std::size_t scanned = 0;  // bytes known to hold no blank line
  for (;;) {
    const std::string_view in = text_of(buffer);
    // The head is parsed only once a blank line (its end) has arrived, or the limit is reached:
    // a head that trickles in a byte at a time is scanned once, not parsed again on every read.
    const std::size_t blank = blank_line_end(in, scanned);
    if (blank != std::string_view::npos || in.size() >= limits_.header_limit_bytes) {
      const http1::parse_result r = http1::parse_head(in, limits_.header_limit_bytes, head);
      if (r.result != http1::outcome::need_more) {
        head_bytes = r.consumed;
        co_return r.result;
      }
    }
    // Empty lines before a request line are blank lines too: scanning goes on after them.
    scanned = blank != std::string_view::npos ? blank + 1 : (in.size() > 2 ? in.size() - 2 : 0);
    if (!deadline_set) {
      stream.expires_after(ms(limits_.keepalive_idle_timeout_ms));
      deadline_set = true;
    }
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(client_read_bytes), use_tuple);
    if (ec) {
      const bool inside_head = text_of(buffer).find_first_not_of("\r\n") != std::string_view::npos;
      if (ec != net::error::eof || !inside_head) co_return http1::outcome::need_more;
      head.error = "the connection ended inside the request head";
      co_return http1::outcome::bad_request;
    }
    buffer.commit(n);
  }
}

// Reads the body that `head` announces into `body` (what is already in `buffer` first, then
// from the socket within the request read timeout); pipelined bytes after it stay in `buffer`.
net::awaitable<http1::outcome> server::read_body(tcp_stream& stream, beast::flat_buffer& buffer,
                                                 const http1::request_head& head,
                                                 std::uint64_t body_limit, std::string& body) {
  stream.expires_after(ms(limits_.request_read_timeout_ms));
  if (!head.chunked) {
    const auto length = static_cast<std::size_t>(head.content_length);
    const std::size_t have = std::min(buffer.size(), length);
    body.assign(text_of(buffer).substr(0, have));
    buffer.consume(have);
    if (have == length) co_return http1::outcome::done;
    body.resize(length);
    auto [ec, n] =
        co_await net::async_read(stream, net::buffer(body.data() + have, length - have), use_tuple);
    if (!ec) co_return http1::outcome::done;
    co_return ec == net::error::eof ? http1::outcome::bad_request : http1::outcome::need_more;
  }
  http1::chunked_decoder decoder{body_limit};
  for (;;) {
    const http1::parse_result r = decoder.feed(text_of(buffer), body);
    buffer.consume(r.consumed);
    if (r.result != http1::outcome::need_more) co_return r.result;
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(client_read_bytes), use_tuple);
    if (ec) {
      co_return ec == net::error::eof ? http1::outcome::bad_request : http1::outcome::need_more;
    }
    buffer.commit(n);
  }
}

// Answers a request that could not be read; the connection ends after it.
net::awaitable<void> server::reject(tcp_stream& stream, worker& w, listener& l, api_error error,
                                    const char* route, bhttp::verb method, unsigned version) {
  request placeholder{method, "", version};
  exchange ex{stream, placeholder, w.index, ms(limits_.client_write_timeout_ms), true};
  // Every answer carries a request id, also those of requests that could not be read.
  const std::string request_id = new_request_id();  // named: not a temporary across co_await
  co_await ex.send_error(error, request_id);
  requests_total_.with({l.spec.name, route, std::to_string(error.status)}).inc();
}

net::awaitable<void> server::session(worker& w, listener& l, tcp_stream::socket_type socket) {
  tcp_stream stream{std::move(socket), w.sweeper};
  struct session_guard {
    server& s;
    worker& w;
    listener& l;
    tcp_stream* stream;
    ~session_guard() {
      w.idle_streams.erase(stream);
      l.connections_active->sub(1);
      s.session_ended(l);
    }
  } guard{*this, w, l, &stream};
  l.connections_active->add(1);

  beast::flat_buffer buffer;
  bool rejected_body = false;  // a body refused as too large may still be arriving
  // The largest body any request on this listener may have, until the head says which request
  // this is.
  const std::uint64_t body_limit_max = std::max(limits_.body_limit_bytes, l.spec.body_limit_max);
  http1::request_head head;  // reused: its field array lives in the coroutine frame
  // The client's address, asked of the socket once per connection (a system call).
  net::ip::address peer;
  bool peer_known = false;
  for (;;) {
    std::shared_ptr<const void> checked;  // what the pre-body check hands the handler
    // Draining: API connections take no new request; operator ones serve until the drain ends.
    if (l.spec.serve_while_draining ? drain_finished_.load() : draining_.load()) break;
    w.idle_streams.insert(&stream);
    std::size_t head_bytes = 0;
    const http1::outcome read = co_await read_head(stream, buffer, head, head_bytes);
    w.idle_streams.erase(&stream);
    if (read != http1::outcome::done) {
      if (auto error = unreadable_error(read, head.error, limits_)) {
        co_await reject(stream, w, l, std::move(*error));
      }
      break;
    }
    if (head.has_content_length && head.content_length > body_limit_max) {
      co_await reject(stream, w, l, request_too_large(limits_.body_limit_bytes), "unreadable",
                      bhttp::string_to_verb(head.method), head.version);
      rejected_body = true;
      break;
    }
    request req{head};
    buffer.consume(head_bytes);  // the head's views end here
    const bool has_body = head.chunked || head.content_length > 0;
    const bool expect_continue = head.expect_continue;

    // Authorization before resources: a refused request's body is never read (nor a 100
    // Continue sent for it); the connection ends after the answer.
    if (l.spec.before_body) {
      if (!peer_known) {
        boost::system::error_code pec;
        peer = stream.socket().remote_endpoint(pec).address();
        peer_known = true;
      }
      stream.expires_never();
      pre_body_verdict verdict = co_await l.spec.before_body(req, peer);
      if (verdict.refused) {
        co_await reject(stream, w, l, std::move(*verdict.refused), "refused_before_body",
                        req.method(), req.version());
        rejected_body = has_body;
        break;
      }
      checked = std::move(verdict.checked);
    }

    std::uint64_t body_limit = limits_.body_limit_bytes;
    if (l.spec.body_limit_for) {
      if (const auto larger = l.spec.body_limit_for(req.method(), req.target())) {
        body_limit = larger;
      }
    }
    if (head.has_content_length && head.content_length > body_limit) {
      co_await reject(stream, w, l, request_too_large(body_limit), "unreadable", req.method(),
                      req.version());
      rejected_body = true;
      break;
    }
    if (expect_continue) {
      static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
      stream.expires_after(ms(limits_.client_write_timeout_ms));
      auto [wec, wn] = co_await net::async_write(stream, net::buffer(continue_line), use_tuple);
      if (wec) break;
    }
    if (has_body) {
      const http1::outcome body = co_await read_body(stream, buffer, head, body_limit, req.body());
      if (body != http1::outcome::done) {
        // A timeout has already closed the socket (the deadline sweeper does that), so a body that
        // does not arrive in time ends the connection without an answer, as nginx does.
        if (auto error = unreadable_error(body, "a malformed or incomplete body", limits_)) {
          if (body == http1::outcome::body_too_large) error = request_too_large(body_limit);
          co_await reject(stream, w, l, std::move(*error), "unreadable", req.method(),
                          req.version());
        }
        rejected_body = body == http1::outcome::body_too_large;
        break;
      }
    }
    stream.expires_never();

    const bool close_after = !head.keep_alive || draining_.load();
    exchange ex{stream, req, w.index, ms(limits_.client_write_timeout_ms), close_after};
    ex.checked_ = std::move(checked);
    co_await l.spec.on_request(ex);
    ex.stop_watching();  // a handler that never answered must not leave a watch behind
    const auto elapsed = std::chrono::steady_clock::now() - ex.received_at();
    const auto key = std::make_tuple(static_cast<const void*>(&l), ex.route().data(), ex.status());
    auto cached = w.request_metrics_cache.find(key);
    if (cached == w.request_metrics_cache.end()) {
      const std::string status = std::to_string(ex.status());
      cached = w.request_metrics_cache
                   .emplace(key,
                            worker::request_metrics{
                                &requests_total_.with({l.spec.name, ex.route(), status}),
                                &request_duration_.with({l.spec.name, ex.route()})})
                   .first;
    }
    cached->second.total->inc();
    cached->second.duration->observe_us(
        std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
    if (ex.close_after() || ex.client_gone()) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  if (rejected_body) {
    // Lingering close, as nginx does: a client still sending the body it was refused would
    // otherwise get a connection reset instead of the answer. Its remaining bytes are read
    // and dropped for a short while (bounded in time and bytes).
    std::size_t dropped = 0;
    std::vector<char> sink(limits::linger_buffer_bytes);
    stream.expires_after(std::chrono::milliseconds(limits::linger_ms_max));
    while (dropped < limits::linger_bytes_max) {
      auto [rec, rn] = co_await stream.async_read_some(net::buffer(sink), use_tuple);
      if (rec) break;
      dropped += rn;
    }
  }
  stream.close();
}

}  // namespace tollgate::http
