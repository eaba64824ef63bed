// The account store: tenants, projects, API keys and the audit log in PostgreSQL, plus the
// usage queries behind the finance API. Every method is a coroutine on the billing executor
// using the shared connection pool. Objects come back as the JSON the admin API shows
// (rendered by PostgreSQL's json_build_object, so there is one definition of each shape);
// every change and its audit_log row are written by one statement.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/credits.hpp"
#include "billing/period_pricing.hpp"
#include "billing/price_book.hpp"
#include "billing/pg.hpp"
#include "billing/rating.hpp"
#include "billing/rating_plans.hpp"

namespace tollgate::billing {

// ---- API keys --------------------------------------------------------------------------------

// "tg-" followed by 43 base62 characters encoding 32 random bytes (OpenSSL RAND_bytes).
std::string new_api_key();
// Whether `key` has the shape of a Tollgate key (checked before any lookup).
bool is_well_formed_api_key(std::string_view key);
// SHA-256 of the key, the only form in which it is stored.
std::string sha256_bytes(std::string_view data);
// Ids are a type prefix, 10 base62 characters of the creation time in ms (so they sort in
// creation order) and 8 random ones: "ten_0hN3x2Qp1aZ4kq9WvB".
std::string new_object_id(std::string_view prefix);
// A webhook signing secret: "whsec_" followed by 43 base62 characters (32 random bytes).
std::string new_webhook_secret();

// What authentication needs to know about a key.
struct key_info {
  std::string key_id;
  std::string tenant_id;
  std::string project_id;                     // "" if the key is tenant-wide
  bool active = false;                        // key active and tenant active
  std::string inactive_reason;                // "revoked", "tenant_disabled", "project_disabled"
  std::int64_t expires_at_ms = 0;             // 0 = never
  std::optional<std::vector<std::string>> allowed_models;  // nullopt = all
};

// ---- admin inputs ----------------------------------------------------------------------------

struct page_request {
  int limit = 20;     // 1..100
  std::string after;  // id cursor; "" = from the start
};

// The outcome of an admin operation: the JSON text, or an error with an HTTP status.
struct store_error {
  unsigned status = 500;  // 400, 404, 409, 503
  std::string message;
  std::string code;
};
using store_result = basic_result<std::string, store_error>;
// A database failure as the admin and API answer it: 503 when the database is away, 409 for a
// duplicate, 404 for a missing reference, 400 for a refused value, else 500.
store_error store_error_from(const pg::db_error& e);

// A usage query (finance API and GET /v1/usage).
struct usage_query {
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::int64_t bucket_s = 86400;
  std::vector<std::string> group_by;  // of tenant_id, project_id, api_key_id, model, batch
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::optional<bool> batch;
};

struct usage_row {
  std::int64_t bucket_start_s = 0;
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::optional<bool> batch;
  std::int64_t input_tokens = 0, input_cached_tokens = 0, output_tokens = 0,
               output_reasoning_tokens = 0, requests = 0;
};

struct events_query {
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::string after;  // cursor from the previous page
  int limit = 100;    // 1..1000
};

// A budget as enforcement needs it (active budgets only).
struct budget_info {
  std::string id;
  std::string scope;     // tenant, project, key
  std::string scope_id;  // "" for the tenant
  std::string metric;    // tokens, requests, spend (micro-units)
  std::string window;    // minute, hour, day, month, lifetime
  std::int64_t limit = 0;
  bool hard = true;
  std::vector<int> alert_thresholds;  // percent of the limit
  // Day and month windows of a tenant outside UTC, at the time of reading (ms since the epoch;
  // all 0 otherwise): the current window instance [start, end) and the end of the next one.
  std::int64_t zone_start_ms = 0;
  std::int64_t zone_end_ms = 0;
  std::int64_t zone_next_end_ms = 0;
  // Spend and credit budgets of a tenant with a plan: the worst-case rates of its price book
  // version in force, per model (empty: no plan; spend is then priced with the models'
  // estimate prices).
  std::vector<credit_rate> plan_rates;
  // The credit of a credit_only plan, mirrored as a budget (metric "credit", window lifetime,
  // id "credit:<tenant>"): `limit` is the credit usable so far (grants for every model in
  // force, less what expired unused), `credit_used` what the ledger has drawn of it.
  std::int64_t credit_used = 0;
};

// A threshold crossing to record (and deliver when the budget has a webhook).
struct budget_alert_spec {
  std::string tenant_id;
  std::string budget_id;
  std::int64_t window_start_ms = 0;
  int threshold = 0;  // percent
  std::int64_t limit = 0;
  std::int64_t used = 0;
};

// A recorded alert claimed for delivery: the body to POST and the secret to sign it with.
struct alert_delivery {
  std::string id;
  std::string url;
  std::string secret;
  std::string payload;
  int attempts = 0;  // including this one
};

// What the ledger holds against one budget in a window: for `tollctl budgets reconcile`.
struct ledger_budget_query {
  std::string tenant_id;
  std::string scope;     // tenant, project, key
  std::string scope_id;  // the project or key id ("" for the tenant)
  std::string metric;    // tokens, requests, spend
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;  // exclusive
  struct model_price {
    std::string model;
    std::uint64_t input = 0;   // micro-units per million prompt tokens
    std::uint64_t output = 0;  // micro-units per million completion tokens
  };
  std::vector<model_price> prices;  // spend only
};

class account_store {
 public:
  explicit account_store(pg::pool& pool) : pool_(pool) {}

  boost::asio::awaitable<pg::db_result<std::optional<key_info>>> find_key(std::string key_sha256);

  // `time_zone`: an IANA name for the tenant's calendar budget windows (nullopt: UTC).
  boost::asio::awaitable<store_result> create_tenant(std::string name,
                                                     std::optional<std::string> time_zone,
                                                     std::string actor);
  boost::asio::awaitable<store_result> get_tenant(std::string id);
  boost::asio::awaitable<store_result> list_tenants(page_request page);
  boost::asio::awaitable<store_result> update_tenant(std::string id, std::optional<std::string> name,
                                                     std::optional<std::string> status,
                                                     std::optional<std::string> time_zone,
                                                     std::string actor);

  boost::asio::awaitable<store_result> create_project(std::string tenant_id, std::string name,
                                                      std::string actor);
  boost::asio::awaitable<store_result> get_project(std::string id);
  boost::asio::awaitable<store_result> list_projects(std::string tenant_id, page_request page);
  boost::asio::awaitable<store_result> update_project(std::string id,
                                                      std::optional<std::string> name,
                                                      std::optional<std::string> status,
                                                      std::string actor);

  struct key_spec {
    std::string tenant_id;
    std::string project_id;  // "" = tenant-wide
    std::string name;
    std::optional<std::int64_t> expires_at_s;
    std::optional<std::vector<std::string>> allowed_models;
  };
  // The returned object carries the secret in "key": the only time it is ever shown.
  boost::asio::awaitable<store_result> create_key(key_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_key(std::string id);
  boost::asio::awaitable<store_result> list_keys(std::string tenant_id, std::string project_id,
                                                 page_request page);
  struct key_update {
    std::optional<std::string> name;
    bool set_expires = false;
    std::optional<std::int64_t> expires_at_s;  // with set_expires: nullopt clears it
    bool set_models = false;
    std::optional<std::vector<std::string>> allowed_models;
  };
  boost::asio::awaitable<store_result> update_key(std::string id, key_update update,
                                                  std::string actor);
  boost::asio::awaitable<store_result> revoke_key(std::string id, std::string actor);
  // A new key with the same tenant, project, name and allowlist; the old one stops working
  // after `grace_s` seconds (0: at once).
  boost::asio::awaitable<store_result> rotate_key(std::string id, std::int64_t grace_s,
                                                  std::string actor);

  boost::asio::awaitable<store_result> list_audit(std::string tenant_id, page_request page);

  struct budget_spec {
    std::string tenant_id;
    std::string scope;     // tenant, project, key
    std::string scope_id;  // the project or key id ("" for the tenant)
    std::string metric;    // tokens, requests, spend (micro-units)
    std::string window;    // minute, hour, day, month, lifetime
    std::int64_t limit = 0;
    std::string mode = "hard";
    std::vector<int> alert_thresholds;  // percent of the limit
    std::string alert_webhook_url;      // "" = alerts are recorded only
  };
  boost::asio::awaitable<store_result> create_budget(budget_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_budget(std::string id);
  boost::asio::awaitable<store_result> list_budgets(std::string tenant_id, page_request page);
  struct budget_update {
    std::optional<std::int64_t> limit;
    std::optional<std::string> mode;
    std::optional<std::string> status;
    std::optional<std::vector<int>> alert_thresholds;
    bool set_webhook = false;
    std::optional<std::string> alert_webhook_url;  // with set_webhook: nullopt removes it
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
  // budget engine does.
  boost::asio::awaitable<pg::db_result<std::int64_t>> ledger_usage(ledger_budget_query q);

  // ---- price books and plans (docs/PRICING.md) ----
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
  // The tenant's cost for the period so far (billing/period_pricing).
  boost::asio::awaitable<store_result> cost_preview(std::string tenant_id, std::string period);

  // ---- invoices ----
  // Writes the period's draft invoice from the ledger (again: same id, same content for the
  // same ledger); a finalized invoice is returned unchanged.
  boost::asio::awaitable<store_result> draft_invoice(std::string tenant_id, std::string period);
  // The period's finalized invoice (404 if it has none).
  boost::asio::awaitable<store_result> finalized_invoice(std::string tenant_id,
                                                         std::string period);
  // Finalizes the draft: numbered (TG-000001, ...), immutable from then on. An invoice
  // finalized before is returned as it is.
  boost::asio::awaitable<store_result> finalize_invoice(std::string tenant_id,
                                                        std::string period, std::string actor);
  boost::asio::awaitable<pg::db_result<std::vector<std::string>>> tenants_with_plans();
  // Drafts the period's invoice of one tenant ("" = every tenant with a plan), and with
  // `finalize` finalizes the drafts, which is refused before the period's end + `grace_s`.
  boost::asio::awaitable<store_result> run_invoices(std::string period, std::string tenant_id,
                                                    bool finalize, std::int64_t now_s,
                                                    std::int64_t grace_s, std::string actor);
  boost::asio::awaitable<store_result> get_invoice(std::string id);

  // The tenant's plan as rating sees it (nullopt: no plan) and its accumulators of `period`,
  // for quoting a response's cost (gateway/cost_quote).
  struct rating_state {
    std::optional<rating_plan> plan;
    accumulator_map accumulators;
  };
  boost::asio::awaitable<pg::db_result<rating_state>> load_rating_state(std::string tenant_id,
                                                                       std::string period);

  // ---- credits (sql/010_credits.sql, docs/CREDITS.md) ----
  struct credit_grant_spec {
    std::string tenant_id;
    std::string kind;  // purchased | promotional
    std::int64_t amount_micros = 0;
    std::optional<std::int64_t> price_paid_micros;  // purchased only
    std::int64_t effective_at_s = 0;
    std::optional<std::int64_t> expires_at_s;
    int priority = 0;
    std::optional<std::vector<std::string>> models;  // none: every model
    std::string memo;
    std::string id;  // optional, for idempotent retries (cg_ + letters/digits); "" = new
  };
  // Grants credit: the grant, its account and the funding transfer, in one transaction. The
  // same id given again returns the grant made the first time if it is the same grant (409
  // otherwise).
  boost::asio::awaitable<store_result> grant_credit(credit_grant_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_credit_grant(std::string id);
  // A tenant's grants with their balances, in drawdown order, and the totals.
  boost::asio::awaitable<store_result> credit_balance(std::string tenant_id);
  // A tenant's credit transfers with their entries, newest first.
  boost::asio::awaitable<store_result> credit_transfers(std::string tenant_id, page_request page);
  // Moves the balances of grants expired by `at_s` to breakage; {"expired": n}.
  boost::asio::awaitable<store_result> expire_credits(std::int64_t at_s);
  // The credit an invoice of `period` applies, in drawdown order: the period's drawdowns and
  // true-ups per grant, then credit drawn by late usage of earlier finalized periods after
  // they were finalized (less what other finalized invoices have applied of it).
  struct applied_credit {
    std::string period, grant_id, kind;
    std::int64_t amount_micros = 0;
  };
  boost::asio::awaitable<basic_result<std::vector<applied_credit>, store_error>> applied_credits(
      std::string tenant_id, std::string period);
  boost::asio::awaitable<store_result> list_invoices(std::string tenant_id, std::string period,
                                                     page_request page);

  boost::asio::awaitable<pg::db_result<std::vector<usage_row>>> usage(usage_query q);
  // One page of raw events as JSON objects, and the cursor of the next page ("" = last page).
  struct events_page {
    std::string data_json;  // a JSON array
    std::string next;
  };
  boost::asio::awaitable<pg::db_result<events_page>> events(events_query q);

 private:
  boost::asio::awaitable<store_result> one_object(std::string sql, std::vector<pg::param> params,
                                                  std::string not_found);
  // One page of a tenant-owned table's objects, in id order ("" tenant: every tenant's).
  boost::asio::awaitable<store_result> tenant_page(const char* object_json,
                                                   const std::string& table,
                                                   const std::string& alias,
                                                   std::string tenant_id, page_request page);
  pg::pool& pool_;
  rating_plan_loader rating_plans_{nullptr};  // for load_rating_state
};

}  // namespace tollgate::billing
