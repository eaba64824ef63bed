// Shared upstream and endpoint state and metrics: see upstream_group.hpp.
#include "backends/upstream_group.hpp"

namespace tollgate::backends {

namespace {
const std::vector<std::string> endpoint_labels{"upstream", "endpoint"};
}  // namespace

upstream_metric_families::upstream_metric_families(metrics::registry& r)
    : healthy(r.add_gauge("tollgate_upstream_endpoint_healthy",
                          "1 while the endpoint takes traffic: not ejected and not failed by the "
                          "active health check (one value shared by every I/O thread).",
                          endpoint_labels)),
      in_flight(r.add_gauge("tollgate_upstream_endpoint_in_flight",
                            "Requests in flight at the endpoint, all I/O threads.",
                            endpoint_labels)),
      attempts(r.add_counter("tollgate_upstream_endpoint_attempts_total",
                             "Attempts sent to the endpoint (first tries and retries).",
                             endpoint_labels)),
      failures(r.add_counter("tollgate_upstream_endpoint_failures_total",
                             "Attempts that failed at the endpoint: connect errors, timeouts, "
                             "resets, 5xx.",
                             endpoint_labels)),
      ejections(r.add_counter("tollgate_upstream_endpoint_ejections_total",
                              "Times the endpoint was ejected after failures in a row.",
                              endpoint_labels)),
      checks(r.add_counter("tollgate_upstream_endpoint_health_checks_total",
                           "Active health checks of the endpoint, by result (pass or fail).",
                           {"upstream", "endpoint", "result"})),
      retries(r.add_counter("tollgate_upstream_retries_total",
                            "Attempts retried on another endpoint, by upstream and what failed.",
                            {"upstream", "reason"})),
      budget_exhausted(r.add_counter(
          "tollgate_upstream_retry_budget_exhausted_total",
          "Retries not made because the upstream's retry budget was spent.", {"upstream"})),
      queue_rejections(r.add_counter("tollgate_upstream_queue_rejections_total",
                                     "Requests refused (503) at the upstream's concurrency cap, "
                                     "by reason: queue_full or queue_timeout.",
                                     {"upstream", "reason"})),
      handshakes(
          r.add_counter("tollgate_upstream_tls_handshakes_total",
                        "TLS handshakes with https upstreams, by whether they resumed a session",
                        {"upstream", "resumed"})) {}

upstream_group::upstream_group(const upstream_config& config, upstream_metric_families& f)
    : config_(config),
      policy_{config.eject_consecutive_failures, config.ejection_base_ms, config.ejection_max_ms} {
  for (const auto& e : config.endpoints) {
    auto s = std::make_unique<endpoint_state>();
    s->config = &e;
    s->healthy = &f.healthy.with({config.name, e.name});
    s->healthy->set(1);
    s->in_flight = &f.in_flight.with({config.name, e.name});
    s->attempts = &f.attempts.with({config.name, e.name});
    s->failures = &f.failures.with({config.name, e.name});
    s->ejections = &f.ejections.with({config.name, e.name});
    s->checks_passed = &f.checks.with({config.name, e.name, "pass"});
    s->checks_failed = &f.checks.with({config.name, e.name, "fail"});
    endpoints_.push_back(std::move(s));
  }
  retries_ = &f.retries;
  budget_exhausted_ = &f.budget_exhausted.with({config.name});
  queue_full_ = &f.queue_rejections.with({config.name, "queue_full"});
  queue_timeouts_ = &f.queue_rejections.with({config.name, "queue_timeout"});
}

void upstream_group::record_failure(std::size_t i, mono_ms now) {
  auto& e = *endpoints_[i];
  e.failures->inc();
  if (e.health.record_failure(policy_, now) > 0) e.ejections->inc();
}

void upstream_group::count_retry(std::string_view reason) {
  retries_->with({config_.name, reason}).inc();  // rare: the family's mutex is fine here
}

void upstream_group::refresh_gauges(mono_ms now) {
  for (auto& e : endpoints_) e->healthy->set(e->health.available(now) ? 1 : 0);
}

upstream_groups::upstream_groups(const std::vector<upstream_config>& upstreams,
                                 std::shared_ptr<const upstream_tls_contexts> tls,
                                 metrics::registry& registry)
    : tls_(std::move(tls)), families_(registry) {
  for (const auto& u : upstreams) {
    groups_.emplace(u.name, std::make_unique<upstream_group>(u, families_));
  }
}

void upstream_groups::refresh_gauges() {
  const mono_ms now = mono_now_ms();
  for (auto& [name, g] : groups_) g->refresh_gauges(now);
}

upstream_group* upstream_groups::find(std::string_view upstream) {
  auto it = groups_.find(std::string(upstream));
  return it == groups_.end() ? nullptr : it->second.get();
}

}  // namespace tollgate::backends
