// The operator listener (:8081): liveness, readiness and Prometheus metrics. The admin and finance
// APIs join it in later work.
#pragma once
#include <boost/asio/awaitable.hpp>

#include "core/http_server.hpp"
#include "core/metrics.hpp"

namespace tollgate::gateway {

class admin_handler {
 public:
  admin_handler(const http::server& server, const metrics::registry& registry)
      : server_(server), registry_(registry) {}

  // GET /healthz: 200 while the process serves. GET /readyz: 200 unless draining (503).
  // GET /metrics: the registry in the Prometheus text format.
  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  const http::server& server_;
  const metrics::registry& registry_;
};

}  // namespace tollgate::gateway
