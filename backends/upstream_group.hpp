// The state every I/O thread shares about each upstream and its replicas: each endpoint's
// health (backends/balancer.hpp: atomics, no locks), the TLS contexts, and the metrics of
// endpoints, retries and the concurrency cap. Made once at start-up; the per-thread parts
// (connections, requests in flight, retry budget, queue) live in each thread's upstream_pool.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/balancer.hpp"
#include "backends/upstream_tls.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"

namespace tollgate::backends {

// Steady-clock milliseconds: the time base of health and retry budgets.
inline mono_ms mono_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct endpoint_state {
  const upstream_endpoint_config* config = nullptr;
  endpoint_health health;
  metrics::gauge* healthy = nullptr;    // set from `health` when /metrics is rendered
  metrics::gauge* in_flight = nullptr;  // requests in flight there, all threads
  metrics::counter* attempts = nullptr;
  metrics::counter* failures = nullptr;
  metrics::counter* ejections = nullptr;
  metrics::counter* checks_passed = nullptr;
  metrics::counter* checks_failed = nullptr;
};

// The metric families of upstream endpoints, retries and caps (registered once).
struct upstream_metric_families {
  explicit upstream_metric_families(metrics::registry& r);
  metrics::family<metrics::gauge>& healthy;
  metrics::family<metrics::gauge>& in_flight;
  metrics::family<metrics::counter>& attempts;
  metrics::family<metrics::counter>& failures;
  metrics::family<metrics::counter>& ejections;
  metrics::family<metrics::counter>& checks;
  metrics::family<metrics::counter>& retries;
  metrics::family<metrics::counter>& budget_exhausted;
  metrics::family<metrics::counter>& queue_rejections;
  metrics::family<metrics::counter>& handshakes;
};

class upstream_group {
 public:
  upstream_group(const upstream_config& config, upstream_metric_families& families);

  const upstream_config& config() const { return config_; }
  const ejection_policy& policy() const { return policy_; }
  std::size_t size() const { return endpoints_.size(); }
  endpoint_state& endpoint(std::size_t i) { return *endpoints_[i]; }

  // A failed attempt (connect error, timeout, reset, 5xx) at endpoint i; may eject it.
  void record_failure(std::size_t i, mono_ms now);
  void record_success(std::size_t i) { endpoints_[i]->health.record_success(); }
  void count_retry(std::string_view reason);
  void count_budget_exhausted() { budget_exhausted_->inc(); }
  void count_queue_rejection(bool timed_out) { (timed_out ? queue_timeouts_ : queue_full_)->inc(); }
  void refresh_gauges(mono_ms now);  // the healthy gauges, from the shared state

 private:
  const upstream_config& config_;
  ejection_policy policy_;
  std::vector<std::unique_ptr<endpoint_state>> endpoints_;
  metrics::family<metrics::counter>* retries_;
  metrics::counter* budget_exhausted_;
  metrics::counter* queue_full_;
  metrics::counter* queue_timeouts_;
};

// Every upstream's group, by name, with the TLS contexts of the https ones.
class upstream_groups {
 public:
  // `tls` may be null when no upstream is https.
  upstream_groups(const std::vector<upstream_config>& upstreams,
                  std::shared_ptr<const upstream_tls_contexts> tls, metrics::registry& registry);

  upstream_group* find(std::string_view upstream);
  // Sets the endpoints' healthy gauges from their shared state (a metrics collector: health
  // changes with time alone, when an ejection ends).
  void refresh_gauges();
  const upstream_tls_contexts* tls() const { return tls_.get(); }
  metrics::family<metrics::counter>& handshakes() { return families_.handshakes; }

 private:
  std::shared_ptr<const upstream_tls_contexts> tls_;
  upstream_metric_families families_;
  std::unordered_map<std::string, std::unique_ptr<upstream_group>> groups_;
};

}  // namespace tollgate::backends
