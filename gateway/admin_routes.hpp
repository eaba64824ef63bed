// The admin and finance APIs as data, like Redis's command table: a route is a method, a path
// pattern, the role whose token it needs and its handler. The table is in admin_router.cpp; the
// handlers, one per route, are declared here and live by area in admin_tenants.cpp,
// admin_budgets.cpp, admin_billing.cpp and finance_api.cpp.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/http_server.hpp"
#include "gateway/admin_request.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/query_params.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {

class budget_guard;

// Which token a route needs: the admin token, or the finance token (the admin token may read
// the finance routes too).
enum class route_role { admin, finance };

// What the handlers share for the life of the gateway.
struct route_env {
  const billing_context& billing;
  const invoices_config& invoices;
  const clock_source& clock;
  budget_guard* budgets = nullptr;  // null: budgets are off on this gateway
  usage_limits usage;               // how many buckets a finance usage query may span
};

// One request matched to its route: what its handler reads, and how it answers.
struct route_call {
  http::exchange& ex;
  const route_env& env;
  const query_params& query;
  std::string id;              // the path's {id} segment ("" when the pattern has none)
  billing::page_request page;  // admin GETs: `limit` and `after`, checked before the handler
  std::string actor;           // admin routes: "admin[:name]", for the audit log
  std::string request_id;      // finance routes: sent with their errors

  const billing_context& billing() const { return env.billing; }
  std::int64_t now_s() const;
  // The body of a POST ({} for other methods).
  body_reader body() const;
  // Runs a store operation on the billing thread.
  template <class T>
  boost::asio::awaitable<T> run(boost::asio::awaitable<T> op) const {
    return on_billing(env.billing, std::move(op));
  }
  // An error answer (with x-request-id on finance routes).
  boost::asio::awaitable<void> fail(api_error error);
  // A store outcome: its JSON with `status`, or its error.
  boost::asio::awaitable<void> reply(billing::store_result outcome, unsigned status = 200);
  boost::asio::awaitable<void> reply(boost::asio::awaitable<billing::store_result> op,
                                     unsigned status = 200);
  // The tenant's budgets, plan settlement mode or credit changed: every gateway reloads them
  // (when budgets are on).
  void budgets_changed(const std::string& tenant_id) const;
};

using route_handler = boost::asio::awaitable<void> (*)(route_call& call);

struct route {
  boost::beast::http::verb method;
  // "/admin/v1/tenants/{id}/projects": literal segments, and {id} matching any one segment.
  std::string_view pattern;
  route_role role;
  route_handler handler;
};

// The handlers, one per route (several routes may share one), by file.
namespace routes {
using handler_result = boost::asio::awaitable<void>;

// admin_tenants.cpp: tenants, projects, API keys, the audit log.
handler_result create_tenant(route_call& c);
handler_result list_tenants(route_call& c);
handler_result get_tenant(route_call& c);
handler_result update_tenant(route_call& c);
handler_result create_tenant_project(route_call& c);
handler_result list_tenant_projects(route_call& c);
handler_result create_project(route_call& c);
handler_result list_projects(route_call& c);
handler_result get_project(route_call& c);
handler_result update_project(route_call& c);
handler_result create_key(route_call& c);
handler_result list_keys(route_call& c);
handler_result get_key(route_call& c);
handler_result update_key(route_call& c);
handler_result revoke_key(route_call& c);
handler_result rotate_key(route_call& c);
handler_result list_audit_log(route_call& c);

// admin_budgets.cpp: budgets, their alerts, reconciliation from the ledger.
handler_result reconcile_budgets(route_call& c);
handler_result create_budget(route_call& c);
handler_result list_budgets(route_call& c);
handler_result get_budget(route_call& c);
handler_result update_budget(route_call& c);
handler_result list_budget_alerts(route_call& c);

// admin_billing.cpp: price books, plans, credits, invoices, batches.
handler_result create_price_book(route_call& c);
handler_result list_price_books(route_call& c);
handler_result get_price_book(route_call& c);
handler_result add_price_book_version(route_call& c);
handler_result get_tenant_plan(route_call& c);
handler_result set_tenant_plan(route_call& c);
handler_result get_tenant_seats(route_call& c);
handler_result set_tenant_seats(route_call& c);
handler_result grant_credit(route_call& c);
handler_result grant_token_bundle(route_call& c);
handler_result set_auto_top_up(route_call& c);
handler_result get_auto_top_up(route_call& c);
handler_result get_credit_grant(route_call& c);
handler_result tenant_credit_balance(route_call& c);
handler_result tenant_credit_transfers(route_call& c);
handler_result expire_credits(route_call& c);
handler_result run_invoices(route_call& c);
handler_result list_batches(route_call& c);
handler_result get_batch(route_call& c);

// finance_api.cpp: usage, usage events, invoices, credits, the cost preview.
handler_result finance_usage(route_call& c);
handler_result finance_usage_events(route_call& c);
handler_result finance_invoices(route_call& c);
handler_result finance_invoice(route_call& c);
handler_result finance_credits(route_call& c);
handler_result finance_credit_transfers(route_call& c);
handler_result finance_cost_preview(route_call& c);
// console_reports.cpp: aggregates the console draws that no other route gives.
handler_result finance_refusals(route_call& c);
}  // namespace routes

}  // namespace tollgate::gateway
