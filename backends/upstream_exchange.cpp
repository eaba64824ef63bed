// One proxied request over an upstream's replicas, with retries: see upstream_exchange.hpp.
#include "backends/upstream_exchange.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include "core/limits.hpp"

namespace tollgate::backends {

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t none = static_cast<std::size_t>(-1);
static_assert(limits::upstream_endpoints_max <= 64, "tried endpoints are bits of a uint64");
}  // namespace

upstream_exchange::upstream_exchange(std::shared_ptr<upstream_pool> pool,
                                     const upstream_config& upstream)
    : pool_(std::move(pool)), upstream_(upstream), state_(pool_->state(upstream)) {}

upstream_exchange::~upstream_exchange() {
  if (waiter_) {
    // Destroyed while queued (shutdown): leave the queue; a slot granted meanwhile goes on.
    std::erase(state_.waiting, &*waiter_);
    if (waiter_->granted) holds_slot_ = true;
  }
  end_attempt();
  release_slot();
}

void upstream_exchange::abort() {
  aborted_ = true;
  if (waiter_) waiter_->timer.cancel();
  if (call_) call_->abort();
}

std::string_view upstream_exchange::endpoint_name() const {
  return call_ ? std::string_view(upstream_.endpoints[call_->endpoint()].name) : std::string_view{};
}

net::awaitable<std::optional<upstream_failure>> upstream_exchange::acquire_slot() {
  const std::uint64_t cap = upstream_.concurrent_requests_max;
  if (cap == 0) co_return std::nullopt;
  if (state_.active < cap) {
    ++state_.active;
    holds_slot_ = true;
    co_return std::nullopt;
  }
  if (state_.waiting.size() >= upstream_.queue_requests_max) {
    state_.group->count_queue_rejection(false);
    co_return upstream_failure{upstream_failure::kind::overloaded,
                               "is at its concurrency limit (" + std::to_string(cap) +
                                   " requests per thread) and its queue is full",
                               {}};
  }
  waiter_.emplace(pool_->executor());
  state_.waiting.push_back(&*waiter_);
  waiter_->timer.expires_after(std::chrono::milliseconds(upstream_.queue_timeout_ms));
  co_await waiter_->timer.async_wait(use_tuple);
  const bool granted = waiter_->granted;
  if (!granted) std::erase(state_.waiting, &*waiter_);
  waiter_.reset();
  holds_slot_ = granted;  // a granted slot is this request's (released at the end) even if aborted
  if (aborted_) co_return upstream_failure{upstream_failure::kind::closed, "cancelled", {}};
  if (granted) co_return std::nullopt;
  state_.group->count_queue_rejection(true);
  co_return upstream_failure{upstream_failure::kind::overloaded,
                             "is at its concurrency limit: no slot came free within " +
                                 std::to_string(upstream_.queue_timeout_ms) + " ms",
                             {}};
}

void upstream_exchange::release_slot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  if (!state_.waiting.empty()) {
    // The slot passes straight to the oldest waiter (first come, first served).
    upstream_pool::slot_waiter* next = state_.waiting.front();
    state_.waiting.pop_front();
    next->granted = true;
    next->timer.cancel();
    return;
  }
  --state_.active;
}

std::size_t upstream_exchange::pick(mono_ms now) const {
  const std::size_t n = upstream_.endpoints.size();
  std::array<p2c_candidate, limits::upstream_endpoints_max> candidates;
  std::array<std::size_t, limits::upstream_endpoints_max> index;
  std::size_t count = 0;
  for (int pass = 0; pass < 2 && count == 0; ++pass) {
    // First pass: healthy endpoints. Second (first attempt only): any, none being healthy.
    if (pass == 1 && attempts_ > 0) break;
    for (std::size_t i = 0; i < n; ++i) {
      if ((tried_ >> i) & 1) continue;
      if (pass == 0 && !state_.group->endpoint(i).health.available(now)) continue;
      candidates[count] = {upstream_.endpoints[i].weight, state_.endpoints[i].in_flight};
      index[count++] = i;
    }
  }
  if (count == 0) return none;
  if (count == 1) return index[0];
  return index[choose_p2c(std::span(candidates.data(), count), pool_->random(), pool_->random())];
}

bool upstream_exchange::may_retry(std::string_view reason, mono_ms now) {
  if (aborted_ || attempts_ >= static_cast<int>(upstream_.attempts_max)) return false;
  if (pick(now) == none) return false;
  if (!state_.budget.try_retry(now)) {
    state_.group->count_budget_exhausted();
    return false;
  }
  state_.group->count_retry(reason);
  return true;
}

void upstream_exchange::begin_attempt(std::size_t ep) {
  end_attempt();
  call_.emplace(pool_, upstream_, ep);
  ++attempts_;
  tried_ |= std::uint64_t{1} << ep;
  in_flight_at_ = ep;
  ++state_.endpoints[ep].in_flight;
  auto& shared = state_.group->endpoint(ep);
  shared.in_flight->add(1);
  shared.attempts->inc();
}

void upstream_exchange::end_attempt() {
  if (!in_flight_at_) return;
  --state_.endpoints[*in_flight_at_].in_flight;
  state_.group->endpoint(*in_flight_at_).in_flight->sub(1);
  in_flight_at_.reset();
}

std::int64_t upstream_exchange::retry_after_ms() const {
  // The attempt's call is alive here: its parser holds the head.
  const std::string_view v = call_->retry_after();
  std::int64_t s = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || s < 0) return -1;
  return s > 86'400 ? 86'400'000 : s * 1000;
}

net::awaitable<std::optional<upstream_failure>> upstream_exchange::start(
    std::string_view path, std::string body, std::string_view request_id,
    std::string_view traceparent) {
  body_ = std::move(body);
  if (auto f = co_await acquire_slot()) co_return f;
  state_.budget.record_request(mono_now_ms());
  for (;;) {
    mono_ms now = mono_now_ms();
    const std::size_t ep = pick(now);
    begin_attempt(ep);
    auto failure = co_await call_->start(path, body_, request_id, traceparent);
    now = mono_now_ms();
    if (failure) {
      if (aborted_) co_return failure;
      state_.group->record_failure(ep, now);
      if (failure->retryable && may_retry(failure->label(), now)) continue;
      co_return failure;
    }
    const unsigned status = call_->status();
    if (status >= 500) {
      state_.group->record_failure(ep, now);
    } else if (status != 429) {
      state_.group->record_success(ep);  // a 429 says nothing of the endpoint's health
    }
    bool retry = status == 502 || status == 503;
    if (status == 429 && upstream_.retry_after_max_ms > 0) {
      const std::int64_t wait = retry_after_ms();
      retry = wait >= 0 && wait <= static_cast<std::int64_t>(upstream_.retry_after_max_ms);
    }
    if (retry && may_retry("status_" + std::to_string(status), now)) {
      call_->abort();  // its body is not read: the connection is not reused
      continue;
    }
    co_return std::nullopt;
  }
}

}  // namespace tollgate::backends
