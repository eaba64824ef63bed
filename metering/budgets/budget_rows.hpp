// The rows budgets exchange with the ledger database: a budget as enforcement reads it, an alert
// to record and one to deliver, and the ledger query behind reconcile. billing/budget_store
// reads and writes them (parsing the database's text into the enums); this module decides with
// them and never includes billing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metering/budgets/budget_kinds.hpp"
#include "metering/budgets/credit_rate.hpp"

namespace tollgate::metering {

// A coverage pool of a credit_only tenant (docs/CREDITS.md, "credit_only plans, in real
// time"): the tokens of one model and class (input: prompt tokens; output: completion tokens)
// that the tenant's bundles shared with every project still pay for, mirrored as a lifetime
// counter that holds take covers from (metering/budgets/cover.hpp).
struct cover_pool {
  std::string model;
  bool output = false;     // false: input
  std::string id;          // its counter's id (cover_pool_id)
  std::int64_t limit = 0;  // tokens of those bundles in force or that were, less breakage
  std::int64_t used = 0;   // what the ledger has drawn of them (limit less what is left)
};

// A budget as enforcement needs it (active budgets only).
struct budget_info {
  std::string id;
  budget_scope scope = budget_scope::tenant;
  std::string scope_id;                          // "" for the tenant
  budget_metric metric = budget_metric::tokens;  // spend: micro-units
  window_spec window = budget_window::day;
  std::int64_t limit = 0;
  bool hard = true;
  std::vector<int> alert_thresholds;  // percent of the limit
  // The models whose requests it counts (nullopt: every model).
  std::optional<std::vector<std::string>> models;
  // Day, week, month and quarter windows of a tenant outside UTC, at the time of reading (ms
  // since the epoch; all 0 otherwise): the current window instance [start, end) and the end
  // of the next one.
  std::int64_t zone_start_ms = 0;
  std::int64_t zone_end_ms = 0;
  std::int64_t zone_next_end_ms = 0;
  // Spend and credit budgets of a tenant with a plan: the worst-case rates of its price book
  // version in force, per model (empty: no plan; spend is then priced with the models'
  // estimate prices).
  std::vector<credit_rate> plan_rates;
  // With plan_rates: the end of the plan period they were read in (ms since the epoch; the
  // next UTC month), when the plan in force may change. A cached read is not used past it.
  std::int64_t plan_until_ms = 0;
  // The credit of a credit_only plan, mirrored as a budget (metric credit, window lifetime,
  // id "credit:<tenant>"): `limit` is the credit usable so far (grants for every model in
  // force, less what expired unused), `credit_used` what the ledger has drawn of it.
  std::int64_t credit_used = 0;
  // The credit mirror of a tenant with token bundles: its coverage pools, by model and class.
  std::vector<cover_pool> cover_pools;
  // The plan's book prices every model as "*" (tier_scope all_models): the ledger then draws
  // the bundles of model "*" for every request, and only those, so they are the pool asked.
  bool cover_all_models = false;
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
  budget_scope scope = budget_scope::tenant;
  // The project or key id ("" for the tenant); for end_user, tag and session scopes as the
  // budget has it (metering/budgets/subjects.hpp).
  std::string scope_id;
  budget_metric metric = budget_metric::tokens;  // tokens, requests or spend
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;  // exclusive
  std::optional<std::vector<std::string>> models;  // only these models' rows (nullopt: all)
  struct model_price {
    std::string model;
    std::uint64_t input = 0;   // micro-units per million prompt tokens
    std::uint64_t output = 0;  // micro-units per million completion tokens
  };
  std::vector<model_price> prices;  // spend only
};

// What the ledger holds against a budget in a window: one row (subject "") for a budget with one
// counter; one row per end user, tag value or session for a budget that counts each value.
struct subject_usage {
  std::string subject;
  std::int64_t used = 0;
};

}  // namespace tollgate::metering
