// The admin and finance route table: path splitting, pattern matching, which route answers,
// and which unmatched admin paths are 405s rather than 404s.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "gateway/admin_router.hpp"

using namespace tollgate::gateway;
using boost::beast::http::verb;

namespace {

// The route `method path` reaches ("" when none), and the {id} it matched.
std::string routed(route_role role, verb method, std::string_view path, std::string* id = nullptr) {
  std::string_view matched;
  const auto segments = path_segments(path, role == route_role::finance);
  const route* r = find_route(route_table(), role, method, segments, &matched);
  if (id != nullptr) *id = std::string(matched);
  return r == nullptr ? "" : std::string(r->pattern);
}

bool known(std::string_view path) {
  return admin_collection_known(route_table(), path_segments(path, false));
}

}  // namespace

TEST_CASE("admin paths skip empty segments; finance paths keep them") {
  using v = std::vector<std::string_view>;
  CHECK(path_segments("/admin//v1/tenants/", false) == v{"admin", "v1", "tenants"});
  CHECK(path_segments("/finance/v1/invoices/", true) == v{"finance", "v1", "invoices", ""});
  CHECK(path_segments("/finance//v1", true) == v{"finance", "", "v1"});
  CHECK(path_segments("/", false).empty());
}

TEST_CASE("every route's pattern is under its role's prefix, and no two routes collide") {
  std::set<std::pair<int, std::string_view>> seen;
  for (const route& r : route_table()) {
    const std::string_view prefix = r.role == route_role::admin ? "/admin/v1/" : "/finance/v1/";
    CHECK(r.pattern.rfind(prefix, 0) == 0);
    CHECK(r.handler != nullptr);
    if (r.role == route_role::finance) CHECK(r.method == verb::get);
    CHECK(seen.insert({static_cast<int>(r.method), r.pattern}).second);
  }
}

TEST_CASE("requests find their route, literal segments before {id}") {
  using enum route_role;
  std::string id;
  CHECK(routed(admin, verb::post, "/admin/v1/budgets/reconcile") == "/admin/v1/budgets/reconcile");
  CHECK(routed(admin, verb::get, "/admin/v1/budgets/reconcile", &id) == "/admin/v1/budgets/{id}");
  CHECK(id == "reconcile");
  CHECK(routed(admin, verb::post, "/admin/v1/budgets/bud_1", &id) == "/admin/v1/budgets/{id}");
  CHECK(id == "bud_1");
  CHECK(routed(admin, verb::get, "/admin//v1/tenants/ten_1/projects/", &id) ==
        "/admin/v1/tenants/{id}/projects");
  CHECK(id == "ten_1");
  CHECK(routed(admin, verb::delete_, "/admin/v1/keys/key_1") == "/admin/v1/keys/{id}");
  CHECK(routed(admin, verb::put, "/admin/v1/tenants").empty());
  CHECK(routed(admin, verb::get, "/admin/v1/invoices/run").empty());
  CHECK(routed(admin, verb::get, "/finance/v1/usage").empty());  // not an admin route
  CHECK(routed(finance, verb::get, "/finance/v1/usage") == "/finance/v1/usage");
  CHECK(routed(finance, verb::get, "/finance/v1/usage/").empty());
  CHECK(routed(finance, verb::get, "/finance//v1/usage").empty());
  CHECK(routed(finance, verb::get, "/finance/v1/invoices/", &id) == "/finance/v1/invoices/{id}");
  CHECK(id.empty());  // the handler lists, as /finance/v1/invoices/ always has
  CHECK(routed(finance, verb::get, "/finance/v1/invoices/a/b").empty());
}

TEST_CASE("an admin path of a known collection is a 405 without a route, others 404") {
  CHECK(known("/admin/v1/tenants"));
  CHECK(known("/admin/v1/tenants/ten_1/bogus"));
  CHECK(known("/admin/v1/credits/anything"));
  CHECK(known("/admin/v1/invoices"));
  CHECK_FALSE(known("/admin/v1"));
  CHECK_FALSE(known("/admin/v2/tenants"));
  CHECK_FALSE(known("/admin/v1/nope"));
  CHECK_FALSE(known("/admin/v1/tenants/a/b/c"));
}
