// One proxied request to an upstream, over its replicas: a slot under the upstream's
// concurrency cap (or a bounded, timed wait in its queue), the endpoint picked by weighted
// power of two choices among the healthy ones, and retries on another endpoint while nothing
// has reached the client: a connection that failed or was closed before the response head,
// a 502 or 503, a 429 whose Retry-After is short, within the retry budget. Each attempt's
// outcome feeds the endpoint's health. Once start() returns, the response is this one: a
// stream is never retried. The gateway's forward step runs one exchange per model; routing to
// another model is a second exchange.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "backends/upstream.hpp"

namespace tollgate::backends {

class upstream_exchange {
 public:
  upstream_exchange(std::shared_ptr<upstream_pool> pool, const upstream_config& upstream);
  ~upstream_exchange();
  upstream_exchange(const upstream_exchange&) = delete;
  upstream_exchange& operator=(const upstream_exchange&) = delete;

  // Sends `body` to base_path + `path` of an endpoint, retrying as above, and reads the
  // response head. A failure is the last attempt's (or `overloaded` from the cap). Every
  // attempt carries `traceparent` ("" for none).
  net::awaitable<std::optional<upstream_failure>> start(std::string_view path, std::string body,
                                                        std::string_view request_id,
                                                        std::string_view traceparent);

  // The answering attempt's response (after start() succeeded).
  unsigned status() const { return call_->status(); }
  std::string_view content_type() const { return call_->content_type(); }
  bool is_event_stream() const { return call_->is_event_stream(); }
  net::awaitable<std::optional<upstream_failure>> read_some(std::string& out, bool& done) {
    return call_->read_some(out, done);
  }
  net::awaitable<std::optional<upstream_failure>> read_all(std::string& out) {
    return call_->read_all(out);
  }

  // Cancels: a pending wait or attempt fails, and nothing more is tried.
  void abort();

  // The endpoint of the last attempt ("" when none was made) and how many attempts were made.
  std::string_view endpoint_name() const;
  int attempts() const { return attempts_; }

 private:
  net::awaitable<std::optional<upstream_failure>> acquire_slot();
  void release_slot();
  // The endpoint for the next attempt among those not tried yet; npos when none is left. The
  // first attempt falls back to every endpoint when none is healthy (they may have recovered).
  std::size_t pick(mono_ms now) const;
  // Whether another attempt may follow a failure of this kind (counts the retry).
  bool may_retry(std::string_view reason, mono_ms now);
  void begin_attempt(std::size_t ep);
  void end_attempt();
  // Retry-After of the current 429 response in ms (-1: absent or not delta-seconds).
  std::int64_t retry_after_ms() const;

  std::shared_ptr<upstream_pool> pool_;
  const upstream_config& upstream_;
  upstream_pool::per_upstream& state_;
  std::string body_;
  std::optional<upstream_call> call_;
  std::optional<std::size_t> in_flight_at_;  // the endpoint counting this request in flight
  std::uint64_t tried_ = 0;                  // endpoints tried, one bit each
  int attempts_ = 0;
  bool holds_slot_ = false;
  bool aborted_ = false;
  std::optional<upstream_pool::slot_waiter> waiter_;
};

}  // namespace tollgate::backends
