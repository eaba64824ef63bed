// The cost header's quotes: see cost_quote.hpp.
#include "gateway/cost_quote.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>

#include "billing/period_pricing.hpp"
#include "billing/plan_store.hpp"

namespace tollgate::gateway {

namespace {

constexpr auto fresh_for = std::chrono::seconds(1);
constexpr auto quiet_after_failure = std::chrono::seconds(5);

}  // namespace

cost_quoter::cost_quoter(const billing_context& billing, const clock_source& clock)
    : billing_(billing), clock_(clock) {}

boost::asio::awaitable<void> cost_quoter::refresh(std::shared_ptr<shared_state> state,
                                                  billing::plan_store* plans,
                                                  const clock_source* clock, std::string tenant_id,
                                                  std::string period) {
  auto loaded = co_await plans->load_rating_state(tenant_id, period);
  std::lock_guard lock(state->mu);
  auto& t = state->tenants[tenant_id];
  t.refreshing = false;
  if (!loaded) {
    state->quiet_until = clock->mono_now() + quiet_after_failure;
    co_return;
  }
  t.fetched = clock->mono_now();
  if (t.period != period) t.accumulators.clear();
  t.period = period;
  t.plan = loaded->plan ? std::make_shared<const billing::rating_plan>(std::move(*loaded->plan))
                        : nullptr;
  // The ledger's positions, unless this gateway's are ahead: those count what it quoted and
  // the ledger has not stored yet.
  for (auto& [key, stored] : loaded->accumulators) {
    auto& mine = t.accumulators[key];
    if (stored.position > mine.position) mine = stored;
  }
  // The bundles as the ledger has them, unless this gateway drew more of one in its quotes.
  for (auto& b : loaded->bundles) {
    for (const auto& mine : t.bundles) {
      if (mine.grant_id == b.grant_id) b.tokens_left = std::min(b.tokens_left, mine.tokens_left);
    }
  }
  t.bundles = std::move(loaded->bundles);
}

boost::asio::awaitable<std::optional<std::int64_t>> cost_quoter::quote(
    const metering::usage_record& rec) {
  if (rec.tenant_id.empty() || rec.status != 200 || billing_.plans == nullptr ||
      (!rec.usage_reported && !rec.estimated)) {
    co_return std::nullopt;
  }
  const billing::rating_event e = billing::rating_event::from(rec);
  const std::string period = billing::period_of(e.occurred_at_s);
  // Rates `e` on what is known of its tenant (the lock held): what its token bundles pay for
  // (at their locked prices) and the rest at the price book, as the ledger writer will.
  auto rate_known = [&e, &rec](tenant_state& t) -> std::optional<std::int64_t> {
    if (!t.plan) return std::nullopt;
    if (t.bundles.empty()) {
      const auto rated = billing::rate_event(*t.plan, e, t.accumulators);
      return rated ? std::optional<std::int64_t>(rated->cost_micros) : std::nullopt;
    }
    billing::rating_event rest = e;
    rest.project_id = rec.project_id;
    // A credit_only hold's cover bounds what the pooled bundles pay, as in the ledger.
    const auto cover = billing::pooled_cover_of(!rec.credit_counters.empty(),
                                                rec.settled_credit_micros, rec.cover_tokens);
    const auto draws = billing::cover_with_bundles(*t.plan, rest, t.accumulators, t.bundles, cover);
    const auto rated = billing::rate_event(*t.plan, rest, t.accumulators);
    if (!rated) return std::nullopt;
    std::int64_t cost = rated->cost_micros;
    for (const auto& d : draws) cost += d.amount_micros;
    return cost;
  };

  bool wait_for_read = false;
  {
    std::lock_guard lock(state_->mu);
    auto& t = state_->tenants[rec.tenant_id];
    const auto now = clock_.mono_now();
    const bool known = t.fetched != std::chrono::steady_clock::time_point{} && t.period == period;
    const bool stale = !known || now - t.fetched >= fresh_for;
    if (stale && !t.refreshing && now >= state_->quiet_until) {
      t.refreshing = true;
      if (known) {
        // Quote from what is known; the refresh runs on the billing thread meanwhile.
        boost::asio::co_spawn(billing_.executor,
                              refresh(state_, billing_.plans, &clock_, rec.tenant_id, period),
                              boost::asio::detached);
      } else {
        wait_for_read = true;
      }
    }
    if (known) co_return rate_known(t);
    if (!wait_for_read) co_return std::nullopt;  // nothing known and the database away
  }
  // Named, not made inside the co_await: GCC 12 mishandles temporaries there.
  auto read = refresh(state_, billing_.plans, &clock_, rec.tenant_id, period);
  auto read_there =
      boost::asio::co_spawn(billing_.executor, std::move(read), boost::asio::use_awaitable);
  co_await std::move(read_there);
  std::lock_guard lock(state_->mu);
  co_return rate_known(state_->tenants[rec.tenant_id]);
}

}  // namespace tollgate::gateway
