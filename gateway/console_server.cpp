// The console's static files and sign-in: see console_server.hpp and docs/CONSOLE.md.
#include "gateway/console_server.hpp"

#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "gateway/admin_request.hpp"
#include "gateway/console_assets.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;

constexpr std::string_view console_prefix = "/console/";
constexpr std::string_view session_path = "/console/session";
// A sign-in body holds one token: anything longer is refused unread.
constexpr std::size_t sign_in_body_bytes_max = 4096;

const console_asset* find_asset(std::string_view rel) {
  if (rel.empty()) rel = "index.html";
  for (const console_asset& a : console_assets()) {
    if (a.path == rel) return &a;
  }
  return nullptr;
}

}  // namespace

bool console_server::owns(std::string_view path) {
  return path == "/console" || path.rfind(console_prefix, 0) == 0;
}

std::int64_t console_server::now_ms() const {
  return unix_ms(clock_.wall_now());
}

boost::asio::awaitable<void> console_server::send(http::exchange& ex, unsigned status,
                                                  std::string_view type, std::string body,
                                                  std::string_view set_cookie) {
  http::response res{static_cast<bhttp::status>(status), ex.req().version()};
  res.set(bhttp::field::content_type, type);
  res.set("content-security-policy", console_csp);
  res.set("x-content-type-options", "nosniff");
  res.set("referrer-policy", "no-referrer");
  res.set("x-frame-options", "DENY");
  res.set("cross-origin-opener-policy", "same-origin");
  res.set(bhttp::field::cache_control, "no-store");
  if (!set_cookie.empty()) res.set(bhttp::field::set_cookie, set_cookie);
  res.body() = std::move(body);
  co_await ex.send(std::move(res));
}

boost::asio::awaitable<void> console_server::send_error(http::exchange& ex, const api_error& e) {
  co_await send(ex, e.status, "application/json", e.to_json());
}

boost::asio::awaitable<void> console_server::handle(http::exchange& ex) {
  ex.set_route("/console");
  const std::string_view path = ex.path();
  const bhttp::verb method = ex.req().method();
  if (path == "/console") {
    http::response res{bhttp::status::permanent_redirect, ex.req().version()};
    res.set(bhttp::field::location, console_prefix);
    res.set("x-content-type-options", "nosniff");
    co_await ex.send(std::move(res));
    co_return;
  }
  if (path == session_path) {
    if (method == bhttp::verb::post) co_return co_await sign_in(ex);
    if (method == bhttp::verb::get) co_return co_await show_session(ex);
    if (method == bhttp::verb::delete_) co_return co_await sign_out(ex);
    co_await send_error(ex, method_not_allowed("Use POST (sign in), GET or DELETE (sign out) on "
                                               "/console/session."));
    co_return;
  }
  if (method != bhttp::verb::get && method != bhttp::verb::head) {
    co_await send_error(ex, method_not_allowed("The console's files are read with GET."));
    co_return;
  }
  co_await serve_file(ex, path.substr(console_prefix.size()));
}

boost::asio::awaitable<void> console_server::serve_file(http::exchange& ex, std::string_view rel) {
  const console_asset* a = find_asset(rel);
  if (a == nullptr) {
    co_await send_error(ex, not_found_error("No such console file: " + std::string(rel) + "."));
    co_return;
  }
  const bool unchanged = ex.req()[bhttp::field::if_none_match] == a->etag;
  http::response res{unchanged ? bhttp::status::not_modified : bhttp::status::ok,
                     ex.req().version()};
  res.set(bhttp::field::content_type, a->content_type);
  res.set("content-security-policy", console_csp);
  res.set("x-content-type-options", "nosniff");
  res.set("referrer-policy", "no-referrer");
  res.set("x-frame-options", "DENY");
  res.set("cross-origin-opener-policy", "same-origin");
  // Revalidated on every load (the ETag makes that a 304): a new gateway's files show at once.
  res.set(bhttp::field::cache_control, "no-cache");
  res.set(bhttp::field::etag, a->etag);
  // A HEAD answer gets the body too: the server sends only its length (core/http_server).
  if (!unchanged) res.body() = std::string(a->body);
  co_await ex.send(std::move(res));
}

boost::asio::awaitable<void> console_server::sign_in(http::exchange& ex) {
  const http::request& req = ex.req();
  if (req[bhttp::field::content_type].rfind("application/json", 0) != 0) {
    co_return co_await send_error(
        ex, invalid_request("Sign in with a JSON body: Content-Type: application/json."));
  }
  if (!origin_allowed(req[bhttp::field::origin], req[bhttp::field::host])) {
    co_return co_await send_error(
        ex, forbidden_error("Sign in from the console's own origin.", "csrf_origin_mismatch"));
  }
  if (req.body().size() > sign_in_body_bytes_max) {
    co_return co_await send_error(ex, invalid_request("The sign-in body is too large."));
  }
  const auto doc = json::document::parse(req.body());
  const json::value token = doc && doc->root().is_object() ? doc->root().find("token")
                                                           : json::value{};
  if (!token.valid() || !token.is_string() || token.as_string().empty()) {
    co_return co_await send_error(
        ex, invalid_request("The body must be {\"token\": \"...\"}.", "token"));
  }
  const std::string given(token.as_string());
  console_role role = console_role::admin;
  std::string key_id;
  std::string tenant_id;
  if (auth_ != nullptr) {
    if (csrf_matches(given, auth_->admin_token)) {
      role = console_role::admin;
    } else if (csrf_matches(given, auth_->finance_token)) {
      role = console_role::finance;
    } else {
      co_return co_await send_error(
          ex, unauthorized_error("Sign in with the admin or the finance token."));
    }
  } else {
    boost::system::error_code ec;
    const auto peer = ex.stream().socket().remote_endpoint(ec);
    const std::string authorization = "Bearer " + given;
    const boost::asio::ip::address source = ec ? boost::asio::ip::address{} : peer.address();
    auto who = co_await keys_->authenticate(authorization, source);
    if (!who) co_return co_await send_error(ex, who.error());
    role = console_role::key_holder;
    key_id = who->key_id;
    tenant_id = who->tenant_id;
  }
  const console_session s = gate_.sessions().create(role, key_id, tenant_id, now_ms());
  auto body = co_await session_json(s);
  if (!body) {
    gate_.sessions().erase(s.id);
    co_return co_await send_error(ex, body.error());
  }
  const std::int64_t max_age_s = gate_.sessions().ttl_ms() / 1000;
  const std::string cookie =
      session_cookie(gate_.cookie_name(), s.id, max_age_s, gate_.secure_for(req));
  co_await send(ex, 201, "application/json", std::move(*body), cookie);
}

boost::asio::awaitable<void> console_server::show_session(http::exchange& ex) {
  // No session is an answer, not an error: the page asks on every load, before sign-in.
  auto s = gate_.check(ex.req(), now_ms());
  bool valid = static_cast<bool>(s);
  if (valid && s->role == console_role::key_holder) {
    auto who = co_await keys_->check_key_id(s->key_id);
    valid = static_cast<bool>(who);
  }
  if (!valid) {
    json_object_writer w;
    w.add("object", "console.session").add("signed_in", false);
    co_return co_await send(ex, 200, "application/json", w.finish());
  }
  auto body = co_await session_json(*s);
  if (!body) co_return co_await send_error(ex, body.error());
  co_await send(ex, 200, "application/json", std::move(*body));
}

boost::asio::awaitable<void> console_server::sign_out(http::exchange& ex) {
  auto s = gate_.check(ex.req(), now_ms());
  if (!s) co_return co_await send_error(ex, s.error());
  gate_.sessions().erase(s->id);
  json_object_writer w;
  w.add("object", "console.session").add("deleted", true);
  const std::string cookie = cleared_cookie(gate_.cookie_name(), gate_.secure_for(ex.req()));
  co_await send(ex, 200, "application/json", w.finish(), cookie);
}

boost::asio::awaitable<result<std::string>> console_server::session_json(
    const console_session& s) {
  json_object_writer w;
  w.add("object", "console.session")
      .add("signed_in", true)
      .add("role", role_name(s.role))
      .add("csrf_token", s.csrf_token)
      .add("expires_at", s.expires_at_ms / 1000);
  if (s.role == console_role::key_holder) {
    w.add("key_id", s.key_id).add("tenant_id", s.tenant_id);
    auto tenant = co_await on_billing(*billing_, billing_->tenants->get_tenant(s.tenant_id));
    if (!tenant) co_return to_api_error(tenant.error());
    w.add_raw("tenant", *tenant);
  }
  co_return w.finish();
}

boost::asio::awaitable<result<caller>> console_server::key_holder(const http::request& req) {
  auto s = gate_.check(req, now_ms());
  if (!s) co_return s.error();
  if (s->role != console_role::key_holder) {
    co_return unauthorized_error("Sign in to the console with an API key.");
  }
  co_return co_await keys_->check_key_id(s->key_id);
}

}  // namespace tollgate::gateway
