// The credit store: see credit_store.hpp.
#include "billing/credit_store.hpp"

#include <map>
#include <utility>

#include "billing/api_keys.hpp"
#include "billing/webhook_deliveries.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

// A grant with its balance (g: credit_grants, a: its account).
const char* const credit_grant_json =
    "json_build_object('object','credit_grant','id',g.id,'tenant_id',g.tenant_id,'kind',g.kind,"
    "'amount_micros',g.amount_micros,'price_paid_micros',g.price_paid_micros,"
    "'balance_micros',a.balance_micros,"
    "'effective_at',extract(epoch from g.effective_at)::bigint,"
    "'expires_at',extract(epoch from g.expires_at)::bigint,"
    "'expired',coalesce(g.expires_at <= now(), false),'priority',g.priority,'models',g.models,"
    "'memo',g.memo,'created_at',extract(epoch from g.created_at)::bigint,"
    "'token_class',g.bundle_token_class,'tokens',g.bundle_tokens,"
    "'tokens_left',CASE WHEN g.kind IN ('bundle', 'rollover') THEN a.tokens_balance END,"
    "'rolled_over_from',g.rolled_over_from,"
    "'price_per_million_micros',g.bundle_price_per_million_micros,"
    "'project_ids',g.bundle_project_ids)";

// Drawdown order.
const char* const drawdown_order = "g.priority, g.expires_at NULLS LAST, g.effective_at, g.id";

}  // namespace

net::awaitable<store_result> credit_store::grant_credit(credit_grant_spec spec,
                                                        std::string actor) {
  const bool given_id = !spec.id.empty();
  const std::string id = given_id ? spec.id : new_object_id("cg");
  pg::param price_paid, expires, models;
  if (spec.price_paid_micros) price_paid = std::to_string(*spec.price_paid_micros);
  if (spec.expires_at_s) expires = std::to_string(*spec.expires_at_s);
  if (spec.models) models = pg::text_array(*spec.models);
  std::string sql =
      "WITH f AS (SELECT tollgate_grant_credit($1, $2, $3, $4::bigint, $5::bigint,"
      " to_timestamp($6::bigint), to_timestamp($7::bigint), $8::integer, $9::text[],"
      " nullif($10, '')) AS done)"
      " INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, after)"
      " SELECT $11, 'credit.grant', $2, 'credit_grant', $1, jsonb_build_object('kind', $3,"
      " 'amount_micros', $4::bigint, 'price_paid_micros', $5::bigint) FROM f"
      " RETURNING object_id";
  std::vector<pg::param> params;
  params.emplace_back(id);
  params.emplace_back(spec.tenant_id);
  params.emplace_back(spec.kind);
  params.emplace_back(std::to_string(spec.amount_micros));
  params.emplace_back(price_paid);
  params.emplace_back(std::to_string(spec.effective_at_s));
  params.emplace_back(expires);
  params.emplace_back(std::to_string(spec.priority));
  params.emplace_back(models);
  params.emplace_back(spec.memo);
  params.emplace_back(std::move(actor));
  auto made =
      co_await one_object(pool_, std::move(sql), std::move(params), "The grant was not made.");
  if (!made && made.error().status == 409 && given_id) {
    // A retry with the same id: the grant made the first time, if it is this one.
    auto existing = co_await get_credit_grant(id);
    if (!existing) co_return existing;
    const auto doc = json::document::parse(*existing);
    if (doc && doc->root().find("tenant_id").as_string() == spec.tenant_id &&
        doc->root().find("amount_micros").as_int64() == spec.amount_micros &&
        doc->root().find("kind").as_string() == spec.kind) {
      co_return existing;
    }
    co_return store_error{409, "A different grant already has the id " + id + ".", "conflict"};
  }
  if (!made) co_return made.error();
  co_return co_await get_credit_grant(id);
}

net::awaitable<store_result> credit_store::grant_bundle(token_bundle_spec spec,
                                                        std::string actor) {
  const bool given_id = !spec.id.empty();
  const std::string id = given_id ? spec.id : new_object_id("cg");
  pg::param expires;
  if (spec.expires_at_s) expires = std::to_string(*spec.expires_at_s);
  std::string sql =
      "WITH f AS (SELECT tollgate_grant_bundle($1, $2, $3, $4, $5::bigint, $6::bigint,"
      " to_timestamp($7::bigint), to_timestamp($8::bigint), $9::integer, nullif($10, ''),"
      " $12::text[]) AS done)"
      " INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, after)"
      " SELECT $11, 'credit.bundle', $2, 'credit_grant', $1, jsonb_build_object('model', $3,"
      " 'token_class', $4, 'tokens', $5::bigint, 'price_per_million_micros', $6::bigint,"
      " 'project_ids', $12::text[]) FROM f"
      " RETURNING object_id";
  std::vector<pg::param> params;
  params.emplace_back(id);
  params.emplace_back(spec.tenant_id);
  params.emplace_back(spec.model);
  params.emplace_back(spec.token_class);
  params.emplace_back(std::to_string(spec.tokens));
  params.emplace_back(std::to_string(spec.price_per_million_micros));
  params.emplace_back(std::to_string(spec.effective_at_s));
  params.emplace_back(expires);
  params.emplace_back(std::to_string(spec.priority));
  params.emplace_back(spec.memo);
  params.emplace_back(std::move(actor));
  pg::param projects;  // NULL: every project
  if (!spec.project_ids.empty()) projects = pg::text_array(spec.project_ids);
  params.emplace_back(std::move(projects));
  auto made =
      co_await one_object(pool_, std::move(sql), std::move(params), "The bundle was not made.");
  if (!made && made.error().status == 409 && given_id) {
    // A retry with the same id: the bundle made the first time, if it is this one.
    auto existing = co_await get_credit_grant(id);
    if (!existing) co_return existing;
    const auto doc = json::document::parse(*existing);
    if (doc && doc->root().find("tenant_id").as_string() == spec.tenant_id &&
        doc->root().find("kind").as_string() == "bundle" &&
        doc->root().find("tokens").as_int64() == spec.tokens &&
        doc->root().find("token_class").as_string() == spec.token_class) {
      co_return existing;
    }
    co_return store_error{409, "A different grant already has the id " + id + ".", "conflict"};
  }
  if (!made) co_return made.error();
  co_return co_await get_credit_grant(id);
}

net::awaitable<basic_result<std::vector<fee_line>, store_error>> credit_store::bundle_lines(
    std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  // What bundles and rolled-over allowances paid for in the period's drawdowns, and in the
  // drawdowns of late usage of earlier periods stored after their invoices were finalized
  // (like applied_credits), in drawdown order; then the period's own unused allowances that
  // rolled over to later periods.
  const std::string sql =
      std::string(
          "(SELECT g.id, g.kind, g.models[1], g.bundle_token_class,"
          " g.bundle_price_per_million_micros, -sum(coalesce(e.tokens, 0)),"
          " -sum(e.amount_micros), t.period FROM credit_transfers t"
          " JOIN credit_entries e ON e.transfer_id = t.id"
          " JOIN credit_accounts a ON a.id = e.account_id AND a.kind = 'grant'"
          " JOIN credit_grants g ON g.id = a.grant_id AND g.kind IN ('bundle', 'rollover')"
          " LEFT JOIN invoices f ON f.tenant_id = t.tenant_id AND f.period = t.period"
          " AND f.status = 'finalized'"
          " WHERE t.tenant_id = $1 AND t.kind = 'drawdown' AND (t.period = $2"
          " OR (t.period < $2 AND t.occurred_at > f.finalized_at))"
          " GROUP BY t.period, g.id, g.kind, g.models, g.bundle_token_class,"
          " g.bundle_price_per_million_micros, g.priority, g.expires_at, g.effective_at"
          " ORDER BY t.period = $2 DESC, t.period, ") +
      drawdown_order +
      ") UNION ALL (SELECT g.id, 'rolled_over', g.models[1], g.bundle_token_class, 0,"
      " g.bundle_tokens, 0, $2 FROM credit_grants g WHERE g.tenant_id = $1"
      " AND g.kind = 'rollover' AND g.rolled_over_from = $2"
      " ORDER BY g.models[1], g.bundle_token_class)";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  auto found = co_await (*conn)->query(sql, std::move(params));
  if (!found) co_return store_error_from(found.error());
  // What finalized invoices of other periods listed of late draws, per period and grant.
  const std::string listed_sql =
      "SELECT f->>'period', f->>'bundle_id', sum((f->>'quantity')::bigint),"
      " sum((f->>'amount_micros')::bigint) FROM invoices i, jsonb_array_elements(i.fees) f"
      " WHERE i.tenant_id = $1 AND i.status = 'finalized' AND i.period <> $2"
      " AND f ? 'period' GROUP BY 1, 2";
  std::vector<pg::param> listed_params;
  listed_params.emplace_back(tenant_id);
  listed_params.emplace_back(period);
  auto listed = co_await (*conn)->query(listed_sql, std::move(listed_params));
  if (!listed) co_return store_error_from(listed.error());
  std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, std::int64_t>> before;
  for (int i = 0; i < listed->size(); ++i) {
    before[{std::string(listed->text(i, 0)), std::string(listed->text(i, 1))}] = {
        listed->int64(i, 2), listed->int64(i, 3)};
  }
  std::vector<fee_line> out;
  for (int i = 0; i < found->size(); ++i) {
    fee_line f;
    if (found->text(i, 7) != period) {
      f.period = std::string(found->text(i, 7));
      const auto it = before.find({f.period, std::string(found->text(i, 0))});
      if (it != before.end()) {
        f.quantity = -it->second.first;
        f.amount_micros = -it->second.second;
      }
    }
    const std::string_view kind = found->text(i, 1);
    f.kind = kind == "bundle"     ? "token_bundle"
             : kind == "rollover" ? "allowance_rollover_in"
                                  : "allowance_rollover_out";
    f.bundle_id = std::string(found->text(i, 0));
    f.model = std::string(found->text(i, 2));
    f.token_class = std::string(found->text(i, 3));
    f.unit_amount_micros = found->int64(i, 4);
    f.quantity += found->int64(i, 5);
    f.amount_micros += found->int64(i, 6);
    if (f.quantity != 0 || f.amount_micros != 0) out.push_back(std::move(f));
  }
  co_return out;
}

net::awaitable<store_result> credit_store::set_auto_top_up(auto_top_up_spec spec,
                                                           std::string actor) {
  pg::param url;
  if (spec.webhook_url) url = *spec.webhook_url;
  std::string sql =
      "WITH c AS (INSERT INTO credit_auto_top_ups (tenant_id, threshold_micros, amount_micros,"
      " price_paid_micros, webhook_url, webhook_secret)"
      " SELECT $1, $2::bigint, $3::bigint, $4::bigint, $5::text,"
      " CASE WHEN $5::text IS NOT NULL THEN $6 END"
      " WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)"
      " ON CONFLICT (tenant_id) DO UPDATE SET threshold_micros = EXCLUDED.threshold_micros,"
      " amount_micros = EXCLUDED.amount_micros, price_paid_micros = EXCLUDED.price_paid_micros,"
      " webhook_url = EXCLUDED.webhook_url, webhook_secret = CASE WHEN EXCLUDED.webhook_url IS"
      " NULL THEN NULL ELSE coalesce(credit_auto_top_ups.webhook_secret,"
      " EXCLUDED.webhook_secret) END, updated_at = now() RETURNING *)"
      " INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id, after)"
      " SELECT $7, 'credit.auto_top_up.set', c.tenant_id, 'auto_top_up', c.tenant_id,"
      " to_jsonb(c) - 'webhook_secret' FROM c RETURNING object_id";
  std::vector<pg::param> params;
  params.emplace_back(spec.tenant_id);
  params.emplace_back(std::to_string(spec.threshold_micros));
  params.emplace_back(std::to_string(spec.amount_micros));
  params.emplace_back(std::to_string(spec.price_paid_micros));
  params.emplace_back(url);
  params.emplace_back(new_webhook_secret());
  params.emplace_back(std::move(actor));
  auto made = co_await one_object(pool_, std::move(sql), std::move(params),
                                  "No tenant with id " + spec.tenant_id + ".");
  if (!made) co_return made.error();
  co_return co_await get_auto_top_up(spec.tenant_id);
}

net::awaitable<store_result> credit_store::get_auto_top_up(std::string tenant_id) {
  std::string sql =
      "SELECT json_build_object('object','auto_top_up','tenant_id',c.tenant_id,"
      "'threshold_micros',c.threshold_micros,'amount_micros',c.amount_micros,"
      "'price_paid_micros',c.price_paid_micros,'webhook_url',c.webhook_url,"
      "'webhook_secret',c.webhook_secret,'top_ups',coalesce((SELECT json_agg(json_build_object("
      "'id',u.id,'grant_id',u.grant_id,'balance_before_micros',u.balance_before,"
      "'balance_after_micros',u.balance_after,'status',u.status,'attempts',u.attempts,"
      "'created_at',extract(epoch from u.created_at)::bigint) ORDER BY u.created_at DESC, u.id)"
      " FROM credit_top_ups u WHERE u.tenant_id = c.tenant_id), '[]'::json))::text"
      " FROM credit_auto_top_ups c WHERE c.tenant_id = $1";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  co_return co_await one_object(pool_, std::move(sql), std::move(params),
                                "No auto top-up is set for " + tenant_id + ".");
}

net::awaitable<pg::db_result<std::vector<metering::alert_delivery>>>
credit_store::claim_top_up_webhooks(int limit, std::int64_t lease_ms) {
  // Each top-up is signed with its tenant's auto top-up secret.
  const delivery_source top_ups{"credit_top_ups", "", "",
                                "coalesce((SELECT c.webhook_secret FROM credit_auto_top_ups c"
                                " WHERE c.tenant_id = x.tenant_id), '')"};
  co_return co_await claim_deliveries(pool_, top_ups, limit, lease_ms);
}

net::awaitable<pg::db_result<bool>> credit_store::finish_top_up_webhook(std::string id,
                                                                       std::string status,
                                                                       std::string error,
                                                                       std::int64_t retry_in_ms) {
  co_return co_await finish_delivery(pool_, "credit_top_ups", std::move(id), std::move(status),
                                     std::move(error), retry_in_ms);
}

net::awaitable<store_result> credit_store::get_credit_grant(std::string id) {
  std::string sql = std::string("SELECT ") + credit_grant_json +
                    "::text FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id"
                    " WHERE g.id = $1";
  std::vector<pg::param> params;
  params.emplace_back(id);
  co_return co_await one_object(pool_, std::move(sql), std::move(params),
                                "No credit grant with id " + id + ".");
}

net::awaitable<store_result> credit_store::credit_balance(std::string tenant_id) {
  std::string sql =
      std::string(
          "SELECT CASE WHEN EXISTS (SELECT 1 FROM tenants WHERE id = $1) THEN"
          " json_build_object('object','credit_balance','tenant_id',$1::text,"
          "'available_micros',(SELECT coalesce(sum(a.balance_micros), 0) FROM credit_grants g"
          " JOIN credit_accounts a ON a.grant_id = g.id WHERE g.tenant_id = $1"
          " AND g.kind <> 'bundle'"
          " AND g.effective_at <= now() AND (g.expires_at IS NULL OR g.expires_at > now())),"
          "'used_micros',(SELECT coalesce(max(balance_micros), 0) FROM credit_accounts"
          " WHERE id = 'usage:' || $1),"
          "'expired_micros',(SELECT coalesce(max(balance_micros), 0) FROM credit_accounts"
          " WHERE id = 'breakage:' || $1),"
          "'granted_micros',(SELECT coalesce(-max(balance_micros), 0) FROM credit_accounts"
          " WHERE id = 'funding:' || $1),"
          "'grants',(SELECT coalesce(json_agg(") +
      credit_grant_json + " ORDER BY " + drawdown_order +
      "), '[]'::json) FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id"
      " WHERE g.tenant_id = $1)) END::text";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  co_return co_await one_object(pool_, std::move(sql), std::move(params),
                                "No tenant with id " + tenant_id + ".");
}

net::awaitable<store_result> credit_store::credit_transfers(std::string tenant_id,
                                                            page_request page) {
  std::string sql =
      "SELECT CASE WHEN EXISTS (SELECT 1 FROM tenants WHERE id = $1) THEN"
      " json_build_object('object','list','data',coalesce((SELECT json_agg(x.obj ORDER BY"
      " x.occurred_at DESC, x.id DESC) FROM (SELECT t.id, t.occurred_at,"
      " json_build_object('object','credit_transfer','id',t.id,'kind',t.kind,'period',t.period,"
      "'occurred_at',extract(epoch from t.occurred_at)::bigint,'entries',(SELECT"
      " json_agg(json_build_object('account',e.account_id,'amount_micros',e.amount_micros)"
      " ORDER BY e.account_id) FROM credit_entries e WHERE e.transfer_id = t.id)) AS obj"
      " FROM credit_transfers t WHERE t.tenant_id = $1 ORDER BY t.occurred_at DESC, t.id DESC"
      " LIMIT $2::int) x), '[]'::json)) END::text";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(std::to_string(page.limit));
  co_return co_await one_object(pool_, std::move(sql), std::move(params),
                                "No tenant with id " + tenant_id + ".");
}

net::awaitable<store_result> credit_store::expire_credits(std::int64_t at_s) {
  std::string sql =
      "SELECT json_build_object('object','credit_expiry','expired',"
      "tollgate_expire_credits(to_timestamp($1::bigint)))::text";
  std::vector<pg::param> params;
  params.emplace_back(std::to_string(at_s));
  co_return co_await one_object(pool_, std::move(sql), std::move(params), "");
}

net::awaitable<basic_result<std::vector<credit_store::applied_credit>, store_error>>
credit_store::applied_credits(std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  const std::string drawn_sql =
      std::string(
          "SELECT t.period, g.id, g.kind, -sum(e.amount_micros) FROM credit_transfers t"
          " JOIN credit_entries e ON e.transfer_id = t.id"
          " JOIN credit_accounts a ON a.id = e.account_id AND a.kind = 'grant'"
          " JOIN credit_grants g ON g.id = a.grant_id"
          " LEFT JOIN invoices f ON f.tenant_id = t.tenant_id AND f.period = t.period"
          " AND f.status = 'finalized'"
          " WHERE t.tenant_id = $1 AND t.kind IN ('drawdown', 'true_up') AND (t.period = $2"
          " OR (t.period < $2 AND t.occurred_at > f.finalized_at))"
          " GROUP BY t.period, g.id, g.kind, g.priority, g.expires_at, g.effective_at"
          " HAVING sum(e.amount_micros) <> 0"
          " ORDER BY t.period = $2 DESC, t.period, g.kind <> 'bundle', ") +
      drawdown_order;
  std::vector<pg::param> drawn_params;
  drawn_params.emplace_back(tenant_id);
  drawn_params.emplace_back(period);
  auto drawn = co_await (*conn)->query(drawn_sql, std::move(drawn_params));
  if (!drawn) co_return store_error_from(drawn.error());
  // What finalized invoices of other periods applied of late credit, per period and grant.
  const std::string listed_sql =
      "SELECT c->>'period', c->>'grant_id', sum((c->>'amount_micros')::bigint)"
      " FROM invoices i, jsonb_array_elements(i.credits) c WHERE i.tenant_id = $1"
      " AND i.status = 'finalized' AND i.period <> $2 AND c->>'period' <> i.period"
      " GROUP BY 1, 2";
  std::vector<pg::param> listed_params;
  listed_params.emplace_back(tenant_id);
  listed_params.emplace_back(period);
  auto listed = co_await (*conn)->query(listed_sql, std::move(listed_params));
  if (!listed) co_return store_error_from(listed.error());
  std::map<std::pair<std::string, std::string>, std::int64_t> applied_before;
  for (int i = 0; i < listed->size(); ++i) {
    applied_before[{std::string(listed->text(i, 0)), std::string(listed->text(i, 1))}] +=
        listed->int64(i, 2);
  }
  std::vector<applied_credit> out;
  for (int i = 0; i < drawn->size(); ++i) {
    applied_credit c;
    c.period = std::string(drawn->text(i, 0));
    c.grant_id = std::string(drawn->text(i, 1));
    c.kind = std::string(drawn->text(i, 2));
    c.amount_micros = drawn->int64(i, 3);
    if (c.period != period) {
      const auto it = applied_before.find({c.period, c.grant_id});
      if (it != applied_before.end()) c.amount_micros -= it->second;
    }
    if (c.amount_micros != 0) out.push_back(std::move(c));
  }
  co_return out;
}

}  // namespace tollgate::billing
