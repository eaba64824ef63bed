// Budget alert delivery: see alert_dispatcher.hpp. The webhook POST is a small Beast client
// (one connection per attempt, 5 s for the whole exchange, TLS handshake included).
#include "gateway/alert_dispatcher.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <optional>

#include "billing/budget_store.hpp"
#include "billing/credit_store.hpp"
#include "billing/plan_store.hpp"
#include "core/json_text.hpp"
#include "metering/budgets/alerts.hpp"

namespace tollgate::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

constexpr int claim_batch = 20;
constexpr auto idle_poll = std::chrono::seconds(1);  // also picks up other gateways' retries
constexpr auto exchange_timeout = std::chrono::seconds(5);
// A claimed batch is delivered one alert after another: the lease outlasts the whole batch,
// so no alert of it can be claimed by another gateway while this one still works on it.
constexpr std::int64_t lease_ms =
    claim_batch * std::chrono::duration_cast<std::chrono::milliseconds>(exchange_timeout).count() +
    10'000;
constexpr std::size_t response_body_max = 64 * 1024;

}  // namespace

struct alert_dispatcher::loop_state {
  loop_state(const billing_context& b, int attempts, metrics::registry& registry, logger& l)
      : billing(b),
        max_attempts(attempts),
        tls(net::ssl::context::tls_client),
        timer(b.executor),
        log(l),
        outcomes(registry.add_counter("tollgate_budget_alerts_total",
                                      "Budget alert webhook attempts by outcome (delivered, "
                                      "retry, failed).",
                                      {"outcome"})) {}
  const billing_context& billing;
  int max_attempts;
  net::ssl::context tls;       // https:// webhooks: the CAs their certificates must chain to
  std::string tls_error;       // why the CA file could not be loaded ("" = loaded)
  net::steady_timer timer;
  logger& log;
  metrics::family<metrics::counter>& outcomes;
  bool allow_private = false;  // deliver to non-public addresses (tests, closed networks)
  bool stopping = false;  // billing thread only
  bool woken = false;     // billing thread only
  std::chrono::milliseconds forecast_interval{0};
  std::chrono::steady_clock::time_point next_forecast{};  // billing thread only
};

alert_dispatcher::alert_dispatcher(const billing_context& billing, int max_attempts,
                                   const std::string& ca_file, metrics::registry& registry,
                                   logger& log, bool allow_private_targets,
                                   std::chrono::milliseconds forecast_interval)
    : st_(std::make_shared<loop_state>(billing, max_attempts, registry, log)) {
  st_->allow_private = allow_private_targets;
  st_->forecast_interval = forecast_interval;
  boost::system::error_code ec;
  st_->tls.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                           net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                           net::ssl::context::no_tlsv1_1,
                       ec);
  if (ca_file.empty()) {
    st_->tls.set_default_verify_paths(ec);
  } else {
    st_->tls.load_verify_file(ca_file, ec);
  }
  if (ec) {
    st_->tls_error = "cannot load the webhook CA file " + ca_file + ": " + ec.message();
    json_object_writer f;
    f.add("error", st_->tls_error);
    log.error("budgets: https:// alert webhooks cannot be verified", f);
  }
  running_ = net::co_spawn(billing.executor, run(st_), net::use_future);
}

alert_dispatcher::~alert_dispatcher() { stop(); }

void alert_dispatcher::wake() {
  net::post(st_->billing.executor, [st = st_] {
    st->woken = true;
    st->timer.cancel();
  });
}

void alert_dispatcher::stop() {
  if (!running_.valid()) return;
  net::post(st_->billing.executor, [st = st_] {
    st->stopping = true;
    st->timer.cancel();
  });
  running_.wait_for(std::chrono::seconds(10));
  running_ = {};
}

net::awaitable<void> alert_dispatcher::run(std::shared_ptr<loop_state> st) {
  while (!st->stopping) {
    st->woken = false;
    if (std::chrono::steady_clock::now() >= st->next_forecast) {
      st->next_forecast = std::chrono::steady_clock::now() + st->forecast_interval;
      co_await check_forecasts(st);  // what it records is claimed below
    }
    auto claimed = co_await st->billing.budgets->claim_alerts(claim_batch, lease_ms);
    if (claimed && claimed->empty() && st->billing.credits != nullptr) {
      // Then auto top-up webhooks (billing/credit_store), sent and signed the same way.
      claimed = co_await st->billing.credits->claim_top_up_webhooks(claim_batch, lease_ms);
    }
    if (claimed) {
      for (auto& d : *claimed) {
        if (st->stopping) break;  // the lease runs out and another start sends it
        co_await deliver(st, std::move(d));
      }
      if (!claimed->empty()) continue;  // more may be due
    }
    if (st->stopping || st->woken) continue;
    st->timer.expires_after(idle_poll);
    co_await st->timer.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<bool> alert_dispatcher::check_forecasts(std::shared_ptr<loop_state> st) {
  if (st->billing.plans == nullptr || st->billing.budgets == nullptr) co_return false;
  auto budgets = co_await st->billing.budgets->forecast_budgets();
  if (!budgets || budgets->empty()) co_return false;
  const std::int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  bool pending = false;
  std::string tenant;
  std::optional<billing::plan_store::period_forecast> forecast;  // of `tenant`
  for (auto& b : *budgets) {
    if (st->stopping) break;
    if (b.tenant_id != tenant) {  // budgets come by tenant: one forecast each
      tenant = b.tenant_id;
      std::string id = tenant;
      auto f = co_await st->billing.plans->forecast_period(std::move(id), now_s);
      forecast.reset();
      if (f) forecast = *f;  // no plan, or the database away: no forecast alert
    }
    if (!forecast) continue;
    for (const int percent : b.thresholds) {
      // The threshold in micro-units, rounded up as for usage alerts: ceil(limit x p / 100).
      const __int128 needed = (static_cast<__int128>(b.limit) * percent + 99) / 100;
      if (forecast->forecast_micros < needed) continue;
      const std::int64_t start = forecast->period_start_s;
      auto recorded = co_await st->billing.budgets->record_forecast_alert(
          b, start, percent, forecast->forecast_micros, forecast->cost_micros);
      if (recorded && *recorded) pending = true;
    }
  }
  co_return pending;
}

namespace {

// The POST itself, on a connected (and for https, handshaken) stream; "" on a 2xx answer.
template <class Stream>
net::awaitable<std::string> exchange(Stream& stream, const webhook_target& to,
                                     const metering::alert_delivery& d) {
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, to.target, 11};
  const unsigned default_port = to.tls ? 443 : 80;
  req.set(bhttp::field::host,
          to.port == default_port ? to.host : to.host + ":" + std::to_string(to.port));
  req.set(bhttp::field::content_type, "application/json");
  req.set(bhttp::field::user_agent, "tollgate-alerts");
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  req.set("x-tollgate-signature", metering::webhook_signature(d.secret, now_s, d.payload));
  req.set("x-tollgate-alert-id", d.id);
  req.body() = d.payload;
  req.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(stream, req, net::as_tuple(net::use_awaitable));
  (void)wn;
  if (wec) co_return "sending failed: " + wec.message();
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(response_body_max);
  auto [rdec, rn] = co_await bhttp::async_read(stream, buffer, parser,
                                               net::as_tuple(net::use_awaitable));
  (void)rn;
  if (rdec) co_return "no answer: " + rdec.message();
  const unsigned status = parser.get().result_int();
  if (status < 200 || status > 299) co_return "answered HTTP " + std::to_string(status);
  co_return std::string();
}

// What one attempt came to: "" delivered; `refused` when the target may not be delivered to
// at all (the alert fails at once rather than being retried).
struct attempt_error {
  std::string message;
  bool refused = false;
};

// Resolves the webhook's host within the attempt's deadline (the timer cancels the look-up) and
// checks every address it gives: one that is not public refuses the delivery unless allowed.
net::awaitable<std::optional<net::ip::tcp::resolver::results_type>> resolve_checked(
    net::any_io_executor ex, const webhook_target& to, bool allow_private,
    std::chrono::steady_clock::time_point deadline, attempt_error& error) {
  auto resolver = std::make_shared<net::ip::tcp::resolver>(ex);
  net::steady_timer timer(ex);
  timer.expires_at(deadline);
  timer.async_wait([weak = std::weak_ptr<net::ip::tcp::resolver>(resolver)](
                       boost::system::error_code ec) {
    if (auto r = weak.lock(); r && !ec) r->cancel();
  });
  auto [rec, endpoints] = co_await resolver->async_resolve(to.host, std::to_string(to.port),
                                                           net::as_tuple(net::use_awaitable));
  timer.cancel();
  if (rec) {
    error.message = "cannot resolve " + to.host + ": " +
                    (rec == net::error::operation_aborted ? std::string("timed out")
                                                          : rec.message());
    co_return std::nullopt;
  }
  if (!allow_private) {
    for (const auto& e : endpoints) {
      if (const auto why = non_public_reason(e.endpoint().address())) {
        error.refused = true;
        error.message = "refused: " + to.host + " resolves to " +
                        e.endpoint().address().to_string() + ", a " + std::string(*why) +
                        " address (budgets.alert_webhook_allow_private is off)";
        co_return std::nullopt;
      }
    }
  }
  co_return endpoints;
}

// A POST to `endpoints` (already resolved and checked, never resolved again) by `deadline`:
// TLS for https://, the certificate checked against the CAs and the URL's host. "" on a 2xx
// answer, else what went wrong.
net::awaitable<std::string> post_to(net::any_io_executor ex, net::ssl::context& tls,
                                    const webhook_target& to, const metering::alert_delivery& d,
                                    const net::ip::tcp::resolver::results_type& endpoints,
                                    std::chrono::steady_clock::time_point deadline) {
  beast::error_code ignored;
  if (!to.tls) {
    beast::tcp_stream stream(ex);
    stream.expires_at(deadline);
    auto [cec, ep] = co_await stream.async_connect(endpoints, net::as_tuple(net::use_awaitable));
    (void)ep;
    if (cec) co_return "cannot connect: " + cec.message();
    auto error = co_await exchange(stream, to, d);
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    co_return error;
  }
  beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
  beast::get_lowest_layer(stream).expires_at(deadline);  // handshake included
  auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(
      endpoints, net::as_tuple(net::use_awaitable));
  (void)ep;
  if (cec) co_return "cannot connect: " + cec.message();
  SSL* native = stream.native_handle();
  boost::system::error_code not_ip;
  net::ip::make_address(to.host, not_ip);
  if (not_ip) {
    SSL_set_tlsext_host_name(native, to.host.c_str());  // SNI: names only
    SSL_set1_host(native, to.host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), to.host.c_str());
  }
  stream.set_verify_mode(net::ssl::verify_peer);
  auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::client,
                                               net::as_tuple(net::use_awaitable));
  if (hec) {
    std::string why = "TLS handshake failed: " + hec.message();
    const long verify = SSL_get_verify_result(native);
    if (verify != X509_V_OK) {
      why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
    }
    co_return why;
  }
  auto error = co_await exchange(stream, to, d);
  beast::get_lowest_layer(stream).socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  co_return error;
}

// One attempt: resolve and check the host, then POST to exactly the addresses checked.
net::awaitable<attempt_error> post_once(net::any_io_executor ex, net::ssl::context& tls,
                                        const std::string& tls_error, const webhook_target& to,
                                        const metering::alert_delivery& d, bool allow_private) {
  if (to.tls && !tls_error.empty()) co_return attempt_error{tls_error};
  // DNS counts against the attempt's time limit: one deadline for look-up, connect and POST.
  const auto deadline = std::chrono::steady_clock::now() + exchange_timeout;
  attempt_error failed;
  auto endpoints = co_await resolve_checked(ex, to, allow_private, deadline, failed);
  if (!endpoints) co_return failed;
  std::string error = co_await post_to(ex, tls, to, d, *endpoints, deadline);
  co_return attempt_error{std::move(error)};
}

}  // namespace

net::awaitable<void> alert_dispatcher::deliver(std::shared_ptr<loop_state> st,
                                               metering::alert_delivery d) {
  attempt_error attempt;
  if (const auto to = parse_webhook_url(d.url)) {
    attempt = co_await post_once(st->billing.executor, st->tls, st->tls_error, *to, d,
                                 st->allow_private);
  } else {
    attempt.message = "not an http:// or https:// URL";
  }
  std::string error = std::move(attempt.message);
  auto next = metering::after_alert_attempt(d.attempts, st->max_attempts, error, attempt.refused);
  if (!error.empty()) {
    json_object_writer f;
    f.add("alert_id", d.id).add("url", d.url).add("attempt", d.attempts).add("error", error);
    st->log.warn(next.last ? "budgets: alert webhook failed for good"
                           : "budgets: alert webhook failed; will retry",
                 f);
  }
  st->outcomes.with({next.outcome}).inc();
  std::string id = d.id;
  if (id.starts_with("top_up:")) {
    co_await st->billing.credits->finish_top_up_webhook(std::move(id), std::move(next.status),
                                                       std::move(error), next.retry_ms);
    co_return;
  }
  co_await st->billing.budgets->finish_alert(std::move(id), std::move(next.status),
                                           std::move(error), next.retry_ms);
}

}  // namespace tollgate::gateway
