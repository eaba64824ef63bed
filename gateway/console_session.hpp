// The web console's sign-in sessions: held in gateway memory (lost on restart), each an opaque
// random id in an HttpOnly, SameSite=Strict cookie with a per-session CSRF token that every
// change must echo in X-CSRF-Token. console_gate checks a request's cookie, CSRF token and
// Origin for the APIs the console calls (docs/CONSOLE.md).
#pragma once
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/http_server.hpp"

namespace tollgate::gateway {

// Who signed in: with the admin token, the finance token (operator listener) or an API key
// (public listener).
enum class console_role { admin, finance, key_holder };
std::string_view role_name(console_role role);

struct console_session {
  std::string id;          // the cookie's value: 32 random bytes, hex
  std::string csrf_token;  // 32 random bytes, hex: X-CSRF-Token on every change
  console_role role = console_role::admin;
  std::string key_id;     // key holders: the key signed in with
  std::string tenant_id;  // key holders: its tenant
  std::int64_t expires_at_ms = 0;
};

// 32 random bytes from OpenSSL's RAND_bytes, as 64 hex digits.
std::string random_token_hex();

// Sessions by the SHA-256 of their id, with a fixed lifetime and a bound on how many are held:
// when full, expired ones go first, then those expiring soonest. Safe from any thread.
class console_sessions {
 public:
  console_sessions(std::int64_t ttl_ms, std::size_t sessions_max)
      : ttl_ms_(ttl_ms), sessions_max_(sessions_max) {}
  console_session create(console_role role, std::string key_id, std::string tenant_id,
                         std::int64_t now_ms);
  // The session with this id, unless unknown or expired at `now_ms` (an expired one is dropped).
  std::optional<console_session> find(std::string_view id, std::int64_t now_ms);
  // Drops a session (sign-out); false when there was none.
  bool erase(std::string_view id);
  std::size_t size() const;
  std::int64_t ttl_ms() const { return ttl_ms_; }

 private:
  void make_room(std::int64_t now_ms);  // with mu_ held
  std::int64_t ttl_ms_;
  std::size_t sessions_max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, console_session> by_hash_;
  std::multimap<std::int64_t, std::string> by_expiry_;  // expires_at_ms -> hash
};

// The value of cookie `name` in a Cookie header (nullopt when absent).
std::optional<std::string_view> cookie_value(std::string_view cookie_header,
                                             std::string_view name);
// Set-Cookie for a session: Path=/, Max-Age, HttpOnly, SameSite=Strict, and Secure when asked.
std::string session_cookie(std::string_view name, std::string_view id, std::int64_t max_age_s,
                           bool secure);
// Set-Cookie that removes it.
std::string cleared_cookie(std::string_view name, bool secure);
// Whether `method` may change something (everything but GET, HEAD and OPTIONS).
bool method_changes(boost::beast::http::verb method);
// Whether an Origin header fits the request's Host: absent, or http(s)://<host>.
bool origin_allowed(std::string_view origin, std::string_view host);
// Constant-time comparison of a given CSRF token with the session's.
bool csrf_matches(std::string_view given, std::string_view expected);

// One listener's console sessions and cookie: the operator listener's (admin, finance) or the
// public listener's (key holders), under different cookie names so that a browser holding both
// (same host, other port) never sends one where the other is expected.
class console_gate {
 public:
  console_gate(std::string cookie_name, const console_config& config)
      : cookie_name_(std::move(cookie_name)),
        secure_always_(config.secure_cookies),
        sessions_(static_cast<std::int64_t>(config.session_ttl_s) * 1000,
                  config.sessions_max) {}

  const std::string& cookie_name() const { return cookie_name_; }
  console_sessions& sessions() { return sessions_; }
  // Whether the request relies on a console session: no Authorization header, and our cookie.
  bool presents_session(const http::request& req) const;
  // The request's session, or the error to answer with: 401 (no, unknown or expired session),
  // 403 (a change without the session's X-CSRF-Token, or from another Origin).
  result<console_session> check(const http::request& req, std::int64_t now_ms);
  // Whether the cookie gets Secure: always when configured, else when a TLS-terminating proxy
  // says the request came over https (X-Forwarded-Proto).
  bool secure_for(const http::request& req) const;

 private:
  std::string cookie_name_;
  bool secure_always_;
  console_sessions sessions_;
};

}  // namespace tollgate::gateway
