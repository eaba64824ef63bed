// The admin and finance APIs on the operator listener (:8081), served when a database is
// configured:
//   /admin/v1/...    tenants, projects, API keys (create, list, get, update, disable, revoke,
//                    rotate), budgets (and their reconciliation from the ledger) and the audit
//                    log; `Authorization: Bearer <admin token>`.
//   /finance/v1/...  usage reports (JSON or CSV) and raw usage events; read-only, with the
//                    finance token (the admin token may read them too).
// JSON in, JSON out, errors in the OpenAI shape; lists are paged with limit/after.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {

class budget_guard;

// A store failure in the OpenAI error shape (shared with the Batch API).
api_error to_api_error(const billing::store_error& s);
// `limit` (1..100) and `after` of a list request.
result<billing::page_request> page_from(const query_params& q);

class admin_api {
 public:
  admin_api(const billing_context& billing, const auth_config& auth,
            const invoices_config& invoices, const clock_source& clock)
      : billing_(billing), auth_(auth), invoices_(invoices), clock_(clock) {}

  // With budgets on: changes are announced to every gateway, and reconcile is served.
  void attach_budgets(budget_guard* budgets) { budgets_ = budgets; }
  // How many buckets a finance usage query may span (usage_reports in the config).
  void set_usage_limits(const usage_limits& limits) { usage_limits_ = limits; }

  // Whether `path` belongs to these APIs.
  static bool owns(std::string_view path);
  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  boost::asio::awaitable<void> handle_admin(http::exchange& ex, std::string_view path,
                                            std::string actor);
  boost::asio::awaitable<void> handle_finance(http::exchange& ex, std::string_view path);

  const billing_context& billing_;
  const auth_config& auth_;
  const invoices_config& invoices_;
  const clock_source& clock_;
  budget_guard* budgets_ = nullptr;
  usage_limits usage_limits_;
};

}  // namespace tollgate::gateway
