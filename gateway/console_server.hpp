// The web console's own routes on a listener: its embedded static files under /console/ with a
// strict Content-Security-Policy, and sign-in at /console/session (POST: a token or API key
// for a session cookie; GET: the session, or signed_in false; DELETE: sign-out). The operator
// listener signs in admins and finance (auth tokens); the public listener signs in key holders
// (API keys). The console's API calls then go to the existing APIs, which accept the session
// through console_gate.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "gateway/auth.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/console_session.hpp"

namespace tollgate::gateway {

// The headers of every /console/ answer (docs/CONSOLE.md): nothing from another origin, no
// inline script or style, never framed.
inline constexpr std::string_view console_csp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

class console_server {
 public:
  // The operator listener's console: admins and finance sign in with auth's tokens.
  console_server(console_gate& gate, const auth_config& auth, const clock_source& clock)
      : gate_(gate), auth_(&auth), clock_(clock) {}
  // The public listener's console: key holders sign in with an API key (`keys`), and see their
  // tenant (read through `billing`).
  console_server(console_gate& gate, authenticator& keys, const billing_context& billing,
                 const clock_source& clock)
      : gate_(gate), keys_(&keys), billing_(&billing), clock_(clock) {}

  // Whether `path` is the console's: /console and everything under /console/.
  static bool owns(std::string_view path);
  boost::asio::awaitable<void> handle(http::exchange& ex);

  // A session-authenticated request on the public listener: its key as it stands now (revoked
  // or expired keys end their sessions), or the 401/403 to answer with.
  boost::asio::awaitable<result<caller>> key_holder(const http::request& req);

 private:
  boost::asio::awaitable<void> serve_file(http::exchange& ex, std::string_view rel);
  boost::asio::awaitable<void> sign_in(http::exchange& ex);
  boost::asio::awaitable<void> show_session(http::exchange& ex);
  boost::asio::awaitable<void> sign_out(http::exchange& ex);
  // The session's JSON (key holders: with their tenant, or the error reading it).
  boost::asio::awaitable<result<std::string>> session_json(const console_session& s);
  boost::asio::awaitable<void> send(http::exchange& ex, unsigned status, std::string_view type,
                                    std::string body, std::string_view set_cookie = {});
  boost::asio::awaitable<void> send_error(http::exchange& ex, const api_error& e);
  std::int64_t now_ms() const;

  console_gate& gate_;
  const auth_config* auth_ = nullptr;        // operator listener
  authenticator* keys_ = nullptr;            // public listener
  const billing_context* billing_ = nullptr;  // public listener
  const clock_source& clock_;
};

}  // namespace tollgate::gateway
