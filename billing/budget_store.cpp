// The budget store: see budget_store.hpp.
#include "billing/budget_store.hpp"

#include "billing/api_keys.hpp"
#include "billing/credits.hpp"
#include "metering/budgets/cover.hpp"
#include "billing/period_pricing.hpp"
#include "billing/price_book.hpp"
#include "billing/tag_sets.hpp"
#include "billing/webhook_deliveries.hpp"
#include "core/json_text.hpp"
#include "metering/budgets/subjects.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {
const char* const budget_json =
    "json_build_object('object','budget','id',g.id,'tenant_id',g.tenant_id,'scope',g.scope,"
    "'scope_id',g.scope_id,'metric',g.metric,'window',g.time_window,'models',to_jsonb(g.models),"
    "'limit',g.limit_value,'mode',g.mode,'status',g.status,"
    "'alert_thresholds',to_jsonb(g.alert_thresholds),'alert_webhook_url',g.alert_webhook_url,"
    "'alert_webhook_secret',g.alert_webhook_secret,"
    "'forecast_alert_thresholds',to_jsonb(g.forecast_alert_thresholds),"
    "'created_at',extract(epoch from g.created_at)::bigint)";

// What enforcement reads of budget g (info_of parses it), with its window instance in the
// tenant's time zone at $2 (ms since the epoch) for calendar windows outside UTC: PostgreSQL's
// time zone rules give local midnight (the Monday, the first of the month or quarter) as
// instants, and the ends of this instance and the next.
const char* const info_columns =
    "g.id, g.scope, coalesce(g.scope_id, ''), g.metric, g.time_window, g.limit_value,"
    " g.mode = 'hard', array_to_string(g.alert_thresholds, ','),"
    " coalesce((extract(epoch from z.s AT TIME ZONE t.time_zone) * 1000)::bigint, 0),"
    " coalesce((extract(epoch from (z.s + z.len) AT TIME ZONE t.time_zone) * 1000)::bigint, 0),"
    " coalesce((extract(epoch from (z.s + 2 * z.len) AT TIME ZONE t.time_zone) * 1000)::bigint,"
    " 0), g.models IS NOT NULL, array_to_string(g.models, E'\\n')";
const char* const info_from =
    " FROM budgets g JOIN tenants t ON t.id = g.tenant_id"
    " LEFT JOIN LATERAL (SELECT date_trunc(CASE WHEN g.time_window IN ('day', 'week', 'month',"
    " 'quarter') THEN g.time_window ELSE 'day' END, (timestamptz 'epoch' + $2::bigint"
    " * interval '1 millisecond') AT TIME ZONE t.time_zone) AS s,"
    " CASE g.time_window WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'"
    " WHEN 'month' THEN interval '1 month' ELSE interval '3 months' END AS len)"
    " z ON t.time_zone <> 'UTC' AND g.time_window IN ('day', 'week', 'month', 'quarter')";

// The budget in row i's info_columns, which start at column `at`.
pg::db_result<budget_info> info_of(const pg::rows& r, int i, int at) {
  budget_info b;
  b.id = r.text(i, at);
  const auto scope = metering::parse_budget_scope(r.text(i, at + 1));
  const auto metric = metering::parse_budget_metric(r.text(i, at + 3));
  const auto window = metering::parse_budget_window(r.text(i, at + 4));
  if (!scope || !metric || !window) {
    // The table's CHECK constraints allow no other values.
    return pg::db_error{"budget " + b.id + " has an unknown scope, metric or window", ""};
  }
  b.scope = *scope;
  b.scope_id = r.text(i, at + 2);
  b.metric = *metric;
  b.window = *window;
  b.limit = r.int64(i, at + 5);
  b.hard = r.boolean(i, at + 6);
  for (const auto& t : split_list(r.text(i, at + 7), ','))
    b.alert_thresholds.push_back(std::stoi(t));
  b.zone_start_ms = r.int64(i, at + 8);
  b.zone_end_ms = r.int64(i, at + 9);
  b.zone_next_end_ms = r.int64(i, at + 10);
  if (r.boolean(i, at + 11)) b.models = split_list(r.text(i, at + 12), '\n');
  return b;
}

// PostgreSQL's array text for a list of integers: {50,80,100}.
std::string int_array(const std::vector<int>& v) {
  std::string out = "{";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out + "}";
}
}

net::awaitable<store_result> budget_store::create_budget(budget_spec spec, std::string actor) {
  pg::param scope_id;
  if (!spec.scope_id.empty()) scope_id = spec.scope_id;
  pg::param webhook_url, webhook_secret, models;
  if (!spec.alert_webhook_url.empty()) {
    webhook_url = spec.alert_webhook_url;
    webhook_secret = new_webhook_secret();
  }
  if (spec.models) models = pg::text_array(*spec.models);
  // The scope must name a project or key of the same tenant: otherwise nothing is inserted
  // and the answer is 404.
  return one_object(
      pool_,
      std::string("WITH g AS (INSERT INTO budgets (tenant_id, id, scope, scope_id, metric,"
                  " time_window, limit_value, mode, alert_thresholds, alert_webhook_url,"
                  " alert_webhook_secret, models, forecast_alert_thresholds)"
                  " SELECT $1, $2, $3, $4, $5, $6, $7::bigint, $8,"
                  " $10::integer[], $11, $12, $13::text[], $14::integer[]"
                  " WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) AND CASE $3"
                  " WHEN 'project' THEN EXISTS (SELECT 1 FROM projects WHERE tenant_id = $1 AND"
                  " id = $4) WHEN 'key' THEN EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1"
                  " AND id = $4) ELSE true END RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $9, 'budget.create', g.tenant_id, 'budget', g.id,"
                  " to_jsonb(g) - 'alert_webhook_secret' FROM g) SELECT ") +
          budget_json + "::text FROM g",
      {spec.tenant_id, new_object_id("bud"), std::string(metering::name_of(spec.scope)), scope_id,
       std::string(metering::name_of(spec.metric)), metering::name_of(spec.window),
       std::to_string(spec.limit), spec.mode, std::move(actor), int_array(spec.alert_thresholds),
       webhook_url, webhook_secret, models, int_array(spec.forecast_alert_thresholds)},
      "The tenant, project or key named does not exist.");
}

net::awaitable<basic_result<std::vector<budget_store::budget_view>, store_error>>
budget_store::budget_views(std::string where, std::vector<pg::param> params) {
  const std::string sql = std::string("SELECT ") + budget_json + "::text, g.tenant_id, " +
                          info_columns + info_from + " WHERE " + where;
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  std::vector<budget_view> out;
  for (int i = 0; i < r->size(); ++i) {
    auto info = info_of(*r, i, 2);
    if (!info) co_return store_error{500, info.error().message, "database_error"};
    out.push_back({std::string(r->text(i, 0)), std::string(r->text(i, 1)), std::move(*info)});
  }
  co_return out;
}

net::awaitable<basic_result<budget_store::budget_view, store_error>> budget_store::get_budget(
    std::string id, std::int64_t now_ms) {
  // Named arguments: GCC 12 mishandles temporaries made inside a co_await expression.
  std::string where = "g.id = $1";
  std::vector<pg::param> params{id, std::to_string(now_ms)};
  auto views = co_await budget_views(std::move(where), std::move(params));
  if (!views) co_return views.error();
  if (views->empty()) co_return store_error{404, "No budget with id " + id + ".", "not_found"};
  co_return std::move(views->front());
}

net::awaitable<basic_result<budget_store::budget_page, store_error>> budget_store::list_budgets(
    std::string tenant_id, page_request page, std::int64_t now_ms) {
  std::string where =
      "($1 = '' OR g.tenant_id = $1) AND ($3 = '' OR g.id > $3) ORDER BY g.id LIMIT $4::int + 1";
  std::vector<pg::param> params{std::move(tenant_id), std::to_string(now_ms), page.after,
                                std::to_string(page.limit)};
  auto views = co_await budget_views(std::move(where), std::move(params));
  if (!views) co_return views.error();
  budget_page out;
  out.has_more = views->size() > static_cast<std::size_t>(page.limit);
  if (out.has_more) views->resize(static_cast<std::size_t>(page.limit));
  out.data = std::move(*views);
  co_return out;
}

net::awaitable<basic_result<budget_store::updated_budget, store_error>>
budget_store::update_budget(std::string id, budget_update u, std::string actor) {
  pg::param limit_text, thresholds, webhook_url;
  if (u.limit) limit_text = std::to_string(*u.limit);
  if (u.alert_thresholds) thresholds = int_array(*u.alert_thresholds);
  if (u.alert_webhook_url) webhook_url = *u.alert_webhook_url;
  // A webhook keeps its secret when only its address changes; a new one gets a new secret.
  const std::string sql =
      std::string("WITH b AS (SELECT * FROM budgets WHERE id = $1 FOR UPDATE),"
                  " g AS (UPDATE budgets SET limit_value = coalesce($2::bigint, b.limit_value),"
                  " mode = coalesce($3, b.mode), status = coalesce($4, b.status),"
                  " alert_thresholds = coalesce($6::integer[], b.alert_thresholds),"
                  " models = CASE WHEN $10::boolean THEN $11::text[] ELSE b.models END,"
                  " forecast_alert_thresholds = coalesce($12::integer[],"
                  " b.forecast_alert_thresholds),"
                  " alert_webhook_url = CASE WHEN $7 THEN $8 ELSE b.alert_webhook_url END,"
                  " alert_webhook_secret = CASE WHEN NOT $7 THEN b.alert_webhook_secret"
                  " WHEN $8 IS NULL THEN NULL ELSE coalesce(b.alert_webhook_secret, $9) END,"
                  " updated_at = now() FROM b WHERE budgets.id = b.id RETURNING budgets.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $5, 'budget.update', g.tenant_id, 'budget', g.id,"
                  " to_jsonb(b) - 'alert_webhook_secret', to_jsonb(g) - 'alert_webhook_secret'"
                  " FROM g, b) SELECT ") +
      budget_json + "::text, g.tenant_id FROM g";
  std::vector<pg::param> params;
  params.emplace_back(id);
  params.emplace_back(limit_text);
  params.emplace_back(std::move(u.mode));
  params.emplace_back(std::move(u.status));
  params.emplace_back(std::move(actor));
  params.emplace_back(thresholds);
  params.emplace_back(std::string(u.set_webhook ? "true" : "false"));
  params.emplace_back(webhook_url);
  params.emplace_back(new_webhook_secret());
  params.emplace_back(std::string(u.set_models ? "true" : "false"));
  pg::param models;
  if (u.models) models = pg::text_array(*u.models);
  params.emplace_back(models);
  pg::param forecast_thresholds;
  if (u.forecast_alert_thresholds) forecast_thresholds = int_array(*u.forecast_alert_thresholds);
  params.emplace_back(forecast_thresholds);
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  if (r->size() == 0 || r->is_null(0, 0)) {
    co_return store_error{404, "No budget with id " + id + ".", "not_found"};
  }
  co_return updated_budget{std::string(r->text(0, 0)), std::string(r->text(0, 1))};
}

net::awaitable<store_result> budget_store::list_budget_alerts(std::string budget_id) {
  return one_object(
      pool_,
      "SELECT json_build_object('object','list','data',coalesce((SELECT json_agg("
      "json_build_object('object','budget.alert','id',x.id,'budget_id',x.budget_id,"
      "'tenant_id',x.tenant_id,'window_start',extract(epoch from x.window_start)::bigint,"
      "'threshold',x.threshold,'kind',x.kind,'limit',x.limit_value,'used',x.used,"
      "'webhook_url',x.webhook_url,"
      "'status',x.status,'attempts',x.attempts,'last_error',x.last_error,"
      "'created_at',extract(epoch from x.created_at)::bigint,"
      "'delivered_at',extract(epoch from x.delivered_at)::bigint)"
      " ORDER BY x.created_at DESC, x.id DESC) FROM (SELECT * FROM budget_alerts"
      " WHERE budget_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100) x), '[]'::json))::text"
      " FROM budgets WHERE id = $1",
      {budget_id}, "No budget with id " + budget_id + ".");
}

net::awaitable<pg::db_result<bool>> budget_store::record_budget_alert(budget_alert_spec a) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "WITH ins AS (INSERT INTO budget_alerts (id, tenant_id, budget_id, window_start, threshold,"
      " limit_value, used, payload, webhook_url, status)"
      " SELECT $1::text, b.tenant_id, b.id,"
      " timestamptz 'epoch' + $3::bigint * interval '1 millisecond',"
      " $4::integer, $5::bigint, $6::bigint, json_build_object('id', $1::text,"
      " 'object', 'budget.alert',"
      " 'tenant_id', b.tenant_id, 'budget_id', b.id, 'scope', b.scope, 'scope_id', b.scope_id,"
      " 'metric', b.metric, 'window', b.time_window, 'mode', b.mode,"
      " 'window_start', $3::bigint / 1000, 'threshold_percent', $4::integer,"
      " 'limit', $5::bigint, 'used', $6::bigint,"
      " 'created_at', extract(epoch from now())::bigint)::text, b.alert_webhook_url,"
      " CASE WHEN b.alert_webhook_url IS NULL THEN 'recorded' ELSE 'pending' END"
      " FROM budgets b WHERE b.id = $2 AND b.tenant_id = $7"
      " ON CONFLICT (budget_id, window_start, threshold, kind) DO NOTHING RETURNING status)"
      " SELECT count(*) FILTER (WHERE status = 'pending') > 0 FROM ins";
  std::vector<pg::param> params{new_object_id("alr"), a.budget_id,
                                std::to_string(a.window_start_ms), std::to_string(a.threshold),
                                std::to_string(a.limit), std::to_string(a.used), a.tenant_id};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->boolean(0, 0);
}

net::awaitable<pg::db_result<std::vector<budget_store::forecast_budget>>>
budget_store::forecast_budgets() {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(
      "SELECT tenant_id, id, limit_value, array_to_string(forecast_alert_thresholds, ',')"
      " FROM budgets WHERE status = 'active' AND cardinality(forecast_alert_thresholds) > 0"
      " ORDER BY tenant_id, id");
  if (!r) co_return r.error();
  std::vector<forecast_budget> out;
  for (int i = 0; i < r->size(); ++i) {
    forecast_budget b;
    b.tenant_id = std::string(r->text(i, 0));
    b.budget_id = std::string(r->text(i, 1));
    b.limit = r->int64(i, 2);
    for (const auto& t : split_list(r->text(i, 3), ',')) b.thresholds.push_back(std::stoi(t));
    out.push_back(std::move(b));
  }
  co_return out;
}

net::awaitable<pg::db_result<bool>> budget_store::record_forecast_alert(
    forecast_budget b, std::int64_t period_start_s, int threshold, std::int64_t forecast_micros,
    std::int64_t cost_micros) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  // `used` holds the forecast that crossed the threshold; the payload says both.
  const std::string sql =
      "WITH ins AS (INSERT INTO budget_alerts (id, tenant_id, budget_id, window_start, threshold,"
      " kind, limit_value, used, payload, webhook_url, status)"
      " SELECT $1::text, g.tenant_id, g.id, to_timestamp($3::bigint), $4::integer, 'forecast',"
      " $5::bigint, $6::bigint, json_build_object('id', $1::text,"
      " 'object', 'budget.forecast_alert', 'tenant_id', g.tenant_id, 'budget_id', g.id,"
      " 'scope', g.scope, 'metric', g.metric, 'window', g.time_window, 'mode', g.mode,"
      " 'window_start', $3::bigint, 'threshold_percent', $4::integer, 'limit', $5::bigint,"
      " 'forecast', $6::bigint, 'used', $7::bigint, 'method', 'run_rate',"
      " 'created_at', extract(epoch from now())::bigint)::text, g.alert_webhook_url,"
      " CASE WHEN g.alert_webhook_url IS NULL THEN 'recorded' ELSE 'pending' END"
      " FROM budgets g WHERE g.id = $2 AND g.tenant_id = $8"
      " ON CONFLICT (budget_id, window_start, threshold, kind) DO NOTHING RETURNING status)"
      " SELECT count(*) FILTER (WHERE status = 'pending') > 0 FROM ins";
  std::vector<pg::param> params{new_object_id("alr"),           b.budget_id,
                                std::to_string(period_start_s), std::to_string(threshold),
                                std::to_string(b.limit),        std::to_string(forecast_micros),
                                std::to_string(cost_micros),    b.tenant_id};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->boolean(0, 0);
}

net::awaitable<pg::db_result<std::vector<alert_delivery>>> budget_store::claim_alerts(
    int limit, std::int64_t lease_ms) {
  // Each alert is signed with its budget's secret.
  const delivery_source alerts{"budget_alerts", ", budgets b", " AND b.id = x.budget_id",
                               "coalesce(b.alert_webhook_secret, '')"};
  co_return co_await claim_deliveries(pool_, alerts, limit, lease_ms);
}

net::awaitable<pg::db_result<bool>> budget_store::finish_alert(std::string id,
                                                               std::string status,
                                                               std::string error,
                                                               std::int64_t retry_in_ms) {
  co_return co_await finish_delivery(pool_, "budget_alerts", std::move(id), std::move(status),
                                     std::move(error), retry_in_ms);
}

net::awaitable<pg::db_result<std::vector<budget_info>>> budget_store::active_budgets(
    std::string tenant_id, std::int64_t now_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql = std::string("SELECT ") + info_columns + info_from +
                          " WHERE g.tenant_id = $1 AND g.status = 'active' ORDER BY g.id";
  std::vector<pg::param> params{tenant_id, std::to_string(now_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<budget_info> out;
  for (int i = 0; i < r->size(); ++i) {
    auto b = info_of(*r, i, 0);
    if (!b) co_return b.error();
    out.push_back(std::move(*b));
  }

  // With a plan, spend is priced by its price book (worst-case rates, docs/BUDGETS.md). A
  // credit_only plan: its credit as one more budget (docs/CREDITS.md). Usable: the amounts of
  // the grants for every model that are in force or were (less what expired unused); used:
  // usable less what those still in force hold.
  const std::string credit_sql =
      "WITH g AS (SELECT g.id, g.amount_micros, a.balance_micros,"
      " g.expires_at IS NOT NULL AND g.expires_at <= to_timestamp($2::bigint / 1000.0) AS over,"
      " coalesce((SELECT x.amount_micros FROM credit_entries x WHERE x.transfer_id ="
      " 'expire:' || g.id AND x.account_id = a.id), 0) AS expired"
      " FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id"
      " WHERE g.tenant_id = $1 AND g.models IS NULL"
      " AND g.effective_at <= to_timestamp($2::bigint / 1000.0))"
      " SELECT (SELECT coalesce(sum(amount_micros + expired), 0) FROM g),"
      " (SELECT coalesce(sum(balance_micros) FILTER (WHERE NOT over), 0) FROM g),"
      " b.tier_mode, b.tier_scope, (SELECT v.prices::text FROM price_book_versions v"
      " WHERE v.book_id = p.book_id AND v.effective_at <= to_timestamp($2::bigint / 1000.0)"
      " ORDER BY v.effective_at DESC LIMIT 1), p.settlement_mode = 'credit_only'"
      " FROM tenant_plans p JOIN price_books b ON b.id = p.book_id WHERE p.tenant_id = $1"
      " AND p.from_period = tollgate_plan_period($1, $3)";
  std::vector<pg::param> credit_params{tenant_id, std::to_string(now_ms),
                                       period_of(now_ms / 1000)};
  auto c = co_await (*conn)->query(credit_sql, std::move(credit_params));
  if (!c) co_return c.error();
  if (c->size() == 1) {
    std::vector<credit_rate> rates;
    if (!c->is_null(0, 4)) {
      const auto parsed = parse_stored_prices(c->text(0, 4), c->text(0, 2), c->text(0, 3));
      if (parsed) {
        for (const auto& m : *parsed) rates.push_back(worst_case_rate(m));
      }
    }
    // The plan read is the one of this period: a scheduled change applies from the next.
    const auto period = period_bounds(period_of(now_ms / 1000));
    const std::int64_t plan_until_ms = period ? period->second * 1000 : 0;
    for (auto& b : out) {
      if (b.metric == metering::budget_metric::spend) {
        b.plan_rates = rates;
        b.plan_until_ms = plan_until_ms;
      }
    }
    if (c->boolean(0, 5)) {
      budget_info b;
      b.id = "credit:" + tenant_id;
      b.scope = metering::budget_scope::tenant;
      b.metric = metering::budget_metric::credit;
      b.window = metering::budget_window::lifetime;
      b.limit = c->int64(0, 0);
      b.credit_used = b.limit - c->int64(0, 1);
      b.plan_rates = std::move(rates);
      auto pools = co_await cover_pools(**conn, tenant_id, now_ms);
      if (!pools) co_return pools.error();
      b.cover_pools = std::move(*pools);
      b.cover_all_models = c->text(0, 3) == "all_models";
      b.plan_until_ms = plan_until_ms;
      out.push_back(std::move(b));
    }
  }
  co_return out;
}

net::awaitable<pg::db_result<std::vector<metering::cover_pool>>> budget_store::cover_pools(
    pg::connection& conn, std::string tenant_id, std::int64_t now_ms) {
  // A credit_only tenant's coverage pools (docs/CREDITS.md): per model and class (input,
  // output), its bundles shared with every project that are in force or were, as the credit
  // mirror counts grants: the limit is their tokens less what expired unused, the used part
  // that limit less what those still in force have left.
  const std::string sql =
      "WITH g AS (SELECT g.models[1] AS model, g.bundle_token_class = 'output' AS output,"
      " g.bundle_tokens AS tokens, a.tokens_balance AS left_,"
      " g.expires_at IS NOT NULL AND g.expires_at <= to_timestamp($2::bigint / 1000.0) AS over,"
      " coalesce((SELECT x.tokens FROM credit_entries x WHERE x.transfer_id = 'expire:' || g.id"
      " AND x.account_id = a.id), 0) AS expired"
      " FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id"
      " WHERE g.tenant_id = $1 AND g.kind = 'bundle' AND g.bundle_project_ids IS NULL"
      " AND g.bundle_token_class IN ('input', 'output')"
      " AND g.effective_at <= to_timestamp($2::bigint / 1000.0))"
      " SELECT model, output, sum(tokens + expired)::bigint,"
      " coalesce(sum(left_) FILTER (WHERE NOT over), 0)::bigint"
      " FROM g GROUP BY model, output ORDER BY model, output";
  std::vector<pg::param> params{tenant_id, std::to_string(now_ms)};
  auto r = co_await conn.query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<metering::cover_pool> pools;
  for (int i = 0; i < r->size(); ++i) {
    metering::cover_pool p;
    p.model = std::string(r->text(i, 0));
    p.output = r->boolean(i, 1);
    p.id = metering::cover_pool_id(p.model, p.output);
    p.limit = r->int64(i, 2);
    p.used = p.limit - r->int64(i, 3);
    pools.push_back(std::move(p));
  }
  co_return pools;
}

net::awaitable<pg::db_result<std::vector<metering::subject_usage>>> budget_store::ledger_usage(
    ledger_budget_query q) {
  json_array_writer price_list;
  for (const auto& p : q.prices) {
    json_object_writer w;
    w.add("model", p.model)
        .add("input", static_cast<std::int64_t>(p.input))
        .add("output", static_cast<std::int64_t>(p.output));
    price_list.add_raw(w.finish());
  }
  const std::string prices = price_list.finish();
  std::string amount;
  if (q.metric == metering::budget_metric::tokens) {
    amount = "e.prompt_tokens + e.completion_tokens";
  } else if (q.metric == metering::budget_metric::spend) {
    // What the event was rated (billed); an event not rated at the models' estimate prices.
    amount =
        "coalesce(e.cost_micros, div(e.prompt_tokens * coalesce(p.input, 0)"
        " + e.completion_tokens * coalesce(p.output, 0) + 999999, 1000000))";
  } else {
    // Rows the gateway refused before forwarding have no upstream (bad request, unknown model)
    // or the gateway's own 429/503 codes (budgets, a full ledger spool): they held nothing.
    amount =
        "CASE WHEN e.upstream = '' OR (e.status IN (429, 503) AND e.error_code IN"
        " ('insufficient_quota', 'rate_limit_exceeded', 'service_unavailable',"
        " 'ledger_unavailable')) THEN 0 ELSE 1 END";
  }
  std::vector<pg::param> params{q.tenant_id, std::to_string(q.start_ms), std::to_string(q.end_ms),
                                prices};
  const auto param = [&params](std::string value) {
    params.push_back(std::move(value));
    return "$" + std::to_string(params.size());
  };
  // The value a budget on an attribution dimension counts by, and the rows it counts.
  std::string subject = "''";
  std::string where;
  const bool each = metering::counts_each(q.scope, q.scope_id);
  switch (q.scope) {
    case metering::budget_scope::tenant:
      break;
    case metering::budget_scope::project:
      where = " AND e.project_id = " + param(q.scope_id);
      break;
    case metering::budget_scope::key:
      where = " AND e.api_key_id = " + param(q.scope_id);
      break;
    case metering::budget_scope::end_user:
    case metering::budget_scope::session: {
      const std::string column =
          q.scope == metering::budget_scope::end_user ? "e.end_user" : "e.session_id";
      where = each ? " AND " + column + " IS NOT NULL" : " AND " + column + " = " + param(q.scope_id);
      if (each) subject = column;
      break;
    }
    case metering::budget_scope::tag: {
      const std::size_t eq = q.scope_id.find('=');
      const std::string key = param(q.scope_id.substr(0, eq));
      subject = "ts.tags ->> " + key;
      where = each ? " AND ts.tags ? " + key
                   : " AND " + subject + " = " + param(q.scope_id.substr(eq + 1));
      if (!each) subject = "''";
      break;
    }
  }
  if (q.models) {
    where += " AND e.model = ANY(" + param(pg::text_array(*q.models)) + "::text[])";
  }
  const std::string sql =
      "SELECT " + subject + ", coalesce(sum(" + amount + "), 0)::bigint FROM usage_events e" +
      join_tag_sets +
      " LEFT JOIN jsonb_to_recordset($4::jsonb) AS p(model text, input numeric, output numeric)"
      " ON p.model = e.model"
      " WHERE e.tenant_id = $1"
      " AND e.occurred_at >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'"
      " AND e.occurred_at < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'" +
      where + (each ? " GROUP BY 1 ORDER BY 1" : "");
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<metering::subject_usage> out;
  for (int i = 0; i < r->size(); ++i) {
    out.push_back({std::string(r->text(i, 0)), r->int64(i, 1)});
  }
  co_return out;
}

}  // namespace tollgate::billing
