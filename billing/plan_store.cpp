// The plan store: see plan_store.hpp.
#include "billing/plan_store.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "billing/api_keys.hpp"
#include "billing/bundle_reads.hpp"
#include "billing/price_book.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

const char* const price_book_json =
    "json_build_object('object','price_book','id',b.id,'name',b.name,'currency',b.currency,"
    "'tier_mode',b.tier_mode,'tier_scope',b.tier_scope,"
    "'created_at',extract(epoch from b.created_at)::bigint,"
    "'versions',(SELECT json_agg(json_build_object('version',v.version,"
    "'effective_at',extract(epoch from v.effective_at)::bigint,'prices',v.prices)"
    " ORDER BY v.version) FROM price_book_versions v WHERE v.book_id = b.id))";

}  // namespace

net::awaitable<store_result> plan_store::create_price_book(price_book_spec spec,
                                                           std::string actor) {
  return one_object(
      pool_,
      std::string("WITH b AS (INSERT INTO price_books (id, name, currency, tier_mode, tier_scope)"
                  " VALUES ($1, $2, $3, $4, $5) RETURNING *),"
                  " v AS (INSERT INTO price_book_versions (book_id, version, effective_at, prices)"
                  " SELECT b.id, 1, to_timestamp($6::bigint), $7::jsonb FROM b RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, object_type, object_id, after)"
                  " SELECT $8, 'price_book.create', 'price_book', b.id, to_jsonb(b) ||"
                  " jsonb_build_object('version', 1, 'prices', v.prices) FROM b, v)"
                  " SELECT json_build_object('object','price_book','id',b.id,'name',b.name,"
                  "'currency',b.currency,'tier_mode',b.tier_mode,'tier_scope',b.tier_scope,"
                  "'created_at',extract(epoch from b.created_at)::bigint,'versions',"
                  "json_build_array(json_build_object('version',1,'effective_at',"
                  "extract(epoch from v.effective_at)::bigint,'prices',v.prices)))::text"
                  " FROM b, v"),
      {new_object_id("pb"), std::move(spec.name), std::move(spec.currency),
       std::move(spec.tier_mode), std::move(spec.tier_scope),
       std::to_string(spec.effective_at_s), std::move(spec.prices_json), std::move(actor)},
      "The price book was not created.");
}

net::awaitable<store_result> plan_store::get_price_book(std::string id) {
  return one_object(pool_,
                    std::string("SELECT ") + price_book_json + "::text FROM price_books b"
                    " WHERE b.id = $1",
                    {id}, "No price book with id " + id + ".");
}

net::awaitable<store_result> plan_store::list_price_books(page_request page) {
  return one_object(
      pool_,
      page_sql(price_book_json, "(SELECT b.*, b.id AS x_id FROM price_books b) b WHERE true", 1, 2),
      {std::to_string(page.limit), page.after}, "Nothing to list.");
}

net::awaitable<basic_result<plan_store::price_book_kind_info, store_error>>
plan_store::price_book_kind(std::string id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  const std::string sql = "SELECT tier_mode, tier_scope FROM price_books WHERE id = $1";
  std::vector<pg::param> params;
  params.emplace_back(id);
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  if (r->size() == 0) co_return store_error{404, "No price book with id " + id + ".", "not_found"};
  price_book_kind_info kind;
  kind.mode = tier_mode_of(r->text(0, 0));
  kind.scope = tier_scope_of(r->text(0, 1));
  co_return kind;
}

net::awaitable<store_result> plan_store::add_price_book_version(std::string book_id,
                                                                std::int64_t effective_at_s,
                                                                std::string prices_json,
                                                                std::string actor) {
  // The book row is locked so that two new versions cannot take the same number. A version
  // must take effect after the latest one, and not in the past: events already rated keep
  // their version. (Named locals, not temporaries, go into co_await: GCC 12 mishandles the
  // latter.)
  const std::int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  if (effective_at_s < now_s) {
    co_return store_error{400,
                          "effective_at must not be in the past (now is " + std::to_string(now_s) +
                              "): usage up to now is already rated by the version in force.",
                          "invalid_value"};
  }
  std::string latest_sql =
      "SELECT coalesce(extract(epoch from max(effective_at))::bigint, 0)::text"
      " FROM price_book_versions WHERE book_id = $1";
  std::vector<pg::param> latest_params;
  latest_params.emplace_back(book_id);
  auto latest = co_await one_object(pool_, std::move(latest_sql), std::move(latest_params), "");
  if (!latest) co_return latest;
  if (effective_at_s <= std::stoll(*latest)) {
    co_return store_error{400,
                          "effective_at must be after the latest version's (" + *latest +
                              "): versions are added in order and never replace one in force.",
                          "invalid_value"};
  }
  std::string sql =
      std::string("WITH b AS (SELECT * FROM price_books WHERE id = $1 FOR UPDATE),"
                  " last AS (SELECT coalesce(max(v.version), 0) AS n,"
                  " max(v.effective_at) AS e FROM price_book_versions v, b WHERE v.book_id = b.id),"
                  " v AS (INSERT INTO price_book_versions (book_id, version, effective_at, prices)"
                  " SELECT b.id, last.n + 1, to_timestamp($2::bigint), $3::jsonb FROM b, last"
                  " WHERE last.e IS NULL OR to_timestamp($2::bigint) > last.e RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, object_type, object_id, after)"
                  " SELECT $4, 'price_book.add_version', 'price_book', v.book_id, to_jsonb(v)"
                  " FROM v) SELECT json_build_object('object','price_book.version','price_book_id',"
                  "v.book_id,'version',v.version,'effective_at',"
                  "extract(epoch from v.effective_at)::bigint,'prices',v.prices)::text FROM v");
  std::vector<pg::param> params;
  params.emplace_back(book_id);
  params.emplace_back(std::to_string(effective_at_s));
  params.emplace_back(std::move(prices_json));
  params.emplace_back(std::move(actor));
  std::string not_found =
      "No price book with id " + book_id + " (or a newer version was added meanwhile).";
  co_return co_await one_object(pool_, std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> plan_store::set_tenant_plan(plan_spec spec, std::string actor) {
  pg::param discount, mode;
  if (spec.batch_discount_bp) discount = std::to_string(*spec.batch_discount_bp);
  if (spec.settlement_mode) mode = *spec.settlement_mode;
  // The rules (first plan at once, price changes at the next period) live in the function.
  return one_object(pool_,
                    "SELECT tollgate_set_tenant_plan($1, $2, $3::integer, $4, $5::jsonb, $6)::text",
                    {std::move(spec.tenant_id), std::move(spec.book_id), discount, mode,
                     std::move(spec.terms_json), std::move(actor)},
                    "The tenant or price book named does not exist.");
}

net::awaitable<store_result> plan_store::get_tenant_plan(std::string tenant_id) {
  return one_object(pool_, "SELECT tollgate_tenant_plan_json($1)::text", {tenant_id},
                    "Tenant " + tenant_id + " has no plan.");
}

net::awaitable<basic_result<period_usage, store_error>> plan_store::load_plan(
    std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  const std::string plan_sql =
      "SELECT p.book_id, b.currency, b.tier_mode, b.tier_scope, p.batch_discount_bp,"
      " p.terms::text FROM tenant_plans p JOIN price_books b ON b.id = p.book_id"
      " WHERE p.tenant_id = $1"
      " AND p.from_period = tollgate_plan_period($1, $2)";
  std::vector<pg::param> plan_params;
  plan_params.emplace_back(tenant_id);
  plan_params.emplace_back(period);
  auto plan = co_await (*conn)->query(plan_sql, std::move(plan_params));
  if (!plan) co_return store_error_from(plan.error());
  if (plan->size() == 0) {
    co_return store_error{404, "Tenant " + tenant_id + " has no plan (POST /admin/v1/tenants/" +
                                   tenant_id + "/plan).",
                          "not_found"};
  }
  period_usage in;
  in.tenant_id = tenant_id;
  in.book_id = std::string(plan->text(0, 0));
  in.currency = std::string(plan->text(0, 1));
  in.tier_mode = std::string(plan->text(0, 2));
  in.tier_scope = std::string(plan->text(0, 3));
  in.batch_discount_bp = static_cast<int>(plan->int64(0, 4));
  {
    // Checked when set; terms that no longer parse are none.
    const std::string terms_text(plan->text(0, 5));
    const auto doc = json::document::parse(terms_text);
    if (doc) {
      if (auto terms = parse_plan_terms(doc->root())) in.terms = std::move(*terms);
    }
  }
  const std::string versions_sql =
      "SELECT version, prices::text FROM price_book_versions WHERE book_id = $1"
      " ORDER BY effective_at";
  std::vector<pg::param> versions_params;
  versions_params.emplace_back(in.book_id);
  auto versions = co_await (*conn)->query(versions_sql, std::move(versions_params));
  if (!versions) co_return store_error_from(versions.error());
  for (int i = 0; i < versions->size(); ++i) {
    in.versions.push_back({static_cast<int>(versions->int64(i, 0)),
                           std::string(versions->text(i, 1))});
  }
  co_return in;
}

net::awaitable<basic_result<period_usage, store_error>> plan_store::load_period_totals(
    period_usage plan, std::string period) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  plan.period = std::move(period);
  plan.rows.clear();
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  // Totals per version in force at each event (0: before the first), model, batch flag and
  // prompt size: the context band thresholds of the book's versions cut the prompts into
  // ranges, each row's prompts lie in one (prompt_above: the threshold below them, 0: none).
  // The classes split the tokens as rating_event::set_tokens does.
  std::set<std::int64_t> thresholds;
  for (const auto& v : plan.versions) {
    auto prices = parse_stored_prices(v.prices_json, plan.tier_mode, plan.tier_scope);
    if (!prices) continue;
    for (const auto& m : *prices) {
      for (const auto& b : m.bands) thresholds.insert(b.above_tokens);
    }
  }
  // The threshold below each prompt: width_bucket counts the thresholds at or below
  // prompt_tokens - 1 (those a prompt is above); a book without bands has none.
  const char* const prompt_above =
      thresholds.empty() ? " 0::bigint,"
                         : " coalesce(($5::bigint[])[width_bucket(e.prompt_tokens - 1,"
                           " $5::bigint[])], 0),";
  const std::string totals_sql =
      std::string(
          "WITH v AS (SELECT version, effective_at, lead(effective_at) OVER (ORDER BY"
          " effective_at) AS next FROM price_book_versions WHERE book_id = $2)"
          " SELECT coalesce(v.version, 0), e.model, e.batch,") +
      prompt_above +
      // Less the tokens token bundles paid for (billing/token_bundles): not priced here.
      " sum(e.prompt_tokens - ca - cw - im - au - coalesce(e.bundle_input_tokens, 0)),"
      " sum(ca - coalesce(e.bundle_cached_tokens, 0)),"
      " sum(e.completion_tokens - ao - coalesce(e.bundle_output_tokens, 0)),"
      " sum(cw - coalesce(e.bundle_cache_write_tokens, 0)),"
      " sum(im - coalesce(e.bundle_image_tokens, 0)),"
      " sum(au - coalesce(e.bundle_audio_prompt_tokens, 0)),"
      " sum(ao - coalesce(e.bundle_audio_completion_tokens, 0)),"
      " count(*) FILTER (WHERE e.status BETWEEN 200 AND 299)"
      " FROM usage_events e LEFT JOIN v ON e.occurred_at >= v.effective_at"
      " AND (v.next IS NULL OR e.occurred_at < v.next)"
      " CROSS JOIN LATERAL (SELECT least(e.cached_prompt_tokens, e.prompt_tokens) AS ca) s1"
      " CROSS JOIN LATERAL (SELECT least(e.cache_write_tokens, e.prompt_tokens - ca) AS cw) s2"
      " CROSS JOIN LATERAL (SELECT least(e.image_prompt_tokens, e.prompt_tokens - ca - cw)"
      " AS im) s3"
      " CROSS JOIN LATERAL (SELECT least(e.audio_prompt_tokens, e.prompt_tokens - ca - cw - im)"
      " AS au, least(e.audio_completion_tokens, e.completion_tokens) AS ao) s4"
      " WHERE e.tenant_id = $1 AND e.occurred_at >= to_timestamp($3::bigint)"
      " AND e.occurred_at < to_timestamp($4::bigint)"
      " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
  std::string threshold_array = "{";
  for (const std::int64_t t : thresholds) {
    if (threshold_array.size() > 1) threshold_array += ',';
    threshold_array += std::to_string(t);
  }
  threshold_array += '}';
  std::vector<pg::param> totals_params;
  totals_params.emplace_back(plan.tenant_id);
  totals_params.emplace_back(plan.book_id);
  totals_params.emplace_back(std::to_string(bounds->first));
  totals_params.emplace_back(std::to_string(bounds->second));
  if (!thresholds.empty()) totals_params.emplace_back(std::move(threshold_array));
  auto totals = co_await (*conn)->query(totals_sql, std::move(totals_params));
  if (!totals) co_return store_error_from(totals.error());
  for (int i = 0; i < totals->size(); ++i) {
    period_usage::totals t;
    t.version = static_cast<int>(totals->int64(i, 0));
    t.model = std::string(totals->text(i, 1));
    t.batch = totals->boolean(i, 2);
    t.prompt_above = totals->int64(i, 3);
    t.input = totals->int64(i, 4);
    t.cached_input = totals->int64(i, 5);
    t.output = totals->int64(i, 6);
    t.cache_write = totals->int64(i, 7);
    t.image_input = totals->int64(i, 8);
    t.audio_input = totals->int64(i, 9);
    t.audio_output = totals->int64(i, 10);
    t.requests = totals->int64(i, 11);
    plan.rows.push_back(std::move(t));
  }
  if (plan.terms.rolls_over()) {
    // Token banking: what rolled over to later periods is not this period's allowance.
    std::vector<pg::param> rolled_params{plan.tenant_id, plan.period};
    auto rolled = co_await (*conn)->query(
        "SELECT model, token_class, rolled_over FROM rating_accumulators"
        " WHERE tenant_id = $1 AND period = $2 AND NOT batch AND rolled_over > 0",
        std::move(rolled_params));
    if (!rolled) co_return store_error_from(rolled.error());
    for (int i = 0; i < rolled->size(); ++i) {
      for (auto& a : plan.terms.allowances) {
        if (a.model != rolled->text(i, 0) || a.token_class != rolled->text(i, 1)) continue;
        a.tokens = std::max<std::int64_t>(0, a.tokens - rolled->int64(i, 2));
      }
    }
  }
  co_return plan;
}

net::awaitable<store_result> plan_store::cost_preview(std::string tenant_id,
                                                      std::string period, std::int64_t now_s,
                                                      std::vector<fee_line> bundles) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  auto plan = co_await load_plan(std::move(tenant_id), period);
  if (!plan) co_return plan.error();
  auto usage = co_await load_period_totals(std::move(*plan), std::move(period));
  if (!usage) co_return usage.error();
  std::optional<period_progress> progress;
  if (now_s >= bounds->first && now_s < bounds->second) {
    progress = period_progress{now_s - bounds->first, bounds->second - bounds->first};
  }
  co_return cost_preview_json(*usage, progress, bundles);
}

net::awaitable<basic_result<plan_store::period_forecast, store_error>> plan_store::forecast_period(
    std::string tenant_id, std::int64_t now_s) {
  std::string period = period_of(now_s);
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  auto plan = co_await load_plan(std::move(tenant_id), period);
  if (!plan) co_return plan.error();
  auto usage = co_await load_period_totals(std::move(*plan), std::move(period));
  if (!usage) co_return usage.error();
  period_forecast out;
  out.period_start_s = bounds->first;
  out.cost_micros = price_period(*usage).total_micros;
  const period_progress progress{now_s - bounds->first, bounds->second - bounds->first};
  out.forecast_micros = price_period(forecast_usage(*usage, progress)).total_micros;
  co_return out;
}

net::awaitable<pg::db_result<std::vector<std::string>>> plan_store::tenants_with_plans() {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql = "SELECT DISTINCT tenant_id FROM tenant_plans ORDER BY tenant_id";
  auto r = co_await (*conn)->query(sql);
  if (!r) co_return r.error();
  std::vector<std::string> out;
  for (int i = 0; i < r->size(); ++i) out.emplace_back(r->text(i, 0));
  co_return out;
}

// ---- seats ----------------------------------------------------------------------------------

net::awaitable<store_result> plan_store::set_tenant_seats(std::string tenant_id, std::string day,
                                                          std::int64_t seats, std::string today,
                                                          std::string actor) {
  return one_object(
      pool_, "SELECT tollgate_set_tenant_seats($1, $2::date, $3::integer, $4::date, $5)::text",
      {tenant_id, std::move(day), std::to_string(seats), std::move(today), std::move(actor)},
                    "No tenant with id " + tenant_id + ".");
}

net::awaitable<store_result> plan_store::get_tenant_seats(std::string tenant_id,
                                                          std::string day) {
  return one_object(pool_, "SELECT tollgate_tenant_seats_json($1, $2::date)::text",
                    {tenant_id, std::move(day)}, "No tenant with id " + tenant_id + ".");
}

net::awaitable<basic_result<std::int64_t, store_error>> plan_store::period_seat_days(
    std::string tenant_id, std::string period) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  constexpr std::int64_t day_s = 86'400;
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  // The changes up to the period's last day, as days since 1970-01-01.
  const std::string sql =
      "SELECT (effective_day - date '1970-01-01')::bigint, seats FROM tenant_seats"
      " WHERE tenant_id = $1 AND effective_day < date '1970-01-01' + $2::integer"
      " ORDER BY effective_day";
  std::vector<pg::param> params{tenant_id, std::to_string(bounds->second / day_s)};
  auto found = co_await (*conn)->query(sql, std::move(params));
  if (!found) co_return store_error_from(found.error());
  std::vector<seat_change> changes;
  for (int i = 0; i < found->size(); ++i) {
    changes.push_back({found->int64(i, 0), found->int64(i, 1)});
  }
  co_return seat_days(changes, bounds->first / day_s, (bounds->second - bounds->first) / day_s);
}

// ---- rating state (the cost header) ------------------------------------------------------------

net::awaitable<pg::db_result<plan_store::rating_state>> plan_store::load_rating_state(
    std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::set<std::string> tenants{tenant_id};
  auto plans = co_await rating_plans_.load(**conn, tenants);
  if (!plans) co_return plans.error();
  rating_state state;
  if (auto it = plans->find(tenant_id); it != plans->end()) {
    if (const rating_plan* p = plan_for_period(it->second, period)) state.plan = *p;
  }
  if (!state.plan) co_return state;
  const std::string acc_sql =
      "SELECT model, token_class, batch, position, charged_micros, rolled_over"
      " FROM rating_accumulators WHERE tenant_id = $1 AND period = $2";
  std::vector<pg::param> acc_params{tenant_id, period};
  auto acc = co_await (*conn)->query(acc_sql, std::move(acc_params));
  if (!acc) co_return acc.error();
  for (int i = 0; i < acc->size(); ++i) {
    accumulator_state& a = state.accumulators[{tenant_id, period, std::string(acc->text(i, 0)),
                                               std::string(acc->text(i, 1)), acc->boolean(i, 2)}];
    a.position = acc->int64(i, 3);
    a.charged_micros = acc->int64(i, 4);
    if (!acc->is_null(i, 5)) a.rolled_over = acc->int64(i, 5);
  }
  const std::string bundle_sql = bundles_sql(false);  // named: it outlives the co_await
  std::vector<pg::param> bundle_params;
  bundle_params.emplace_back(pg::text_array(tenants));
  auto bundles = co_await (*conn)->query(bundle_sql, std::move(bundle_params));
  if (!bundles) co_return bundles.error();
  if (auto found = bundles_of(*bundles); !found.empty()) {
    state.bundles = std::move(found.begin()->second);
  }
  co_return state;
}

}  // namespace tollgate::billing
