// Budget alert delivery, the HTTP side. A threshold crossing is recorded in PostgreSQL (table
// budget_alerts, by budget_guard); this dispatcher, on the billing thread, POSTs each pending
// alert to its budget's webhook, and each pending auto top-up (table credit_top_ups, made by the
// ledger writer: docs/CREDITS.md) to its tenant's top-up webhook, with an HMAC-SHA256 signature
// header:
//   x-tollgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
// Claims are leased in PostgreSQL, so several gateways never send one alert at the same time.
// A failed attempt (no answer, or not 2xx) is retried after 1 s, doubling up to 5 minutes,
// until max_attempts; then the alert is marked failed. Every attempt is recorded. The
// signature and the retry decisions are the budget module's (metering/budgets/alerts).
// https:// webhooks are verified against the system's CAs, or the configured CA file
// (budgets.alert_webhook_ca_file); the certificate must name the URL's host.
// The host is resolved at each delivery (within the delivery's time limit) and the connection
// goes to the addresses checked: one that is loopback, private, link-local or a cloud metadata
// address refuses the delivery and fails the alert at once, unless
// budgets.alert_webhook_allow_private is on (so `localhost` and DNS rebinding do not pass).
// Every `forecast_interval` it also checks the budgets with forecast alert thresholds: the
// tenant's billing period forecast (billing/plan_store, the cost preview's run rate) reaching
// ceil(limit x percent / 100) records a forecast alert, once per budget, period and threshold,
// delivered like the others.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/webhook_url.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::gateway {

class alert_dispatcher {
 public:
  // `ca_file`: the CAs https:// webhooks must chain to ("" = the system's).
  // `allow_private_targets`: deliver to non-public addresses too (budgets.
  // alert_webhook_allow_private).
  alert_dispatcher(const billing_context& billing, int max_attempts, const std::string& ca_file,
                   metrics::registry& registry, logger& log, bool allow_private_targets = false,
                   std::chrono::milliseconds forecast_interval = std::chrono::seconds(60));
  ~alert_dispatcher();

  // Delivers what is due now (from any thread): after an alert was recorded.
  void wake();
  // Ends the delivery loop and waits for it (before the billing thread stops).
  void stop();

 private:
  struct loop_state;
  static boost::asio::awaitable<void> run(std::shared_ptr<loop_state> st);
  // Records the forecast alerts now due; whether one is pending delivery.
  static boost::asio::awaitable<bool> check_forecasts(std::shared_ptr<loop_state> st);
  static boost::asio::awaitable<void> deliver(std::shared_ptr<loop_state> st,
                                              metering::alert_delivery d);

  std::shared_ptr<loop_state> st_;
  std::future<void> running_;
};

}  // namespace tollgate::gateway
