// The x-tollgate-cost-micros response header: what a request's usage costs under its tenant's
// plan, rated with the same formula as the ledger (billing/rating) at the accumulator positions
// this gateway knows: the ledger's, read at most once a second per tenant, or this gateway's
// own where they are ahead (they count what it quoted and the ledger has not stored yet).
// Provisional: the ledger writer rates the stored event on the accumulators in PostgreSQL, and that
// is what is billed; the two differ only when requests cross a tier bound in a different order than
// the ledger stores them (several gateways, concurrent requests), and for volume tiers, which the
// invoice trues up.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "billing/rating.hpp"
#include "core/clock.hpp"
#include "gateway/billing_context.hpp"
#include "metering/usage.hpp"

namespace tollgate::gateway {

class cost_quoter {
 public:
  cost_quoter(const billing_context& billing, const clock_source& clock);

  // The cost of `rec` in micro-units; nullopt when there is nothing to quote (no tenant, no
  // plan, no price for the model, no usage) or the database cannot say (the header is then
  // left out). Only the first quote of a tenant (or of a new month) waits for PostgreSQL; a
  // known state older than a second is quoted from while a refresh runs on the billing thread.
  boost::asio::awaitable<std::optional<std::int64_t>> quote(const metering::usage_record& rec);

 private:
  struct tenant_state {
    std::chrono::steady_clock::time_point fetched{};
    std::string period;
    std::shared_ptr<const billing::rating_plan> plan;  // null: the tenant has no plan
    billing::accumulator_map accumulators;
    std::vector<billing::token_bundle> bundles;  // what they have left, as far as known
    bool refreshing = false;
  };
  // Shared with refreshes running in the background, which may outlive the quoter.
  struct shared_state {
    std::mutex mu;
    std::unordered_map<std::string, tenant_state> tenants;
    // After a failed read, the database is not asked again for a while.
    std::chrono::steady_clock::time_point quiet_until{};
  };

  // Reads the tenant's plan and accumulators (on the billing executor) into `state`.
  static boost::asio::awaitable<void> refresh(std::shared_ptr<shared_state> state,
                                              billing::plan_store* plans,
                                              const clock_source* clock, std::string tenant_id,
                                              std::string period);

  const billing_context& billing_;
  const clock_source& clock_;
  std::shared_ptr<shared_state> state_ = std::make_shared<shared_state>();
};

}  // namespace tollgate::gateway
