// The HTTP server's client connection deadlines: a stream past its deadline is closed by its
// thread's sweeper (its pending read fails), one without a deadline is left alone, and the
// sweeper stops once no stream has a deadline, so the event loop runs out of work.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>

#include "core/client_stream.hpp"

namespace net = boost::asio;
using tollgate::http::client_stream;
using tollgate::http::deadline_sweeper;
using namespace std::chrono_literals;

namespace {

// A connected pair of loopback sockets on `ioc`: the server side (for a client_stream) and
// the peer, which never sends.
struct socket_pair {
  client_stream::socket_type server;
  net::ip::tcp::socket peer;
  explicit socket_pair(net::io_context& ioc) : server(ioc), peer(ioc) {
    net::ip::tcp::acceptor acceptor(ioc, {net::ip::address_v4::loopback(), 0});
    peer.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }
};

}  // namespace

TEST_CASE("deadline sweeper: the sweep period is a tenth of the shortest timeout, bounded") {
  CHECK(deadline_sweeper::period_for(2000ms) == 200ms);
  CHECK(deadline_sweeper::period_for(30ms) == 10ms);
  CHECK(deadline_sweeper::period_for(60000ms) == 1000ms);
}

TEST_CASE("deadline sweeper: a read past its deadline fails; a stream without one stays open") {
  net::io_context ioc;
  deadline_sweeper sweeper;
  sweeper.start(ioc, 10ms);
  socket_pair timed(ioc);
  socket_pair untimed(ioc);
  client_stream a{std::move(timed.server), sweeper};
  client_stream b{std::move(untimed.server), sweeper};
  char byte = 0;
  std::optional<boost::system::error_code> a_done;
  std::chrono::steady_clock::time_point a_done_at;
  bool b_done = false;
  const auto start = std::chrono::steady_clock::now();
  a.expires_after(40ms);
  a.async_read_some(net::buffer(&byte, 1), [&](boost::system::error_code ec, std::size_t) {
    a_done = ec;
    a_done_at = std::chrono::steady_clock::now();
  });
  b.expires_never();
  b.async_read_some(net::buffer(&byte, 1),
                    [&](boost::system::error_code, std::size_t) { b_done = true; });
  ioc.run_for(300ms);
  REQUIRE(a_done.has_value());
  CHECK(*a_done);  // closed: the read failed
  CHECK_FALSE(a.socket().is_open());
  CHECK_FALSE(b_done);
  CHECK(b.socket().is_open());
  // Not before the deadline; at most a sweep period after it (with room for a loaded machine).
  CHECK(a_done_at - start >= 40ms);
  CHECK(a_done_at - start < 250ms);
  // A deadline moved later before it passes keeps the stream open.
  b.expires_after(1000ms);
  b.expires_after(2000ms);
  ioc.restart();
  ioc.run_for(50ms);
  CHECK(b.socket().is_open());
  CHECK_FALSE(b_done);
  b.cancel();
  ioc.restart();
  ioc.run_for(50ms);
  CHECK(b_done);
  sweeper.stop();
}

TEST_CASE("deadline sweeper: with no deadline left, the event loop runs out of work") {
  net::io_context ioc;
  deadline_sweeper sweeper;
  sweeper.start(ioc, 10ms);
  socket_pair pair(ioc);
  {
    client_stream s{std::move(pair.server), sweeper};
    s.expires_after(20ms);
    s.expires_never();  // answered in time
  }
  const auto start = std::chrono::steady_clock::now();
  ioc.run();  // returns once the sweeper finds nothing to watch
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  sweeper.stop();
}
