// An asynchronous Redis client on Asio: hiredis's RESP formatter and reader over an Asio TCP
// socket, no hiredis I/O. One connection, used by coroutines on one executor (one I/O thread):
// commands issued while others are in flight are pipelined (written together, answered in
// order). Per-command timeouts, reconnect with backoff, optional AUTH, and EVALSHA with a
// NOSCRIPT fallback (SCRIPT LOAD, then EVALSHA again) for Lua scripts. A connection that has
// sent SUBSCRIBE hands each pub/sub message to its message handler.
// Not built yet: TLS and Redis Cluster (MOVED/ASK, slot map); see docs/ARCHITECTURE.md.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tollgate::redis {

namespace detail {
struct connection_state;  // the socket, reader, queues: shared with the read and write loops
}

// A RESP reply, copied out of hiredis's reply object.
struct reply {
  enum class kind { string, array, integer, nil, status, error };
  kind type = kind::nil;
  std::string str;  // string, status, error
  long long integer = 0;
  std::vector<reply> elements;  // array

  bool is_error() const { return type == kind::error; }
};

// A failure to get a reply at all (connection refused or lost, timeout, protocol error). A
// Redis error reply (`-ERR ...`) is not one of these: it is a reply of kind error.
struct redis_error {
  std::string message;
};

using redis_result = basic_result<reply, redis_error>;

struct settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string password;  // AUTH when not empty
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
};

// A Lua script and its SHA-1, for EVALSHA.
struct script {
  explicit script(std::string source);
  std::string source;
  std::string sha1;  // lowercase hex
};

class client {
 public:
  client(boost::asio::any_io_executor ex, settings s);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Sends one command (connecting first if needed) and waits for its reply.
  boost::asio::awaitable<redis_result> command(std::vector<std::string> args);
  // Runs a script by EVALSHA; on NOSCRIPT loads it and retries once.
  boost::asio::awaitable<redis_result> eval(const script& s, std::vector<std::string> keys,
                                            std::vector<std::string> args);

  // For a connection used with SUBSCRIBE: pub/sub messages (channel, payload) go to `handler`
  // instead of being taken as replies. Set it before subscribing.
  void on_message(std::function<void(const std::string& channel, const std::string& payload)>
                      handler);

  bool connected() const;
  // Closes the connection; commands in flight fail. The next command reconnects.
  void close(const std::string& why = "closed");
  // Closes the connection for good: every later command fails at once, without connecting
  // (at shutdown, so that no read is left pending on the event loop).
  void shutdown();

 private:
  boost::asio::awaitable<bool> ensure_connected(std::string& error);
  std::shared_ptr<detail::connection_state> st_;
};

}  // namespace tollgate::redis
