// The admin and finance APIs' front door: the route table, the token checks and the dispatch
// to one handler per route (see admin_router.hpp, admin_routes.hpp).
#include "gateway/admin_router.hpp"

#include "core/request_id.hpp"
#include "gateway/budget_guard.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;
using bhttp::verb;
constexpr route_role admin = route_role::admin;
constexpr route_role finance = route_role::finance;

// Matched in order, first match wins: a literal segment (budgets/reconcile) comes before the
// {id} that would also match it.
const route routes_table[] = {
    // tenants, projects, API keys, the audit log (admin_tenants.cpp)
    {verb::post, "/admin/v1/tenants", admin, routes::create_tenant},
    {verb::get, "/admin/v1/tenants", admin, routes::list_tenants},
    {verb::get, "/admin/v1/tenants/{id}", admin, routes::get_tenant},
    {verb::post, "/admin/v1/tenants/{id}", admin, routes::update_tenant},
    {verb::post, "/admin/v1/tenants/{id}/projects", admin, routes::create_tenant_project},
    {verb::get, "/admin/v1/tenants/{id}/projects", admin, routes::list_tenant_projects},
    {verb::get, "/admin/v1/projects", admin, routes::list_projects},
    {verb::post, "/admin/v1/projects", admin, routes::create_project},
    {verb::get, "/admin/v1/projects/{id}", admin, routes::get_project},
    {verb::post, "/admin/v1/projects/{id}", admin, routes::update_project},
    {verb::get, "/admin/v1/keys", admin, routes::list_keys},
    {verb::post, "/admin/v1/keys", admin, routes::create_key},
    {verb::get, "/admin/v1/keys/{id}", admin, routes::get_key},
    {verb::post, "/admin/v1/keys/{id}", admin, routes::update_key},
    {verb::post, "/admin/v1/keys/{id}/revoke", admin, routes::revoke_key},
    {verb::delete_, "/admin/v1/keys/{id}", admin, routes::revoke_key},
    {verb::post, "/admin/v1/keys/{id}/rotate", admin, routes::rotate_key},
    {verb::get, "/admin/v1/audit_log", admin, routes::list_audit_log},
    // budgets (admin_budgets.cpp)
    {verb::post, "/admin/v1/budgets/reconcile", admin, routes::reconcile_budgets},
    {verb::get, "/admin/v1/budgets", admin, routes::list_budgets},
    {verb::post, "/admin/v1/budgets", admin, routes::create_budget},
    {verb::get, "/admin/v1/budgets/{id}", admin, routes::get_budget},
    {verb::post, "/admin/v1/budgets/{id}", admin, routes::update_budget},
    {verb::get, "/admin/v1/budgets/{id}/alerts", admin, routes::list_budget_alerts},
    // price books, plans, credits, invoices, batches (admin_billing.cpp)
    {verb::get, "/admin/v1/price_books", admin, routes::list_price_books},
    {verb::post, "/admin/v1/price_books", admin, routes::create_price_book},
    {verb::get, "/admin/v1/price_books/{id}", admin, routes::get_price_book},
    {verb::post, "/admin/v1/price_books/{id}/versions", admin, routes::add_price_book_version},
    {verb::get, "/admin/v1/tenants/{id}/plan", admin, routes::get_tenant_plan},
    {verb::post, "/admin/v1/tenants/{id}/plan", admin, routes::set_tenant_plan},
    {verb::get, "/admin/v1/tenants/{id}/seats", admin, routes::get_tenant_seats},
    {verb::post, "/admin/v1/tenants/{id}/seats", admin, routes::set_tenant_seats},
    {verb::post, "/admin/v1/tenants/{id}/credit_grants", admin, routes::grant_credit},
    {verb::post, "/admin/v1/tenants/{id}/token_bundles", admin, routes::grant_token_bundle},
    {verb::post, "/admin/v1/tenants/{id}/auto_top_up", admin, routes::set_auto_top_up},
    {verb::get, "/admin/v1/tenants/{id}/auto_top_up", admin, routes::get_auto_top_up},
    {verb::get, "/admin/v1/tenants/{id}/credits", admin, routes::tenant_credit_balance},
    {verb::get, "/admin/v1/tenants/{id}/credit_transfers", admin, routes::tenant_credit_transfers},
    {verb::get, "/admin/v1/credit_grants/{id}", admin, routes::get_credit_grant},
    {verb::post, "/admin/v1/credits/expire", admin, routes::expire_credits},
    {verb::post, "/admin/v1/invoices/run", admin, routes::run_invoices},
    {verb::get, "/admin/v1/batches", admin, routes::list_batches},
    {verb::get, "/admin/v1/batches/{id}", admin, routes::get_batch},
    // the finance API, read-only (finance_api.cpp)
    {verb::get, "/finance/v1/usage", finance, routes::finance_usage},
    {verb::get, "/finance/v1/usage_events", finance, routes::finance_usage_events},
    {verb::get, "/finance/v1/invoices", finance, routes::finance_invoices},
    {verb::get, "/finance/v1/invoices/{id}", finance, routes::finance_invoice},
    {verb::get, "/finance/v1/credits", finance, routes::finance_credits},
    {verb::get, "/finance/v1/credit_transfers", finance, routes::finance_credit_transfers},
    {verb::get, "/finance/v1/cost_preview", finance, routes::finance_cost_preview},
    {verb::get, "/finance/v1/refusals", finance, routes::finance_refusals},
};

// The deepest admin path that names a collection: /admin/v1/<collection>/<id>/<action>.
constexpr std::size_t admin_path_segments_max = 5;
constexpr std::string_view admin_prefix = "/admin/v1/";

// Whether `pattern` ("/admin/v1/keys/{id}") matches every one of `segments`, and what its {id}
// matched.
bool pattern_matches(std::string_view pattern, const std::vector<std::string_view>& segments,
                     std::string_view* id) {
  std::string_view rest = pattern.substr(1);  // patterns begin with '/'
  std::string_view matched;
  for (std::size_t i = 0;; ++i) {
    const auto slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    if (i >= segments.size() || (part != "{id}" && part != segments[i])) return false;
    if (part == "{id}") matched = segments[i];
    if (slash == std::string_view::npos) {
      if (i + 1 != segments.size()) return false;
      break;
    }
    rest.remove_prefix(slash + 1);
  }
  *id = matched;
  return true;
}

// The collection an admin pattern belongs to: "keys" for /admin/v1/keys/{id}.
std::string_view collection_of(std::string_view pattern) {
  if (pattern.rfind(admin_prefix, 0) != 0) return {};
  pattern.remove_prefix(admin_prefix.size());
  return pattern.substr(0, pattern.find('/'));
}

}  // namespace

std::span<const route> route_table() {
  return routes_table;
}

std::vector<std::string_view> path_segments(std::string_view path, bool keep_empty) {
  std::vector<std::string_view> parts;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (keep_empty || !part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

const route* find_route(std::span<const route> table, route_role role, bhttp::verb method,
                        const std::vector<std::string_view>& segments, std::string_view* id) {
  for (const route& r : table) {
    if (r.role == role && r.method == method && pattern_matches(r.pattern, segments, id)) {
      return &r;
    }
  }
  return nullptr;
}

bool admin_collection_known(std::span<const route> table,
                            const std::vector<std::string_view>& segments) {
  if (segments.size() < 3 || segments.size() > admin_path_segments_max || segments[0] != "admin" ||
      segments[1] != "v1") {
    return false;
  }
  for (const route& r : table) {
    if (r.role == route_role::admin && collection_of(r.pattern) == segments[2]) return true;
  }
  return false;
}

std::int64_t route_call::now_s() const {
  return unix_ms(env.clock.wall_now()) / 1000;
}

body_reader route_call::body() const {
  return body_reader(ex.req().method() == bhttp::verb::post ? std::string_view(ex.req().body())
                                                            : std::string_view{});
}

boost::asio::awaitable<void> route_call::fail(api_error error) {
  co_await ex.send_error(std::move(error), request_id);
}

boost::asio::awaitable<void> route_call::reply(billing::store_result outcome, unsigned status) {
  if (!outcome) co_return co_await fail(to_api_error(outcome.error()));
  co_await ex.send_json(status, std::move(outcome.value()));
}

boost::asio::awaitable<void> route_call::reply(boost::asio::awaitable<billing::store_result> op,
                                               unsigned status) {
  co_await reply(co_await run(std::move(op)), status);
}

void route_call::budgets_changed(const std::string& tenant_id) const {
  if (env.budgets != nullptr) env.budgets->budgets_changed(tenant_id);
}

bool admin_router::owns(std::string_view path) {
  return path.rfind("/admin/", 0) == 0 || path.rfind("/finance/", 0) == 0;
}

boost::asio::awaitable<void> admin_router::handle(http::exchange& ex) {
  if (ex.path().rfind("/admin/", 0) == 0) {
    co_await handle_admin(ex);
  } else {
    co_await handle_finance(ex);
  }
}

std::optional<api_error> admin_router::console_verdict(http::exchange& ex, bool admin_api) {
  auto session = console_->check(ex.req(), unix_ms(env_.clock.wall_now()));
  if (!session) return session.error();
  if (admin_api && session->role != console_role::admin && method_changes(ex.req().method())) {
    return forbidden_error("The finance role is read-only.");
  }
  return std::nullopt;
}

boost::asio::awaitable<void> admin_router::handle_admin(http::exchange& ex) {
  ex.set_route("/admin");
  const std::string_view authorization = ex.req()[bhttp::field::authorization];
  if (auth_.admin_token.empty()) {
    co_await ex.send_error(
        not_found_error("The admin API is disabled: no admin token is "
                        "configured (auth.admin_token)."));
    co_return;
  }
  if (console_ != nullptr && console_->presents_session(ex.req())) {
    if (auto refused = console_verdict(ex, /*admin_api=*/true)) {
      co_await ex.send_error(std::move(*refused));
      co_return;
    }
  } else if (!token_matches(authorization, auth_.admin_token)) {
    if (token_matches(authorization, auth_.finance_token)) {
      co_await ex.send_error(
          forbidden_error("The finance token is read-only and cannot use the "
                    "admin API."));
    } else {
      co_await ex.send_error(
          unauthorized_error("The admin API needs `Authorization: Bearer <admin "
                       "token>`."));
    }
    co_return;
  }
  const auto query = query_params::parse(ex.req().target());
  if (!query) {
    co_await ex.send_error(invalid_request("The query string has a bad percent-escape."));
    co_return;
  }
  const auto segments = path_segments(ex.path(), false);
  if (!admin_collection_known(route_table(), segments)) {
    co_await ex.send_unknown_url();
    co_return;
  }
  route_call call{ex, env_, *query, {}, {}, actor_of(ex.req()), {}};
  const bhttp::verb method = ex.req().method();
  if (method == bhttp::verb::get) {
    auto page = page_from(*query);
    if (!page) {
      co_await ex.send_error(page.error());
      co_return;
    }
    call.page = *page;
  }
  std::string_view id;
  const route* r = find_route(route_table(), route_role::admin, method, segments, &id);
  if (r == nullptr) {
    // A collection's path without this method: a POST's body is still checked first.
    if (const body_reader body = call.body(); !body.ok()) {
      co_await ex.send_error(body.error());
      co_return;
    }
    co_await ex.send_error(method_not_allowed("Unsupported method " +
                                              std::string(ex.req().method_string()) + " for " +
                                              std::string(ex.path()) + "."));
    co_return;
  }
  call.id = std::string(id);
  co_await r->handler(call);
}

boost::asio::awaitable<void> admin_router::handle_finance(http::exchange& ex) {
  ex.set_route("/finance");
  const std::string_view authorization = ex.req()[bhttp::field::authorization];
  if (auth_.finance_token.empty() && auth_.admin_token.empty()) {
    co_await ex.send_error(
        not_found_error("The finance API is disabled: no finance token is "
                        "configured (auth.finance_token)."));
    co_return;
  }
  if (console_ != nullptr && console_->presents_session(ex.req())) {
    if (auto refused = console_verdict(ex, /*admin_api=*/false)) {
      co_await ex.send_error(std::move(*refused));
      co_return;
    }
  } else if (!token_matches(authorization, auth_.admin_token) &&
             !token_matches(authorization, auth_.finance_token)) {
    co_await ex.send_error(
        unauthorized_error("The finance API needs `Authorization: Bearer <finance "
                     "token>`."));
    co_return;
  }
  if (ex.req().method() != bhttp::verb::get) {
    co_await ex.send_error(forbidden_error("The finance API is read-only."));
    co_return;
  }
  const auto query = query_params::parse(ex.req().target());
  if (!query) {
    co_await ex.send_error(invalid_request("The query string has a bad percent-escape."));
    co_return;
  }
  route_call call{ex, env_, *query, {}, {}, {}, new_request_id()};
  std::string_view id;
  const route* r = find_route(route_table(), route_role::finance, bhttp::verb::get,
                              path_segments(ex.path(), true), &id);
  if (r == nullptr) {
    co_await ex.send_unknown_url(call.request_id);
    co_return;
  }
  call.id = std::string(id);
  co_await r->handler(call);
}

}  // namespace tollgate::gateway
