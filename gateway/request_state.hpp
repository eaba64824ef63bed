// What one proxied request accumulates on its way (api_handler::proxy_state) and the
// per-I/O-thread metric children of the request path: private to the API handler's files
// (api_handler.cpp, api_routing.cpp).
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "gateway/api_handler.hpp"
#include "gateway/budget_guard.hpp"
#include "gateway/openai_request.hpp"
#include "metering/completion_text.hpp"
#include "metering/prompt_count.hpp"
#include "metering/usage.hpp"

namespace tollgate::gateway {

struct api_handler::proxy_state {
  // Where the request is on its path. finish() records it once, moving it to `recorded`: from
  // `refused` (stopped before forwarding) or once forwarding began.
  enum class stage { admitting, refused, forwarding, recorded };
  stage at = stage::admitting;
  unsigned worker = 0;                    // the I/O thread it runs on
  proxy_state* prev_in_flight = nullptr;  // the I/O thread's in-flight list
  proxy_state* next_in_flight = nullptr;
  bool listed = false;          // on that list (false once the handler detached it at shutdown)
  bool stream_started = false;  // a 200 event-stream header went to the client
  metering::usage_record rec;
  std::string traceparent;  // sent upstream: rec.trace_id, the gateway's span (W3C)
  completion_request req;
  // The model that serves the request (a virtual model's target, or a fallback once one took
  // it over), its upstream and its prompt counter.
  const model_config* model = nullptr;
  const upstream_config* upstream = nullptr;
  const metering::prompt_counter* counter = nullptr;
  // Routing (gateway/routing.hpp): the virtual model the request named (null: a real one),
  // the models tried so far (the first is the one routed to), the model the first fallback
  // left (empty while none was taken), and the failure label of the last forward ("" if the
  // upstream answered).
  const virtual_model_config* via = nullptr;
  std::vector<const model_config*> tried;
  std::string fallback_from;
  std::string_view failure_label;
  metering::completion_text completion;  // counted only if the upstream reports no usage
  std::optional<budget_hold> hold;       // budgets reserved for this request
  std::chrono::steady_clock::time_point received_at;
  bool recorded() const { return at == stage::recorded; }
};

// The per-request metric children of one I/O thread, found without the families' mutexes.
struct api_handler::worker_metrics {
  metrics::child_cache<metrics::counter> upstream_requests;
  metrics::child_cache<metrics::latency_histogram> upstream_ttft;
  metrics::child_cache<metrics::counter> usage_unreported;
  metrics::child_cache<metrics::counter> routed;     // by virtual model, rule and target
  metrics::child_cache<metrics::counter> fallbacks;  // by model pair and reason
};

}  // namespace tollgate::gateway
