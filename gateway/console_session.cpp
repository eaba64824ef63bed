// The console's sessions, cookies and CSRF checks: see console_session.hpp.
#include "gateway/console_session.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "billing/api_keys.hpp"
#include "core/assert.hpp"

namespace tollgate::gateway {

namespace bhttp = boost::beast::http;

namespace {

constexpr std::size_t token_bytes = 32;

std::string hash_of(std::string_view id) {
  return billing::sha256_bytes(id);
}

}  // namespace

std::string_view role_name(console_role role) {
  switch (role) {
    case console_role::admin:
      return "admin";
    case console_role::finance:
      return "finance";
    case console_role::key_holder:
      return "key_holder";
  }
  return "admin";
}

std::string random_token_hex() {
  unsigned char bytes[token_bytes];
  // A failing RAND_bytes leaves no safe session id to hand out: stop, as for any broken
  // invariant (it does not fail once OpenSSL has seeded itself).
  const int made = RAND_bytes(bytes, static_cast<int>(token_bytes));
  TOLLGATE_ASSERT(made == 1);
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * token_bytes);
  for (unsigned char b : bytes) {
    hex.push_back(digits[b >> 4]);
    hex.push_back(digits[b & 15]);
  }
  return hex;
}

console_session console_sessions::create(console_role role, std::string key_id,
                                         std::string tenant_id, std::int64_t now_ms) {
  console_session s;
  s.id = random_token_hex();
  s.csrf_token = random_token_hex();
  s.role = role;
  s.key_id = std::move(key_id);
  s.tenant_id = std::move(tenant_id);
  s.expires_at_ms = now_ms + ttl_ms_;
  std::string hash = hash_of(s.id);
  std::lock_guard lock(mu_);
  make_room(now_ms);
  by_expiry_.emplace(s.expires_at_ms, hash);
  by_hash_.emplace(std::move(hash), s);
  return s;
}

void console_sessions::make_room(std::int64_t now_ms) {
  while (!by_expiry_.empty() &&
         (by_expiry_.begin()->first <= now_ms || by_hash_.size() >= sessions_max_)) {
    by_hash_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
}

std::optional<console_session> console_sessions::find(std::string_view id, std::int64_t now_ms) {
  if (id.size() != 2 * token_bytes) return std::nullopt;
  const std::string hash = hash_of(id);
  std::lock_guard lock(mu_);
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  if (it->second.expires_at_ms <= now_ms) {
    const auto [from, to] = by_expiry_.equal_range(it->second.expires_at_ms);
    for (auto e = from; e != to; ++e) {
      if (e->second == hash) {
        by_expiry_.erase(e);
        break;
      }
    }
    by_hash_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

bool console_sessions::erase(std::string_view id) {
  const std::string hash = hash_of(id);
  std::lock_guard lock(mu_);
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return false;
  const auto [from, to] = by_expiry_.equal_range(it->second.expires_at_ms);
  for (auto e = from; e != to; ++e) {
    if (e->second == hash) {
      by_expiry_.erase(e);
      break;
    }
  }
  by_hash_.erase(it);
  return true;
}

std::size_t console_sessions::size() const {
  std::lock_guard lock(mu_);
  return by_hash_.size();
}

std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const auto semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
    while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    std::string_view value = pair.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return std::nullopt;
}

std::string session_cookie(std::string_view name, std::string_view id, std::int64_t max_age_s,
                           bool secure) {
  std::string c(name);
  c += "=";
  c += id;
  c += "; Path=/; Max-Age=" + std::to_string(max_age_s) + "; HttpOnly; SameSite=Strict";
  if (secure) c += "; Secure";
  return c;
}

std::string cleared_cookie(std::string_view name, bool secure) {
  return session_cookie(name, "", 0, secure);
}

bool method_changes(bhttp::verb method) {
  return method != bhttp::verb::get && method != bhttp::verb::head &&
         method != bhttp::verb::options;
}

bool origin_allowed(std::string_view origin, std::string_view host) {
  if (origin.empty()) return true;
  if (host.empty()) return false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (origin.size() == scheme.size() + host.size() && origin.substr(0, scheme.size()) == scheme &&
        origin.substr(scheme.size()) == host) {
      return true;
    }
  }
  return false;
}

bool csrf_matches(std::string_view given, std::string_view expected) {
  return !expected.empty() && given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

bool console_gate::presents_session(const http::request& req) const {
  return req[bhttp::field::authorization].empty() &&
         cookie_value(req[bhttp::field::cookie], cookie_name_).has_value();
}

result<console_session> console_gate::check(const http::request& req, std::int64_t now_ms) {
  const auto id = cookie_value(req[bhttp::field::cookie], cookie_name_);
  if (!id) return unauthorized_error("Sign in to the console first.", "console_session_missing");
  auto session = sessions_.find(*id, now_ms);
  if (!session) {
    return unauthorized_error("The console session has expired or was signed out; sign in again.",
                              "console_session_expired");
  }
  if (method_changes(req.method())) {
    if (!origin_allowed(req[bhttp::field::origin], req[bhttp::field::host])) {
      return forbidden_error("A console change must come from the console's own origin.",
                             "csrf_origin_mismatch");
    }
    if (!csrf_matches(req["x-csrf-token"], session->csrf_token)) {
      return forbidden_error("A console change needs the session's X-CSRF-Token header.",
                             "csrf_token_mismatch");
    }
  }
  return std::move(*session);
}

bool console_gate::secure_for(const http::request& req) const {
  return secure_always_ || req["x-forwarded-proto"] == "https";
}

}  // namespace tollgate::gateway
