// The admin and finance APIs on the operator listener (:8081), served when a database is
// configured:
//   /admin/v1/...    tenants, projects, API keys (create, list, get, update, disable, revoke,
//                    rotate) and the audit log; `Authorization: Bearer <admin token>`.
//   /finance/v1/...  usage reports (JSON or CSV) and raw usage events; read-only, with the
//                    finance token (the admin token may read them too).
// JSON in, JSON out, errors in the OpenAI shape; lists are paged with limit/after.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "gateway/billing_context.hpp"

namespace tollgate::gateway {

class admin_api {
 public:
  admin_api(const billing_context& billing, const auth_config& auth, const clock_source& clock)
      : billing_(billing), auth_(auth), clock_(clock) {}

  // Called with the tenant id after a budget is created or changed (budgets: pub/sub).
  void on_budget_change(std::function<void(const std::string& tenant_id)> hook) {
    on_budget_change_ = std::move(hook);
  }

  // Whether `path` belongs to these APIs.
  static bool owns(std::string_view path);
  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  boost::asio::awaitable<void> handle_admin(http::exchange& ex, std::string_view path,
                                            std::string actor);
  boost::asio::awaitable<void> handle_finance(http::exchange& ex, std::string_view path);

  const billing_context& billing_;
  const auth_config& auth_;
  const clock_source& clock_;
  std::function<void(const std::string&)> on_budget_change_;
};

}  // namespace tollgate::gateway
