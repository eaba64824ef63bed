// Test fixtures: a real redis-server on a free loopback port for one test case, or a real
// three-master Redis Cluster, or a TLS-only redis-server with throwaway certificates
// (scripts/redis.sh, scripts/test_certs.sh), and a helper that runs a coroutine to
// completion on an io_context, and the client settings for a test server.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "metering/redis_client.hpp"

namespace tollgate::test {

namespace net = boost::asio;

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A redis-server for one test case, stopped at the end.
struct redis_server {
  explicit redis_server(std::string password = {}) : port(free_port()), password(std::move(password)) {
    dir = (std::filesystem::temp_directory_path() /
           ("tollgate-redis-test-" + std::to_string(::getpid()) + "-" + std::to_string(port)))
              .string();
    start();
  }
  ~redis_server() { stop(); }
  void start() {
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/redis.sh start " + dir +
                            " " + std::to_string(port) + (password.empty() ? "" : " " + password);
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  void stop() {
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/redis.sh stop " + dir;
    (void)std::system(cmd.c_str());
  }
  int port;
  std::string password;
  std::string dir;
};

// Client settings for `s` (its port and password), with a command timeout long enough for a
// loaded machine unless a test needs a short one.
inline redis::settings client_settings(
    const redis_server& s,
    std::chrono::milliseconds command_timeout = std::chrono::milliseconds(2000)) {
  redis::settings cfg;
  cfg.port = static_cast<std::uint16_t>(s.port);
  cfg.password = s.password;
  cfg.command_timeout = command_timeout;
  return cfg;
}

// A redis-server that speaks only TLS, for one test case. `client_certs`: yes (required),
// optional or no. Certificates (ca.crt, server.*, client.*, other-ca.crt) are in `certs`.
struct redis_tls_server {
  explicit redis_tls_server(const std::string& client_certs = "optional") : port(free_port()) {
    const auto base = std::filesystem::temp_directory_path() /
                      ("tollgate-redis-tls-" + std::to_string(::getpid()) + "-" + std::to_string(port));
    dir = (base / "data").string();
    certs = (base / "certs").string();
    const std::string src = TOLLGATE_SOURCE_DIR;
    REQUIRE(std::system((src + "/scripts/test_certs.sh " + certs).c_str()) == 0);
    REQUIRE(std::system((src + "/scripts/redis.sh start-tls " + dir + " " + std::to_string(port) +
                         " " + certs + " " + client_certs)
                            .c_str()) == 0);
  }
  ~redis_tls_server() {
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/redis.sh stop " + dir;
    (void)std::system(cmd.c_str());
  }
  int port;
  std::string dir;
  std::string certs;
};

inline bool port_is_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A three-master Redis Cluster for one test case, stopped at the end. A cluster node also
// listens on its port + 10000 (the cluster bus), so ports come from 20000..29999.
struct redis_cluster {
  redis_cluster() {
    int candidate = 20000 + static_cast<int>((::getpid() * 7919) % 9000);
    while (ports.size() < 3) {
      candidate = 20000 + (candidate - 20000 + 1) % 10000;
      if (port_is_free(candidate) && port_is_free(candidate + 10000)) ports.push_back(candidate);
    }
    dir = (std::filesystem::temp_directory_path() /
           ("tollgate-redis-cluster-" + std::to_string(::getpid()) + "-" + std::to_string(ports[0])))
              .string();
    std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/redis.sh cluster " + dir;
    for (int p : ports) cmd += " " + std::to_string(p);
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  ~redis_cluster() {
    const std::string cmd = std::string(TOLLGATE_SOURCE_DIR) + "/scripts/redis.sh cluster-stop " + dir;
    (void)std::system(cmd.c_str());
  }
  std::vector<int> ports;
  std::string dir;
};

// Runs a coroutine on its own io_context to completion and returns its value.
template <class T>
T run(net::io_context& io, net::awaitable<T> op) {
  auto f = net::co_spawn(io, std::move(op), net::use_future);
  // Not io.run(): the client's read loop always has a read outstanding.
  io.restart();
  while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) io.run_one();
  return f.get();
}

}  // namespace tollgate::test
