// Budget alert decisions: see alerts.hpp.
#include "metering/budgets/alerts.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

namespace tollgate::metering {

namespace {

constexpr std::int64_t retry_first_ms = 1'000;
constexpr std::int64_t retry_max_ms = 300'000;

}  // namespace

std::vector<budget_alert_spec> crossed_alerts(const std::string& tenant_id,
                                              const std::vector<std::string>& budget_ids,
                                              const std::vector<std::int64_t>& limits,
                                              const std::vector<std::int64_t>& window_start_ms,
                                              const std::vector<threshold_crossing>& crossings) {
  std::vector<budget_alert_spec> alerts;
  for (const auto& x : crossings) {
    budget_alert_spec alert;
    alert.tenant_id = tenant_id;
    alert.budget_id = budget_ids.at(x.charge);
    alert.window_start_ms = window_start_ms.at(x.charge);
    alert.threshold = x.percent;
    alert.limit = limits.at(x.charge);
    alert.used = x.used;
    alerts.push_back(std::move(alert));
  }
  return alerts;
}

std::string webhook_signature(std::string_view secret, std::int64_t unix_s, std::string_view body) {
  const std::string signed_text = std::to_string(unix_s) + "." + std::string(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &n);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "t=" + std::to_string(unix_s) + ",v1=";
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(hex[mac[i] >> 4]);
    out.push_back(hex[mac[i] & 15]);
  }
  return out;
}

alert_attempt_result after_alert_attempt(int attempts, int max_attempts, const std::string& error,
                                         bool refused) {
  alert_attempt_result r;
  if (error.empty()) {
    r.status = "delivered";
    r.outcome = "delivered";
    return r;
  }
  // A refused target is not retried: the policy will not change between attempts.
  r.last = refused || attempts >= max_attempts;
  r.status = r.last ? "failed" : "pending";
  r.outcome = r.last ? "failed" : "retry";
  r.retry_ms = std::min(retry_max_ms, retry_first_ms << std::clamp(attempts - 1, 0, 20));
  return r;
}

}  // namespace tollgate::metering
