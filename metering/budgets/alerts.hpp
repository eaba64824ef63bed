// Budget alert decisions, pure: the alerts a settlement's threshold crossings record, the
// webhook signature of a payload, and what a delivery attempt leads to (delivered, retried
// after a backoff of 1 s doubling up to 5 minutes, or failed for good). Recording and claiming
// alerts (billing/budget_store) and the HTTP POST (gateway/alert_dispatcher) use these.
// The payload itself is rendered by PostgreSQL with the alert's row (record_budget_alert), so
// the body signed and sent is the one stored.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::metering {

// The alerts to record for `crossings` of a settlement of `tenant_id`: charge i is budget
// budget_ids[i] with limit limits[i], its counter of the window starting window_start_ms[i].
std::vector<budget_alert_spec> crossed_alerts(const std::string& tenant_id,
                                              const std::vector<std::string>& budget_ids,
                                              const std::vector<std::int64_t>& limits,
                                              const std::vector<std::int64_t>& window_start_ms,
                                              const std::vector<threshold_crossing>& crossings);

// The x-tollgate-signature header's value for `body` sent at `unix_s`:
// "t=<unix_s>,v1=<hex HMAC-SHA256(secret, "<unix_s>.<body>")>".
std::string webhook_signature(std::string_view secret, std::int64_t unix_s, std::string_view body);

// What one delivery attempt comes to.
struct alert_attempt_result {
  std::string status;         // delivered, pending (retried) or failed: the alert's new status
  std::int64_t retry_ms = 0;  // pending: when the next attempt is due
  bool last = false;          // failed for good
  std::string_view outcome;   // for tollgate_budget_alerts_total: delivered, retry or failed
};
// After attempt number `attempts` (1 for the first) ended with `error` ("" = a 2xx answer):
// a failure is retried after 1 s, doubling up to 5 minutes, until `max_attempts`; a `refused`
// target (one the policy will never deliver to) fails at once.
alert_attempt_result after_alert_attempt(int attempts, int max_attempts, const std::string& error,
                                         bool refused);

}  // namespace tollgate::metering
