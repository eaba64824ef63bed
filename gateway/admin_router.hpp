// The admin and finance APIs on the operator listener (:8081), served when a database is
// configured: the token checks, the route table (gateway/admin_routes.hpp) and dispatch.
//   /admin/v1/...    tenants, projects, API keys (create, list, get, update, disable, revoke,
//                    rotate), budgets (and their reconciliation from the ledger), price books,
//                    plans, credits, invoices, batches and the audit log;
//                    `Authorization: Bearer <admin token>`.
//   /finance/v1/...  usage reports (JSON or CSV), raw usage events, invoices, credits and the
//                    cost preview; read-only, with the finance token (the admin token may read
//                    them too).
// JSON in, JSON out, errors in the OpenAI shape; lists are paged with limit/after.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "gateway/admin_routes.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/console_session.hpp"
#include "gateway/usage_report.hpp"

namespace tollgate::gateway {

class budget_guard;

class admin_router {
 public:
  admin_router(const billing_context& billing, const auth_config& auth,
               const invoices_config& invoices, const clock_source& clock)
      : auth_(auth), env_{billing, invoices, clock, nullptr, usage_limits{}} {}

  // With budgets on: changes are announced to every gateway, and reconcile is served.
  void attach_budgets(budget_guard* budgets) { env_.budgets = budgets; }
  // How many buckets a finance usage query may span (usage_reports in the config).
  void set_usage_limits(const usage_limits& limits) { env_.usage = limits; }

  // The operator listener's console sessions: a request with the session cookie and no
  // Authorization header is admitted as its role (the finance role reads, never changes).
  void attach_console(console_gate* gate) { console_ = gate; }

  // Whether `path` belongs to these APIs.
  static bool owns(std::string_view path);
  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  boost::asio::awaitable<void> handle_admin(http::exchange& ex);
  boost::asio::awaitable<void> handle_finance(http::exchange& ex);

  // The console session's verdict for a request that presents one: nullopt to go on, else
  // the error answered.
  std::optional<api_error> console_verdict(http::exchange& ex, bool admin_api);

  const auth_config& auth_;
  route_env env_;
  console_gate* console_ = nullptr;
};

// Every admin and finance route, in the order they are matched.
std::span<const route> route_table();

// A path's segments, without its leading '/'. Admin paths skip empty segments ("//", a trailing
// '/'), as they always have; finance paths keep them (`keep_empty`), so only the exact path
// matches.
std::vector<std::string_view> path_segments(std::string_view path, bool keep_empty);
// The first route of `role` for `method` whose pattern matches `segments` (null: none), and
// the segment its {id} matched.
const route* find_route(std::span<const route> table, route_role role,
                        boost::beast::http::verb method,
                        const std::vector<std::string_view>& segments, std::string_view* id);
// Whether admin path `segments` are /admin/v1/<collection>[/<id>[/<action>]] for a collection
// of the table: such a path answers 405 for a method it has no route for, any other path 404.
bool admin_collection_known(std::span<const route> table,
                            const std::vector<std::string_view>& segments);

}  // namespace tollgate::gateway
