// The cost header's quotes: see cost_quote.hpp.
#include "gateway/cost_quote.hpp"

#include "billing/period_pricing.hpp"

namespace tollgate::gateway {

namespace {

constexpr auto fresh_for = std::chrono::seconds(1);
constexpr auto quiet_after_failure = std::chrono::seconds(5);

}  // namespace

cost_quoter::cost_quoter(const billing_context& billing, const clock_source& clock)
    : billing_(billing), clock_(clock) {}

boost::asio::awaitable<std::optional<std::int64_t>> cost_quoter::quote(
    const metering::usage_record& rec) {
  if (rec.tenant_id.empty() || rec.status != 200 || billing_.store == nullptr ||
      (!rec.usage_reported && !rec.estimated)) {
    co_return std::nullopt;
  }
  billing::rating_event e;
  e.tenant_id = rec.tenant_id;
  e.request_id = rec.request_id;
  e.occurred_at_s = rec.occurred_at_ms / 1000;
  e.model = rec.model;
  e.batch = rec.batch;
  e.cached_input = std::min(rec.cached_tokens, rec.prompt_tokens);
  e.input = rec.prompt_tokens - e.cached_input;
  e.output = rec.completion_tokens;
  const std::string period = billing::period_of(e.occurred_at_s);
  const auto now = clock_.mono_now();

  bool fetch = false;
  {
    std::lock_guard lock(mu_);
    auto& t = tenants_[rec.tenant_id];
    const bool known = t.fetched != std::chrono::steady_clock::time_point{} && t.period == period;
    const bool stale = !known || now - t.fetched >= fresh_for;
    if (stale && !t.refreshing && now >= quiet_until_) {
      t.refreshing = true;
      fetch = true;
    }
    if (known && !fetch) {
      // Fresh, or stale with a refresh under way (or the database away): quote from what is
      // known.
      if (!t.plan) co_return std::nullopt;
      const auto rated = billing::rate_event(*t.plan, e, t.accumulators);
      co_return rated ? std::optional<std::int64_t>(rated->cost_micros) : std::nullopt;
    }
    if (!fetch) co_return std::nullopt;  // nothing known and the database away
  }

  auto op = billing_.store->load_rating_state(rec.tenant_id, period);
  auto loaded = co_await on_billing(billing_, std::move(op));
  std::lock_guard lock(mu_);
  auto& t = tenants_[rec.tenant_id];
  t.refreshing = false;
  if (!loaded) {
    quiet_until_ = clock_.mono_now() + quiet_after_failure;
    co_return std::nullopt;
  }
  t.fetched = clock_.mono_now();
  if (t.period != period) t.accumulators.clear();
  t.period = period;
  t.plan = loaded->plan ? std::make_shared<const billing::rating_plan>(std::move(*loaded->plan))
                        : nullptr;
  // The ledger's positions, unless this gateway's are ahead: those count what it quoted and
  // the ledger has not stored yet.
  for (auto& [key, state] : loaded->accumulators) {
    auto& mine = t.accumulators[key];
    if (state.position > mine.position) mine = state;
  }
  if (!t.plan) co_return std::nullopt;
  const auto rated = billing::rate_event(*t.plan, e, t.accumulators);
  co_return rated ? std::optional<std::int64_t>(rated->cost_micros) : std::nullopt;
}

}  // namespace tollgate::gateway
