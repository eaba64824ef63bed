// The admin API's handlers for budgets: create, list, read, update, their alerts, and the
// rebuild of the Redis counters from the ledger (reconcile). A change tells every gateway to
// reload the tenant's budgets.
#include "billing/budget_store.hpp"
#include "core/limits.hpp"
#include "gateway/admin_routes.hpp"
#include "gateway/budget_guard.hpp"
#include "metering/budgets/subjects.hpp"

namespace tollgate::gateway::routes {
namespace {

using limits::budget_limit_max;

// A new budget from the body, or the 400 that refuses it.
result<billing::budget_store::budget_spec> budget_spec_of(body_reader& body) {
  body.reject_unknown({"tenant_id", "scope", "scope_id", "metric", "window", "limit", "mode",
                       "alert_thresholds", "alert_webhook_url"});
  auto tenant = body.name("tenant_id", true);
  auto scope = body.choice("scope", {"tenant", "project", "key", "end_user", "tag", "session"},
                           false);
  auto scope_id = body.text("scope_id", limits::scope_id_bytes_max);
  auto metric = body.choice("metric", {"tokens", "requests", "spend"}, true);
  auto window = body.choice("window", {"minute", "hour", "day", "month", "lifetime"}, true);
  auto limit = body.nullable_int("limit", 0, budget_limit_max);
  auto mode = body.choice("mode", {"hard", "soft"}, false);
  auto thresholds = body.thresholds("alert_thresholds");
  auto webhook = body.webhook_url("alert_webhook_url");
  if (!body.ok()) return body.error();
  if (!limit || !*limit) {
    return invalid_request("limit (an integer) is required.", "limit", "invalid_value");
  }
  // body.choice let only these names through.
  const auto scope_kind = metering::parse_budget_scope(scope.value_or("tenant"));
  const auto metric_kind = metering::parse_budget_metric(*metric);
  const auto window_kind = metering::parse_budget_window(*window);
  if (!scope_kind || !metric_kind || !window_kind) return internal_error("budget kinds");
  if (auto bad = metering::check_scope_id(*scope_kind, scope_id)) {
    return invalid_request(*bad, "scope_id", "invalid_value");
  }
  if (metering::counts_each(*scope_kind, scope_id.value_or("")) && thresholds &&
      !thresholds->empty()) {
    // One alert per window would name whichever value crossed first: not offered.
    return invalid_request(
        "alert_thresholds are not offered on a budget that counts each end user, tag value or "
        "session separately.",
        "alert_thresholds", "invalid_value");
  }
  billing::budget_store::budget_spec spec;
  spec.tenant_id = *tenant;
  spec.scope = *scope_kind;
  spec.scope_id = scope_id.value_or("");
  spec.metric = *metric_kind;
  spec.window = *window_kind;
  spec.limit = **limit;
  spec.mode = mode.value_or("hard");
  spec.alert_thresholds = thresholds.value_or(std::vector<int>{});
  if (webhook && *webhook) spec.alert_webhook_url = **webhook;
  return spec;
}

}  // namespace

handler_result create_budget(route_call& c) {
  body_reader body = c.body();
  auto spec = budget_spec_of(body);
  if (!spec) co_return co_await c.fail(spec.error());
  const std::string tenant = spec->tenant_id;
  auto outcome = co_await c.run(c.billing().budgets->create_budget(std::move(*spec), c.actor));
  if (outcome) c.budgets_changed(tenant);
  co_await c.reply(std::move(outcome), 201);
}

handler_result list_budgets(route_call& c) {
  co_await c.reply(
      c.billing().budgets->list_budgets(c.query.get("tenant_id").value_or(""), c.page));
}

handler_result get_budget(route_call& c) {
  co_await c.reply(c.billing().budgets->get_budget(c.id));
}

handler_result update_budget(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"limit", "mode", "status", "alert_thresholds", "alert_webhook_url"});
  billing::budget_store::budget_update update;
  auto limit = body.nullable_int("limit", 0, budget_limit_max);
  update.mode = body.choice("mode", {"hard", "soft"}, false);
  update.status = body.status("active", "disabled");
  update.alert_thresholds = body.thresholds("alert_thresholds");
  auto webhook = body.webhook_url("alert_webhook_url");
  if (!body.ok()) co_return co_await c.fail(body.error());
  if (limit && *limit) update.limit = **limit;
  if (webhook) {
    update.set_webhook = true;
    update.alert_webhook_url = *webhook;
  }
  auto outcome =
      co_await c.run(c.billing().budgets->update_budget(c.id, std::move(update), c.actor));
  if (!outcome) co_return co_await c.fail(to_api_error(outcome.error()));
  c.budgets_changed(outcome->tenant_id);
  co_await c.ex.send_json(200, std::move(outcome->json));
}

handler_result list_budget_alerts(route_call& c) {
  co_await c.reply(c.billing().budgets->list_budget_alerts(c.id));
}

// Rebuilds the tenant's Redis counters from the ledger (budget_guard::reconcile).
handler_result reconcile_budgets(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"tenant_id"});
  auto tenant = body.name("tenant_id", true);
  if (!body.ok()) co_return co_await c.fail(body.error());
  if (c.env.budgets == nullptr) {
    co_return co_await c.fail(
        not_found_error("Budgets are off on this gateway (budgets.redis).", "budgets_disabled"));
  }
  auto report = co_await c.env.budgets->reconcile(c.ex.worker_index(), *tenant);
  if (!report) co_return co_await c.fail(report.error());
  co_await c.ex.send_json(200, std::move(*report));
}

}  // namespace tollgate::gateway::routes
