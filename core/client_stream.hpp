// A client connection of the HTTP server with ONE deadline instead of a timer per operation.
// Beast's basic_stream arms and cancels a timer around every read and write (a timer-queue
// insertion, and a timerfd_settime system call whenever it becomes the earliest): two or three
// per request on the hot path. Here setting a deadline is one store, and a per-I/O-thread
// deadline_sweeper wakes a few times a second (the period a tenth of the shortest timeout,
// between 10 ms and 1 s) and closes the connections whose deadline has passed, as basic_stream
// does on a timeout: the pending operation completes with an error, and the connection ends.
// A timeout thus fires up to one sweep period late. Unlike Beast's, a deadline holds whether
// or not an operation is pending: the server clears it (expires_never) once the read or write
// it guards is done. A sweep visits every stream of its thread (each idle keep-alive connection
// has a deadline): O(connections) every period. Single-threaded: a stream and its sweeper live
// on one io_context.
#pragma once
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <utility>

namespace tollgate::http {

class client_stream;

// The connections of one I/O thread with a deadline, and the timer that enforces them.
class deadline_sweeper {
 public:
  deadline_sweeper() = default;
  deadline_sweeper(const deadline_sweeper&) = delete;
  deadline_sweeper& operator=(const deadline_sweeper&) = delete;

  // The owner starts it once its io_context exists and stops it before destroying that
  // io_context; the streams (coroutine frames the io_context destroys) unregister afterwards,
  // so the sweeper itself must outlive the io_context.
  void start(boost::asio::io_context& ioc, std::chrono::milliseconds period) {
    timer_.emplace(ioc);
    period_ = period;
  }
  void stop() { timer_.reset(); }
  // The sweep period for these timeouts: a tenth of the shortest, between 10 ms and 1 s.
  static std::chrono::milliseconds period_for(std::chrono::milliseconds shortest_timeout);

 private:
  friend class client_stream;
  void add(client_stream* s);
  void remove(client_stream* s);
  void arm();
  void sweep();

  std::optional<boost::asio::steady_timer> timer_;
  std::chrono::milliseconds period_{1000};
  client_stream* first_ = nullptr;  // an intrusive list of the registered streams
  bool armed_ = false;
};

class client_stream {
 public:
  using executor_type = boost::asio::io_context::executor_type;
  using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp, executor_type>;
  using clock = std::chrono::steady_clock;

  client_stream(socket_type socket, deadline_sweeper& sweeper)
      : socket_(std::move(socket)), sweeper_(sweeper) {
    sweeper_.add(this);
  }
  ~client_stream() { sweeper_.remove(this); }
  client_stream(const client_stream&) = delete;
  client_stream& operator=(const client_stream&) = delete;

  socket_type& socket() { return socket_; }
  executor_type get_executor() { return socket_.get_executor(); }

  // The connection is closed if it is still open `timeout` from now (one sweep late at most),
  // whether or not an operation is pending then: clear it with expires_never() when done.
  void expires_after(std::chrono::milliseconds timeout) {
    deadline_ = clock::now() + timeout;
    sweeper_.arm();
  }
  void expires_never() { deadline_ = clock::time_point::max(); }

  // Cancels pending operations (they complete with operation_aborted).
  void cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return socket_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  friend class deadline_sweeper;
  socket_type socket_;
  deadline_sweeper& sweeper_;
  clock::time_point deadline_ = clock::time_point::max();
  client_stream* prev_ = nullptr;
  client_stream* next_ = nullptr;
};

}  // namespace tollgate::http
