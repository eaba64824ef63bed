// Reconcile's decisions: see reconcile.hpp.
#include "metering/budgets/reconcile.hpp"

#include <algorithm>

#include "core/json_text.hpp"
#include "metering/budgets/policy.hpp"

namespace tollgate::metering {

std::vector<reconcile_span> reconcile_spans(const std::vector<budget_info>& budgets,
                                            std::int64_t now_ms) {
  std::vector<reconcile_span> spans;
  for (std::size_t i = 0; i < budgets.size(); ++i) {
    const limit_rule rule = rule_of(budgets[i], now_ms);
    if (!rule.window.sliding()) {
      spans.push_back({i, rule, rule.start_at(now_ms), now_ms + 1});
      continue;
    }
    // Every bucket the window counts, oldest first, the newest up to now.
    const std::int64_t bucket = bucket_length_ms(rule.window.length_ms);
    const std::vector<std::int64_t> starts = rule.counted_starts(now_ms);
    for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
      spans.push_back({i, rule, *it, std::min(*it + bucket, now_ms + 1)});
    }
  }
  return spans;
}

std::optional<ledger_budget_query> ledger_query_of(
    const budget_info& b, const std::string& tenant_id, const reconcile_span& span,
    const std::vector<ledger_budget_query::model_price>& prices) {
  if (b.metric == budget_metric::credit) return std::nullopt;
  ledger_budget_query q;
  q.tenant_id = tenant_id;
  q.scope = b.scope;
  q.scope_id = b.scope_id;
  q.metric = b.metric;
  q.start_ms = span.from_ms;
  q.end_ms = span.to_ms;
  q.models = b.models;
  if (b.metric == budget_metric::spend) q.prices = prices;
  return q;
}

std::string reconcile_report(const std::vector<reconcile_difference>& rows) {
  std::string data;
  for (const auto& d : rows) {
    json_object_writer row;
    row.add("object", "budget.reconciliation")
        .add("budget_id", d.budget_id)
        .add("counter", d.counter_id)
        .add("metric", name_of(d.metric))
        .add("window", name_of(d.window))
        .add("window_start", d.window_start_ms / 1000)
        .add("ledger", d.ledger)
        .add("redis_before", d.redis_before)
        .add("difference", d.ledger - d.redis_before);
    if (!data.empty()) data += ",";
    data += row.finish();
  }
  return "{\"object\":\"list\",\"data\":[" + data + "]}";
}

}  // namespace tollgate::metering
