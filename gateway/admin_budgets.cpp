// The admin API's handlers for budgets: create, list, read, update, their alerts, and the
// rebuild of the Redis counters from the ledger (reconcile). A change tells every gateway to
// reload the tenant's budgets; a read adds what the budget's counters hold now.
#include <algorithm>
#include <map>

#include "billing/budget_store.hpp"
#include "core/json_text.hpp"
#include "core/limits.hpp"
#include "gateway/admin_routes.hpp"
#include "gateway/budget_guard.hpp"
#include "metering/budgets/subjects.hpp"

namespace tollgate::gateway::routes {
namespace {

using limits::budget_limit_max;

const char* const window_rule =
    "window must be minute, hour, day, week, month, quarter, lifetime, or a sliding duration "
    "from 1m to 31d: a whole number of s, m, h or d, such as 90s, 15m, 3h or 2d.";

// A budget's window from the body (absent: nullopt, or a 400 when required).
std::optional<metering::window_spec> window_of(body_reader& body, bool required) {
  auto text = body.name("window", required);
  if (!text) return std::nullopt;
  auto window = metering::parse_budget_window(*text);
  if (!window) body.fail(window_rule, "window");
  return window;
}

// A budget's models from the body: absent (nullopt), null (every model), or a list of 1 to
// budget_models_max distinct model names.
std::optional<std::optional<std::vector<std::string>>> models_of(body_reader& body) {
  auto models = body.models("models");
  if (!body.ok() || !models || !*models) return models;
  auto sorted = **models;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.empty() || sorted.size() > limits::budget_models_max ||
      std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    body.fail("models must be null (every model) or an array of 1 to " +
                  std::to_string(limits::budget_models_max) + " distinct model names.",
              "models");
    return std::nullopt;
  }
  return models;
}

// A new budget from the body, or the 400 that refuses it.
result<billing::budget_store::budget_spec> budget_spec_of(body_reader& body) {
  body.reject_unknown({"tenant_id", "scope", "scope_id", "metric", "window", "limit", "mode",
                       "alert_thresholds", "alert_webhook_url", "models",
                       "forecast_alert_thresholds"});
  auto tenant = body.name("tenant_id", true);
  auto scope = body.choice("scope", {"tenant", "project", "key", "end_user", "tag", "session"},
                           false);
  auto scope_id = body.text("scope_id", limits::scope_id_bytes_max);
  auto metric = body.choice("metric", {"tokens", "requests", "spend"}, true);
  auto window = window_of(body, true);
  auto limit = body.nullable_int("limit", 0, budget_limit_max);
  auto mode = body.choice("mode", {"hard", "soft"}, false);
  auto thresholds = body.thresholds("alert_thresholds");
  auto forecast_thresholds = body.thresholds("forecast_alert_thresholds");
  auto webhook = body.webhook_url("alert_webhook_url");
  auto models = models_of(body);
  if (!body.ok()) return body.error();
  if (!limit || !*limit) {
    return invalid_request("limit (an integer) is required.", "limit", "invalid_value");
  }
  // body.choice let only these names through.
  const auto scope_kind = metering::parse_budget_scope(scope.value_or("tenant"));
  const auto metric_kind = metering::parse_budget_metric(*metric);
  if (!scope_kind || !metric_kind || !window) return internal_error("budget kinds");
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
  if (forecast_thresholds && !forecast_thresholds->empty() &&
      (*scope_kind != metering::budget_scope::tenant ||
       *metric_kind != metering::budget_metric::spend ||
       metering::name_of(*window) != std::string_view("month"))) {
    // The forecast is the tenant's billing period's (docs/PRICING.md, "Cost preview").
    return invalid_request(
        "forecast_alert_thresholds need a tenant's spend budget with window month: the "
        "forecast is of the tenant's billing period.",
        "forecast_alert_thresholds", "invalid_value");
  }
  billing::budget_store::budget_spec spec;
  spec.tenant_id = *tenant;
  spec.scope = *scope_kind;
  spec.scope_id = scope_id.value_or("");
  spec.metric = *metric_kind;
  spec.window = *window;
  spec.limit = **limit;
  spec.mode = mode.value_or("hard");
  spec.alert_thresholds = thresholds.value_or(std::vector<int>{});
  if (webhook && *webhook) spec.alert_webhook_url = **webhook;
  if (models) spec.models = *models;
  spec.forecast_alert_thresholds = forecast_thresholds.value_or(std::vector<int>{});
  return spec;
}

// The budgets' objects with what their counters hold now (null when budgets are off on this
// gateway, Redis cannot be read, or the budget counts each end user, tag value or session
// separately): one Redis script call per tenant.
boost::asio::awaitable<std::vector<std::string>> with_usage(
    route_call& c, const std::vector<billing::budget_store::budget_view>& views) {
  std::vector<std::optional<metering::window_usage>> usage(views.size());
  if (c.env.budgets != nullptr) {
    std::map<std::string, std::vector<std::size_t>> by_tenant;
    for (std::size_t i = 0; i < views.size(); ++i) {
      // A budget that counts each end user, tag value or session has no one counter to show.
      if (metering::counts_each(views[i].info.scope, views[i].info.scope_id)) continue;
      by_tenant[views[i].tenant_id].push_back(i);
    }
    for (const auto& [tenant, indices] : by_tenant) {
      std::vector<metering::budget_info> budgets;
      for (const std::size_t i : indices) budgets.push_back(views[i].info);
      auto read = co_await c.env.budgets->usage_of(c.ex.worker_index(), tenant, std::move(budgets));
      if (!read) continue;
      for (std::size_t j = 0; j < indices.size(); ++j) usage[indices[j]] = (*read)[j];
    }
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < views.size(); ++i) {
    out.push_back(
        metering::with_usage(views[i].json, views[i].info, usage[i] ? &*usage[i] : nullptr));
  }
  co_return out;
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
  auto page = co_await c.run(c.billing().budgets->list_budgets(
      c.query.get("tenant_id").value_or(""), c.page, unix_ms(c.env.clock.wall_now())));
  if (!page) co_return co_await c.fail(to_api_error(page.error()));
  json_array_writer data;
  for (const auto& object : co_await with_usage(c, page->data)) data.add_raw(object);
  json_object_writer list;
  list.add("object", "list").add_raw("data", data.finish());
  if (page->data.empty()) {
    list.add_null("first_id").add_null("last_id");
  } else {
    list.add("first_id", page->data.front().info.id).add("last_id", page->data.back().info.id);
  }
  list.add("has_more", page->has_more);
  co_await c.ex.send_json(200, list.finish());
}

handler_result get_budget(route_call& c) {
  auto view =
      co_await c.run(c.billing().budgets->get_budget(c.id, unix_ms(c.env.clock.wall_now())));
  if (!view) co_return co_await c.fail(to_api_error(view.error()));
  std::vector<billing::budget_store::budget_view> views{std::move(*view)};
  auto objects = co_await with_usage(c, views);
  co_await c.ex.send_json(200, std::move(objects.front()));
}

handler_result update_budget(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"limit", "mode", "status", "alert_thresholds", "alert_webhook_url", "models",
                       "forecast_alert_thresholds"});
  billing::budget_store::budget_update update;
  auto limit = body.nullable_int("limit", 0, budget_limit_max);
  update.mode = body.choice("mode", {"hard", "soft"}, false);
  update.status = body.status("active", "disabled");
  update.alert_thresholds = body.thresholds("alert_thresholds");
  update.forecast_alert_thresholds = body.thresholds("forecast_alert_thresholds");
  auto webhook = body.webhook_url("alert_webhook_url");
  auto models = models_of(body);
  if (!body.ok()) co_return co_await c.fail(body.error());
  if (limit && *limit) update.limit = **limit;
  if (webhook) {
    update.set_webhook = true;
    update.alert_webhook_url = *webhook;
  }
  if (models) {
    update.set_models = true;
    update.models = *models;
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
