// The console's sessions, cookies and CSRF checks (gateway/console_session): lifetime and
// eviction, the cookie's attributes, and which requests a session admits.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "gateway/console_assets.hpp"
#include "gateway/console_server.hpp"
#include "gateway/console_session.hpp"

using namespace tollgate;
using namespace tollgate::gateway;
using boost::beast::http::field;
using boost::beast::http::verb;

namespace {

http::request request_with(verb method, std::string cookie, std::string csrf = {},
                           std::string origin = {}) {
  http::request req{method, "/admin/v1/tenants", 11};
  req.set(field::host, "127.0.0.1:8081");
  if (!cookie.empty()) req.set(field::cookie, cookie);
  if (!csrf.empty()) req.set("x-csrf-token", csrf);
  if (!origin.empty()) req.set(field::origin, origin);
  return req;
}

console_config config_of(std::uint64_t ttl_s, std::uint64_t max) {
  console_config c;
  c.session_ttl_s = ttl_s;
  c.sessions_max = max;
  return c;
}

}  // namespace

TEST_CASE("session ids and CSRF tokens are 32 random bytes in hex, never repeated") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string t = random_token_hex();
    REQUIRE(t.size() == 64);
    CHECK(t.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(seen.insert(t).second);
  }
}

TEST_CASE("a session is found until it expires, and not after sign-out") {
  console_sessions s(60'000, 10);
  const console_session a = s.create(console_role::finance, "", "", 1'000);
  CHECK(a.expires_at_ms == 61'000);
  CHECK(a.id != a.csrf_token);
  auto found = s.find(a.id, 60'999);
  REQUIRE(found);
  CHECK(found->role == console_role::finance);
  CHECK(found->csrf_token == a.csrf_token);
  CHECK_FALSE(s.find(a.id, 61'000));  // expired: dropped
  CHECK(s.size() == 0);
  const console_session b = s.create(console_role::admin, "", "", 2'000);
  CHECK(s.erase(b.id));
  CHECK_FALSE(s.erase(b.id));
  CHECK_FALSE(s.find(b.id, 2'001));
  CHECK_FALSE(s.find("not-a-session", 2'001));
  CHECK_FALSE(s.find(std::string(64, 'a'), 2'001));
}

TEST_CASE("a full store drops expired sessions first, then the soonest to expire") {
  console_sessions s(10'000, 3);
  const auto a = s.create(console_role::admin, "", "", 0);
  const auto b = s.create(console_role::admin, "", "", 1'000);
  const auto c = s.create(console_role::admin, "", "", 2'000);
  const auto d = s.create(console_role::admin, "", "", 3'000);  // full: a goes
  CHECK(s.size() == 3);
  CHECK_FALSE(s.find(a.id, 3'000));
  CHECK(s.find(b.id, 3'000));
  // At 11,500 b (expires 11,000) is expired; c and d are not: a new one drops only b.
  const auto e = s.create(console_role::key_holder, "key_1", "ten_1", 11'500);
  CHECK(s.size() == 3);
  CHECK(s.find(c.id, 11'500));
  CHECK(s.find(d.id, 11'500));
  const auto found = s.find(e.id, 11'500);
  REQUIRE(found);
  CHECK(found->key_id == "key_1");
  CHECK(found->tenant_id == "ten_1");
}

TEST_CASE("cookies: read by name from a Cookie header; set HttpOnly, SameSite=Strict, Secure") {
  CHECK(cookie_value("a=1; tollgate_console=abc; b=2", "tollgate_console") == "abc");
  CHECK(cookie_value("tollgate_console_key=xyz", "tollgate_console") == std::nullopt);
  CHECK(cookie_value("tollgate_console=\"q\"", "tollgate_console") == "q");
  CHECK(cookie_value("", "tollgate_console") == std::nullopt);
  CHECK(cookie_value("x; tollgate_console=", "tollgate_console") == "");
  CHECK(session_cookie("tollgate_console", "abc", 3600, false) ==
        "tollgate_console=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict");
  CHECK(session_cookie("c", "v", 60, true) ==
        "c=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
  CHECK(cleared_cookie("c", false) == "c=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
}

TEST_CASE("Origin must be the request's own host; CSRF tokens compare whole") {
  CHECK(origin_allowed("", "127.0.0.1:8081"));
  CHECK(origin_allowed("http://127.0.0.1:8081", "127.0.0.1:8081"));
  CHECK(origin_allowed("https://console.example", "console.example"));
  CHECK_FALSE(origin_allowed("http://evil.example", "127.0.0.1:8081"));
  CHECK_FALSE(origin_allowed("http://127.0.0.1:8081.evil", "127.0.0.1:8081"));
  CHECK_FALSE(origin_allowed("null", "127.0.0.1:8081"));
  CHECK_FALSE(origin_allowed("http://a", ""));
  CHECK(csrf_matches("abc", "abc"));
  CHECK_FALSE(csrf_matches("abd", "abc"));
  CHECK_FALSE(csrf_matches("ab", "abc"));
  CHECK_FALSE(csrf_matches("", ""));
  CHECK_FALSE(method_changes(verb::get));
  CHECK_FALSE(method_changes(verb::head));
  CHECK(method_changes(verb::post));
  CHECK(method_changes(verb::delete_));
}

TEST_CASE("the gate admits reads with the cookie, and changes only with the CSRF token") {
  console_gate gate("tollgate_console", config_of(3600, 100));
  const auto s = gate.sessions().create(console_role::admin, "", "", 1'000);
  const std::string cookie = "tollgate_console=" + s.id;

  SECTION("no cookie, or an Authorization header: not a console request") {
    CHECK_FALSE(gate.presents_session(request_with(verb::get, "")));
    auto req = request_with(verb::get, cookie);
    CHECK(gate.presents_session(req));
    req.set(field::authorization, "Bearer t");
    CHECK_FALSE(gate.presents_session(req));
  }
  SECTION("a GET needs no CSRF token") {
    const auto r = gate.check(request_with(verb::get, cookie), 2'000);
    REQUIRE(r);
    CHECK(r->role == console_role::admin);
  }
  SECTION("a change without, or with a wrong, CSRF token is a 403") {
    auto r = gate.check(request_with(verb::post, cookie), 2'000);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 403);
    CHECK(r.error().code == "csrf_token_mismatch");
    r = gate.check(request_with(verb::post, cookie, std::string(64, '0')), 2'000);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 403);
    CHECK(gate.check(request_with(verb::post, cookie, s.csrf_token), 2'000));
    CHECK(gate.check(request_with(verb::delete_, cookie, s.csrf_token), 2'000));
  }
  SECTION("a change from another origin is a 403 even with the token") {
    const auto r = gate.check(
        request_with(verb::post, cookie, s.csrf_token, "http://evil.example"), 2'000);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "csrf_origin_mismatch");
  }
  SECTION("an expired or unknown session is a 401") {
    auto r = gate.check(request_with(verb::get, cookie), 1'000 + 3'600'000);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 401);
    r = gate.check(request_with(verb::get, "tollgate_console=" + std::string(64, 'f')), 2'000);
    REQUIRE_FALSE(r);
    CHECK(r.error().status == 401);
  }
  SECTION("Secure: when configured, or behind an https proxy") {
    CHECK_FALSE(gate.secure_for(request_with(verb::get, cookie)));
    auto req = request_with(verb::get, cookie);
    req.set("x-forwarded-proto", "https");
    CHECK(gate.secure_for(req));
    console_config c = config_of(3600, 100);
    c.secure_cookies = true;
    CHECK(console_gate("c", c).secure_for(request_with(verb::get, cookie)));
  }
}

TEST_CASE("the embedded console files: index, scripts and the checked vendor files") {
  bool index = false;
  bool uplot = false;
  for (const console_asset& a : console_assets()) {
    CHECK(!a.body.empty());
    CHECK(a.etag.size() == 22);
    if (a.path == "index.html") index = a.content_type == "text/html; charset=utf-8";
    if (a.path == "vendor/uPlot.esm.js") uplot = a.content_type.rfind("text/javascript", 0) == 0;
  }
  CHECK(index);
  CHECK(uplot);
  CHECK(console_server::owns("/console"));
  CHECK(console_server::owns("/console/js/app.js"));
  CHECK_FALSE(console_server::owns("/consoles"));
  CHECK(console_csp.find("frame-ancestors 'none'") != std::string_view::npos);
  CHECK(console_csp.find("unsafe-inline") == std::string_view::npos);
}
