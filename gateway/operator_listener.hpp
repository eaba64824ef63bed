// The operator listener (:8081): liveness, readiness, Prometheus metrics, and (with a database)
// the admin and finance APIs, handed to gateway/admin_router.hpp.
#pragma once
#include <boost/asio/awaitable.hpp>

#include "core/http_server.hpp"
#include "core/metrics.hpp"
#include "gateway/admin_router.hpp"
#include "gateway/console_server.hpp"

namespace tollgate::gateway {

class operator_listener {
 public:
  // `api` is null when the gateway runs without a database.
  operator_listener(const http::server& server, const metrics::registry& registry,
                    admin_router* api, console_server* console = nullptr)
      : server_(server), registry_(registry), api_(api), console_(console) {}

  // GET /healthz: 200 while the process serves. GET /readyz: 200 unless draining (503).
  // GET /metrics: the registry in the Prometheus text format. /admin/* and /finance/*:
  // admin_router. /console/: the web console (when on).
  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  const http::server& server_;
  const metrics::registry& registry_;
  admin_router* api_;
  console_server* console_;  // null: the console is off
};

}  // namespace tollgate::gateway
