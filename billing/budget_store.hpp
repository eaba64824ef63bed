// The budget store: budgets (create, read, list, update), their threshold alerts (recorded,
// claimed for webhook delivery, finished) and the reads enforcement and reconciliation need
// (a tenant's active budgets, what the ledger holds against a budget), in PostgreSQL. Every
// method is a coroutine on the billing executor using the shared connection pool; objects come
// back as the JSON the admin API shows (reads with the budget as enforcement sees it, so that
// the admin API can add what its counters hold), each change written with its audit_log row.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/pg.hpp"
#include "billing/store_common.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::billing {

// The budget rows are the budget module's (metering/budgets/budget_rows.hpp); this store reads
// and writes them.
using metering::alert_delivery;
using metering::budget_alert_spec;
using metering::budget_info;
using metering::ledger_budget_query;

class budget_store {
 public:
  explicit budget_store(pg::pool& pool) : pool_(pool) {}

  struct budget_spec {
    std::string tenant_id;
    metering::budget_scope scope = metering::budget_scope::tenant;
    std::string scope_id;  // the project or key id ("" for the tenant)
    metering::budget_metric metric = metering::budget_metric::tokens;  // not credit
    metering::window_spec window = metering::budget_window::day;
    std::int64_t limit = 0;
    std::string mode = "hard";
    std::vector<int> alert_thresholds;  // percent of the limit
    std::string alert_webhook_url;      // "" = alerts are recorded only
    std::optional<std::vector<std::string>> models;  // nullopt: every model
    // Percent of the limit the billing period's run-rate forecast may reach before an alert
    // (a tenant's monthly spend budget only: the database refuses others).
    std::vector<int> forecast_alert_thresholds;
  };
  boost::asio::awaitable<store_result> create_budget(budget_spec spec, std::string actor);

  // A budget as the admin API shows it, with its tenant and the budget as enforcement reads
  // it at the time of reading (its window instance in the tenant's time zone).
  struct budget_view {
    std::string json;
    std::string tenant_id;
    budget_info info;
  };
  struct budget_page {
    std::vector<budget_view> data;  // in id order
    bool has_more = false;
  };
  boost::asio::awaitable<basic_result<budget_view, store_error>> get_budget(std::string id,
                                                                            std::int64_t now_ms);
  // One page of budgets in id order ("" tenant: every tenant's).
  boost::asio::awaitable<basic_result<budget_page, store_error>> list_budgets(std::string tenant_id,
                                                                              page_request page,
                                                                              std::int64_t now_ms);
  struct budget_update {
    std::optional<std::int64_t> limit;
    std::optional<std::string> mode;
    std::optional<std::string> status;
    std::optional<std::vector<int>> alert_thresholds;
    bool set_webhook = false;
    std::optional<std::string> alert_webhook_url;  // with set_webhook: nullopt removes it
    bool set_models = false;
    std::optional<std::vector<std::string>> models;  // with set_models: nullopt = every model
    std::optional<std::vector<int>> forecast_alert_thresholds;
  };
  // The updated budget as the admin API shows it, and its tenant (whose budgets every gateway
  // then reloads).
  struct updated_budget {
    std::string json;
    std::string tenant_id;
  };
  boost::asio::awaitable<basic_result<updated_budget, store_error>> update_budget(
      std::string id, budget_update update, std::string actor);
  // A budget's alerts, newest first (at most 100).
  boost::asio::awaitable<store_result> list_budget_alerts(std::string budget_id);

  // Records a threshold crossing once (a repeat is ignored): pending delivery when the budget
  // has a webhook, else just recorded. Returns whether a delivery is now pending.
  boost::asio::awaitable<pg::db_result<bool>> record_budget_alert(budget_alert_spec alert);
  // The active budgets with forecast alert thresholds (tenant scope, spend, month).
  struct forecast_budget {
    std::string tenant_id;
    std::string budget_id;
    std::int64_t limit = 0;
    std::vector<int> thresholds;
  };
  boost::asio::awaitable<pg::db_result<std::vector<forecast_budget>>> forecast_budgets();
  // Records that the forecast of the period starting at `period_start_s` reached `threshold`
  // percent of the budget's limit (once per budget, period and threshold; a repeat is
  // ignored). Returns whether a delivery is now pending.
  boost::asio::awaitable<pg::db_result<bool>> record_forecast_alert(forecast_budget budget,
                                                                    std::int64_t period_start_s,
                                                                    int threshold,
                                                                    std::int64_t forecast_micros,
                                                                    std::int64_t cost_micros);
  // Claims up to `limit` alerts due for delivery (leased for `lease_ms`, so that another
  // gateway does not send them at the same time).
  boost::asio::awaitable<pg::db_result<std::vector<alert_delivery>>> claim_alerts(
      int limit, std::int64_t lease_ms);
  // After an attempt: delivered, or failed for good, or due again after `retry_in_ms`.
  boost::asio::awaitable<pg::db_result<bool>> finish_alert(std::string id, std::string status,
                                                          std::string error,
                                                          std::int64_t retry_in_ms);
  // The tenant's active budgets at `now_ms`, for enforcement.
  boost::asio::awaitable<pg::db_result<std::vector<budget_info>>> active_budgets(
      std::string tenant_id, std::int64_t now_ms);

  // Billed tokens, requests that reached the upstream (not refused by the gateway before
  // forwarding), or spend priced per request at the estimate prices, rounded up as the
  // budget engine does; of the query's models only, when it names them.
  boost::asio::awaitable<pg::db_result<std::vector<metering::subject_usage>>> ledger_usage(
      ledger_budget_query q);

 private:
  // A credit_only tenant's coverage pools at `now_ms` (docs/CREDITS.md), on `conn`.
  boost::asio::awaitable<pg::db_result<std::vector<metering::cover_pool>>> cover_pools(
      pg::connection& conn, std::string tenant_id, std::int64_t now_ms);
  boost::asio::awaitable<basic_result<std::vector<budget_view>, store_error>> budget_views(
      std::string where, std::vector<pg::param> params);

  pg::pool& pool_;
};

}  // namespace tollgate::billing
