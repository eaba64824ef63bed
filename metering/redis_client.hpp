// An asynchronous Redis client on Asio: hiredis's RESP reader over an Asio TCP socket (no
// hiredis I/O), commands framed by append_resp_command. One connection, used by coroutines on
// one executor (one I/O thread): commands issued while others are in flight are pipelined
// (written together, answered in order). Per-command timeouts, reconnect with backoff, optional
// AUTH, and EVALSHA with a NOSCRIPT fallback (SCRIPT LOAD, then EVALSHA again) for Lua
// scripts. A connection that has sent SUBSCRIBE hands each pub/sub message to its message
// handler.
// Redis Cluster (settings.cluster): one such connection per node, the slot map read with
// CLUSTER SLOTS, each command sent to the node serving its first key's slot, MOVED and ASK
// redirects followed, and the map read again after a redirect or a lost connection.
// Optional TLS (settings.tls) on every connection, with the server's certificate verified.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tollgate::redis {

namespace detail {
struct connection_state;  // the socket, reader, queues: shared with the read and write loops
struct router;            // the connections by node and, for a cluster, the slot map
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

struct node_address {
  std::string host;
  std::uint16_t port = 6379;
};

// TLS to Redis (tls-port): the server's certificate is verified against the CAs and must name
// the server; a client certificate is sent when the server asks for one.
struct tls_settings {
  bool enabled = false;
  std::string ca_file;      // trusted CAs, PEM; "" = the system's CAs
  std::string cert_file;    // client certificate chain, PEM ("" = none)
  std::string key_file;     // its private key, PEM
  std::string server_name;  // the name the certificate must carry; "" = the host connected to
};

struct settings {
  std::string host = "127.0.0.1";  // the server, or a cluster's first seed node
  std::uint16_t port = 6379;
  bool cluster = false;                  // Redis Cluster: route commands by key slot
  std::vector<node_address> more_seeds;  // cluster: further nodes to read the slot map from
  std::string password;  // AUTH when not empty (every node of a cluster)
  tls_settings tls;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
};

// A Lua script and its SHA-1, for EVALSHA.
struct script {
  explicit script(std::string source);
  std::string source;
  std::string sha1;  // lowercase hex
};

// Appends one command in RESP framing (`*argc`, then `$len` and the bytes of each argument),
// byte for byte what hiredis's redisFormatCommandArgv makes. Written here because hiredis's
// formatter prints every length with sprintf: on a budgeted request (two script calls, about 45
// arguments) it took about a sixth of the gateway's instructions.
void append_resp_command(std::string& out, const std::vector<std::string>& args);

// The cluster hash slot of a key (CRC16 of the key, or of its {hash tag}, modulo 16384).
std::uint16_t key_slot(std::string_view key);

// The key a command is routed by: the first key of EVAL/EVALSHA/FCALL, nothing for commands
// without keys (PING, PUBLISH, SUBSCRIBE, SCRIPT, CLUSTER, INFO, ...), else the first argument.
std::optional<std::string_view> routing_key(const std::vector<std::string>& args);

class client {
 public:
  client(boost::asio::any_io_executor ex, settings s);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Sends one command (connecting first if needed) and waits for its reply. In a cluster the
  // command goes to the node serving routing_key(args); a command without a key goes to any
  // reachable node (pub/sub messages reach every node of a cluster).
  boost::asio::awaitable<redis_result> command(std::vector<std::string> args);
  // Runs a script by EVALSHA; on NOSCRIPT loads it and retries once.
  boost::asio::awaitable<redis_result> eval(const script& s, std::vector<std::string> keys,
                                            std::vector<std::string> args);

  // For a connection used with SUBSCRIBE: pub/sub messages (channel, payload) go to `handler`
  // instead of being taken as replies. Set it before subscribing.
  void on_message(std::function<void(const std::string& channel, const std::string& payload)>
                      handler);

  // Whether the connection that keyless commands use (SUBSCRIBE's) is open.
  bool connected() const;
  // Closes the connections; commands in flight fail. The next command reconnects.
  void close(const std::string& why = "closed");
  // Closes the connections for good: every later command fails at once, without connecting
  // (at shutdown, so that no read is left pending on the event loop).
  void shutdown();

 private:
  std::shared_ptr<detail::router> rt_;
};

}  // namespace tollgate::redis
