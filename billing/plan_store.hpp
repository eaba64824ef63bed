// The plan store: price books and their versions, tenants' plans, and the reads that price a
// period from them (a tenant's plan for a period and the ledger's totals, the cost preview, the
// rating state behind the cost header), in PostgreSQL (docs/PRICING.md). Every method is a
// coroutine on the billing executor using the shared connection pool; objects come back as the
// JSON the admin API shows, each change written with its audit_log row.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/period_pricing.hpp"
#include "billing/pg.hpp"
#include "billing/price_book.hpp"
#include "billing/rating.hpp"
#include "billing/token_bundles.hpp"
#include "billing/rating_plans.hpp"
#include "billing/store_common.hpp"

namespace tollgate::billing {

class plan_store {
 public:
  explicit plan_store(pg::pool& pool) : pool_(pool) {}

  struct price_book_spec {
    std::string name;
    std::string currency;     // ISO 4217, three capitals
    std::string tier_mode;    // graduated, volume
    std::string tier_scope;   // model, all_models
    std::int64_t effective_at_s = 0;  // of version 1
    std::string prices_json;  // canonical (billing/price_book), already checked
  };
  boost::asio::awaitable<store_result> create_price_book(price_book_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_price_book(std::string id);
  boost::asio::awaitable<store_result> list_price_books(page_request page);
  // The book's tier mode and scope, to check a new version's prices against; 404 if there is
  // no such book.
  struct price_book_kind_info {
    tier_mode mode = tier_mode::graduated;
    tier_scope scope = tier_scope::model;
  };
  boost::asio::awaitable<basic_result<price_book_kind_info, store_error>> price_book_kind(
      std::string id);
  // Version n+1, effective after the latest version's effective_at (else 400).
  boost::asio::awaitable<store_result> add_price_book_version(std::string book_id,
                                                              std::int64_t effective_at_s,
                                                              std::string prices_json,
                                                              std::string actor);
  struct plan_spec {
    std::string tenant_id;
    std::string book_id;
    std::optional<int> batch_discount_bp;        // unset: 5000 for a new plan, else unchanged
    std::optional<std::string> settlement_mode;  // credit_then_invoice, credit_only
    // Plan terms given (canonical JSON object of the members given, billing/plan_terms):
    // merged over the latest plan's terms; "{}" keeps them.
    std::string terms_json = "{}";
  };
  boost::asio::awaitable<store_result> set_tenant_plan(plan_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_tenant_plan(std::string tenant_id);
  // The tenant's plan for a period ("YYYY-MM") and its price book's versions (no totals yet;
  // 404 without a plan). See sql/012_plan_periods.sql for which plan prices a period.
  boost::asio::awaitable<basic_result<period_usage, store_error>> load_plan(
      std::string tenant_id, std::string period);
  // `plan` with the ledger's totals of a period ("YYYY-MM", UTC).
  boost::asio::awaitable<basic_result<period_usage, store_error>> load_period_totals(
      period_usage plan, std::string period);
  // The tenant's cost for the period so far (billing/period_pricing), and its forecast when
  // `now_s` (unix seconds) lies within the period; `bundles`: what its token bundles paid in
  // the period (credit_store::bundle_lines).
  boost::asio::awaitable<store_result> cost_preview(std::string tenant_id, std::string period,
                                                    std::int64_t now_s,
                                                    std::vector<fee_line> bundles);
  // The current billing period's cost so far and its run-rate forecast (the cost preview's,
  // docs/PRICING.md) at `now_s`: for forecast alerts. 404 for a tenant without a plan.
  struct period_forecast {
    std::int64_t period_start_s = 0;
    std::int64_t cost_micros = 0;
    std::int64_t forecast_micros = 0;
  };
  boost::asio::awaitable<basic_result<period_forecast, store_error>> forecast_period(
      std::string tenant_id, std::int64_t now_s);
  boost::asio::awaitable<pg::db_result<std::vector<std::string>>> tenants_with_plans();

  // Seats: a tenant's seat count from a UTC day on (`day`: "YYYY-MM-DD"), answered with the
  // seats as of `today` and their history, as get_tenant_seats (404: no such tenant).
  boost::asio::awaitable<store_result> set_tenant_seats(std::string tenant_id, std::string day,
                                                        std::int64_t seats, std::string today,
                                                        std::string actor);
  boost::asio::awaitable<store_result> get_tenant_seats(std::string tenant_id, std::string day);
  // The seat-days of a period ("YYYY-MM"; billing/plan_terms seat_days).
  boost::asio::awaitable<basic_result<std::int64_t, store_error>> period_seat_days(
      std::string tenant_id, std::string period);

  // The tenant's plan as rating sees it (nullopt: no plan) and its accumulators of `period`,
  // for quoting a response's cost (gateway/cost_quote).
  struct rating_state {
    std::optional<rating_plan> plan;
    accumulator_map accumulators;
    std::vector<token_bundle> bundles;  // with tokens left, in drawdown order
  };
  boost::asio::awaitable<pg::db_result<rating_state>> load_rating_state(std::string tenant_id,
                                                                       std::string period);

 private:
  pg::pool& pool_;
  rating_plan_loader rating_plans_{nullptr};  // for load_rating_state
};

}  // namespace tollgate::billing
