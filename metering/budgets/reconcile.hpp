// Reconcile's decisions, pure: which Redis counters of a tenant's budgets are rebuilt from the
// ledger (the current window instance, or every bucket a sliding window counts), the ledger
// query that counts each, and the report of what differed. gateway/budget_guard runs the
// queries and the Redis writes in that order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::metering {

// One counter to rebuild: a window instance [from_ms, to_ms) of budgets[budget].
struct reconcile_span {
  std::size_t budget = 0;  // index into the budgets given to reconcile_spans
  limit_rule rule;
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;  // exclusive
};

// The counters that matter at `now_ms`, budget by budget: the current window instance (up to
// now), or each bucket a sliding window counts (oldest first, the newest up to now).
std::vector<reconcile_span> reconcile_spans(const std::vector<budget_info>& budgets,
                                            std::int64_t now_ms);

// The ledger query counting a span of budget `b` of `tenant_id`; `prices` (the models'
// estimate prices) price unrated rows of spend budgets. nullopt for the credit mirror: what the
// ledger has drawn of it (b.credit_used) is read with the budget.
std::optional<ledger_budget_query> ledger_query_of(
    const budget_info& b, const std::string& tenant_id, const reconcile_span& span,
    const std::vector<ledger_budget_query::model_price>& prices);

// What reconcile found for one counter.
struct reconcile_difference {
  std::string budget_id;
  std::string counter_id;  // the budget's id, or a value's counter (metering/budgets/subjects.hpp)
  budget_metric metric = budget_metric::tokens;
  window_spec window = budget_window::day;
  std::int64_t window_start_ms = 0;  // of the window instance, or of the bucket
  std::int64_t ledger = 0;        // what the ledger holds, now the counter's settled usage
  std::int64_t redis_before = 0;  // what the counter said before
};

// The answer: {"object":"list","data":[…]}, one object per counter:
// {"object":"budget.reconciliation","budget_id":…,"counter":…,"metric":…,"window":…,
//  "window_start":<unix s>,"ledger":…,"redis_before":…,"difference":…}
std::string reconcile_report(const std::vector<reconcile_difference>& rows);

}  // namespace tollgate::metering
