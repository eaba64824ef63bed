// The account store: see account_store.hpp.
#include "billing/account_store.hpp"

#include "billing/period_pricing.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>

#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

constexpr std::string_view base62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::string_view api_key_prefix = "tg-";
constexpr std::size_t api_key_random_bytes = 32;
constexpr std::size_t api_key_body_chars = 43;  // ceil(256 / log2(62))
constexpr std::size_t key_display_chars = 8;    // "tg-" + 8 characters are kept for display

void random_bytes(unsigned char* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    // The RNG failing is not an operating condition to handle: nothing secure can follow.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
}

// Base62 of a big-endian byte string, left-padded with '0' to `width` characters.
std::string to_base62(std::vector<unsigned char> num, std::size_t width) {
  std::string out;
  while (true) {
    bool zero = true;
    unsigned rem = 0;
    for (auto& b : num) {
      const unsigned cur = rem * 256 + b;
      b = static_cast<unsigned char>(cur / 62);
      rem = cur % 62;
      if (b != 0) zero = false;
    }
    out.push_back(base62[rem]);
    if (zero) break;
  }
  while (out.size() < width) out.push_back('0');
  return {out.rbegin(), out.rend()};
}

std::string hex_bytea(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "\\x";
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

store_error unavailable(const pg::db_error& e) {
  return {503, "The ledger database is unavailable: " + e.message, "database_unavailable"};
}

store_error from_db(const pg::db_error& e) {
  if (e.sqlstate == "23505") return {409, "An object with that identity already exists.", "conflict"};
  if (e.sqlstate == "23503") {
    return {404, "The tenant or project named does not exist.", "not_found"};
  }
  if (e.sqlstate == "23514" || e.sqlstate == "22P02" || e.sqlstate == "22023" ||
      e.sqlstate == "22008" || e.sqlstate == "22003") {
    return {400, "Invalid value: " + e.message, "invalid_value"};
  }
  if (e.sqlstate.empty()) return unavailable(e);
  return {500, "database error: " + e.message, "database_error"};
}

const char* const tenant_json =
    "json_build_object('object','tenant','id',t.id,'name',t.name,'status',t.status,"
    "'time_zone',t.time_zone,'created_at',extract(epoch from t.created_at)::bigint)";
const char* const project_json =
    "json_build_object('object','project','id',p.id,'tenant_id',p.tenant_id,'name',p.name,"
    "'status',p.status,'created_at',extract(epoch from p.created_at)::bigint)";
const char* const key_json =
    "json_build_object('object','api_key','id',k.id,'tenant_id',k.tenant_id,"
    "'project_id',k.project_id,'name',k.name,'redacted_value',k.prefix || '...',"
    "'status',CASE WHEN k.status = 'active' AND k.expires_at IS NOT NULL AND k.expires_at <= now()"
    " THEN 'expired' ELSE k.status END,'allowed_models',k.allowed_models,"
    "'created_at',extract(epoch from k.created_at)::bigint,"
    "'expires_at',extract(epoch from k.expires_at)::bigint,"
    "'revoked_at',extract(epoch from k.revoked_at)::bigint)";

std::string page_sql(const std::string& object_sql, const std::string& from_where,
                     int limit_param, int after_param) {
  const std::string L = "$" + std::to_string(limit_param);
  const std::string A = "$" + std::to_string(after_param);
  return "WITH page AS (SELECT " + object_sql + " AS obj, x_id FROM " + from_where + " AND (" + A +
         "::text = '' OR x_id > " + A + ") ORDER BY x_id LIMIT " + L +
         "::int + 1), numbered AS (SELECT obj, x_id, row_number() OVER (ORDER BY x_id) AS rn "
         "FROM page) SELECT json_build_object('object','list','data',coalesce((SELECT "
         "json_agg(obj ORDER BY x_id) FROM numbered WHERE rn <= " +
         L + "::int),'[]'::json),'first_id',(SELECT min(x_id) FROM numbered WHERE rn <= " + L +
         "::int),'last_id',(SELECT max(x_id) FROM numbered WHERE rn <= " + L +
         "::int),'has_more',(SELECT count(*) FROM page) > " + L + "::int)::text";
}

}  // namespace

store_error store_error_from(const pg::db_error& e) { return from_db(e); }

std::string new_api_key() {
  std::vector<unsigned char> bytes(api_key_random_bytes);
  random_bytes(bytes.data(), bytes.size());
  return std::string(api_key_prefix) + to_base62(std::move(bytes), api_key_body_chars);
}

std::string new_webhook_secret() {
  std::vector<unsigned char> bytes(api_key_random_bytes);
  random_bytes(bytes.data(), bytes.size());
  return "whsec_" + to_base62(std::move(bytes), api_key_body_chars);
}

bool is_well_formed_api_key(std::string_view key) {
  if (key.size() != api_key_prefix.size() + api_key_body_chars) return false;
  if (key.substr(0, api_key_prefix.size()) != api_key_prefix) return false;
  for (char c : key.substr(api_key_prefix.size())) {
    if (base62.find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::string sha256_bytes(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string new_object_id(std::string_view prefix) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::vector<unsigned char> t(8);
  for (int i = 7; i >= 0; --i) t[static_cast<std::size_t>(7 - i)] =
      static_cast<unsigned char>((static_cast<std::uint64_t>(ms) >> (8 * i)) & 0xff);
  std::vector<unsigned char> r(6);
  random_bytes(r.data(), r.size());
  return std::string(prefix) + "_" + to_base62(std::move(t), 10).substr(0, 10) +
         to_base62(std::move(r), 9).substr(0, 8);
}

net::awaitable<pg::db_result<std::optional<key_info>>> account_store::find_key(
    std::string key_sha256) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "SELECT k.id, k.tenant_id, coalesce(k.project_id, ''), k.status, t.status,"
      " coalesce(p.status, 'active'),"
      " coalesce((extract(epoch from k.expires_at) * 1000)::bigint, 0),"
      " k.allowed_models IS NOT NULL, array_to_string(k.allowed_models, E'\\n')"
      " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
      " LEFT JOIN projects p ON p.tenant_id = k.tenant_id AND p.id = k.project_id"
      " WHERE k.key_sha256 = $1::bytea";
  std::vector<pg::param> params{hex_bytea(key_sha256)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  if (r->size() == 0) co_return std::optional<key_info>{};
  key_info k;
  k.key_id = r->text(0, 0);
  k.tenant_id = r->text(0, 1);
  k.project_id = r->text(0, 2);
  if (r->text(0, 3) != "active") {
    k.inactive_reason = "revoked";
  } else if (r->text(0, 4) != "active") {
    k.inactive_reason = "tenant_disabled";
  } else if (r->text(0, 5) != "active") {
    k.inactive_reason = "project_disabled";
  }
  k.active = k.inactive_reason.empty();
  k.expires_at_ms = r->int64(0, 6);
  if (r->boolean(0, 7)) {
    std::vector<std::string> models;
    const std::string_view list = r->text(0, 8);
    std::size_t at = 0;
    while (at <= list.size() && !list.empty()) {
      const auto nl = list.find('\n', at);
      models.emplace_back(list.substr(at, nl == std::string_view::npos ? nl : nl - at));
      if (nl == std::string_view::npos) break;
      at = nl + 1;
    }
    k.allowed_models = std::move(models);
  }
  co_return std::optional<key_info>{std::move(k)};
}

net::awaitable<store_result> account_store::one_object(std::string sql,
                                                       std::vector<pg::param> params,
                                                       std::string not_found) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return from_db(r.error());
  if (r->size() == 0 || r->is_null(0, 0)) co_return store_error{404, not_found, "not_found"};
  co_return std::string(r->text(0, 0));
}

net::awaitable<store_result> account_store::tenant_page(const char* object_json,
                                                        const std::string& table,
                                                        const std::string& alias,
                                                        std::string tenant_id,
                                                        page_request page) {
  const std::string& a = alias;
  return one_object(page_sql(object_json,
                             "(SELECT " + a + ".*, " + a + ".id AS x_id FROM " + table + " " + a +
                                 ") " + a + " WHERE ($3::text = '' OR " + a + ".tenant_id = $3)",
                             1, 2),
                    {std::to_string(page.limit), page.after, std::move(tenant_id)},
                    "Nothing to list.");
}

// ---- tenants ---------------------------------------------------------------------------------

net::awaitable<store_result> account_store::create_tenant(std::string name,
                                                          std::optional<std::string> time_zone,
                                                          std::string actor) {
  // AT TIME ZONE refuses an unknown zone (SQLSTATE 22023, a 400).
  return one_object(
      std::string("WITH t AS (INSERT INTO tenants (id, name, time_zone) SELECT $1, $2,"
                  " coalesce($4, 'UTC') WHERE (now() AT TIME ZONE coalesce($4, 'UTC')) IS NOT NULL"
                  " RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $3, 'tenant.create', t.id, 'tenant', t.id, to_jsonb(t) FROM t)"
                  " SELECT ") +
          tenant_json + "::text FROM t",
      {new_object_id("ten"), std::move(name), std::move(actor), std::move(time_zone)},
      "Tenant not created");
}

net::awaitable<store_result> account_store::get_tenant(std::string id) {
  return one_object(
      std::string("SELECT ") + tenant_json + "::text FROM tenants t WHERE t.id = $1", {id},
      "No tenant with id " + id + ".");
}

net::awaitable<store_result> account_store::list_tenants(page_request page) {
  return one_object(
      page_sql(tenant_json, "(SELECT t.*, t.id AS x_id FROM tenants t) t WHERE true", 1, 2),
      {std::to_string(page.limit), page.after}, "No tenants.");
}

net::awaitable<store_result> account_store::update_tenant(std::string id,
                                                          std::optional<std::string> name,
                                                          std::optional<std::string> status,
                                                          std::optional<std::string> time_zone,
                                                          std::string actor) {
  return one_object(
      // b (the row before, locked) is read first because the UPDATE joins it.
      std::string("WITH b AS (SELECT * FROM tenants WHERE id = $1 FOR UPDATE),"
                  " t AS (UPDATE tenants SET name = coalesce($2, b.name),"
                  " status = coalesce($3, b.status), time_zone = coalesce($5, b.time_zone),"
                  " updated_at = now() FROM b WHERE tenants.id = b.id"
                  " AND (now() AT TIME ZONE coalesce($5, b.time_zone)) IS NOT NULL"
                  " RETURNING tenants.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $4, 'tenant.update', t.id, 'tenant', t.id, to_jsonb(b),"
                  " to_jsonb(t) FROM t, b) SELECT ") +
          tenant_json + "::text FROM t",
      {id, std::move(name), std::move(status), std::move(actor), std::move(time_zone)},
      "No tenant with id " + id + ".");
}

// ---- projects --------------------------------------------------------------------------------

net::awaitable<store_result> account_store::create_project(std::string tenant_id,
                                                           std::string name, std::string actor) {
  return one_object(
      std::string("WITH p AS (INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, $3)"
                  " RETURNING *), a AS (INSERT INTO audit_log (actor, action, tenant_id,"
                  " object_type, object_id, after) SELECT $4, 'project.create', p.tenant_id,"
                  " 'project', p.id, to_jsonb(p) FROM p) SELECT ") +
          project_json + "::text FROM p",
      {tenant_id, new_object_id("proj"), std::move(name), std::move(actor)},
      "Project of tenant " + tenant_id);
}

net::awaitable<store_result> account_store::get_project(std::string id) {
  return one_object(
      std::string("SELECT ") + project_json + "::text FROM projects p WHERE p.id = $1", {id},
      "No project with id " + id + ".");
}

net::awaitable<store_result> account_store::list_projects(std::string tenant_id,
                                                          page_request page) {
  return tenant_page(project_json, "projects", "p", std::move(tenant_id), page);
}

net::awaitable<store_result> account_store::update_project(std::string id,
                                                           std::optional<std::string> name,
                                                           std::optional<std::string> status,
                                                           std::string actor) {
  return one_object(
      std::string("WITH b AS (SELECT * FROM projects WHERE id = $1 FOR UPDATE),"
                  " p AS (UPDATE projects SET name = coalesce($2, b.name),"
                  " status = coalesce($3, b.status), updated_at = now() FROM b"
                  " WHERE projects.id = b.id RETURNING projects.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $4, 'project.update', p.tenant_id, 'project', p.id,"
                  " to_jsonb(b), to_jsonb(p) FROM p, b) SELECT ") +
          project_json + "::text FROM p",
      {id, std::move(name), std::move(status), std::move(actor)},
      "No project with id " + id + ".");
}

// ---- API keys --------------------------------------------------------------------------------

namespace {
const char* const key_audit_json = "(to_jsonb(k) - 'key_sha256')";
}

net::awaitable<store_result> account_store::create_key(key_spec spec, std::string actor) {
  const std::string secret = new_api_key();
  const std::string prefix = secret.substr(0, api_key_prefix.size() + key_display_chars);
  pg::param expires;
  if (spec.expires_at_s) expires = std::to_string(*spec.expires_at_s);
  pg::param models;
  if (spec.allowed_models) models = pg::text_array(*spec.allowed_models);
  pg::param project;
  if (!spec.project_id.empty()) project = spec.project_id;
  return one_object(
      std::string("WITH k AS (INSERT INTO api_keys (tenant_id, id, project_id, name, prefix,"
                  " key_sha256, expires_at, allowed_models) VALUES ($1, $2, $3, $4, $5,"
                  " $6::bytea, to_timestamp($7::bigint), $8::text[]) RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $9, 'key.create', k.tenant_id, 'api_key', k.id, ") +
          key_audit_json + " FROM k) SELECT (" + key_json +
          "::jsonb || jsonb_build_object('key', $10::text))::text FROM k",
      {spec.tenant_id, new_object_id("key"), project, spec.name, prefix,
       hex_bytea(sha256_bytes(secret)), expires, models, std::move(actor), secret},
      "Key for tenant " + spec.tenant_id);
}

net::awaitable<store_result> account_store::get_key(std::string id) {
  return one_object(
      std::string("SELECT ") + key_json + "::text FROM api_keys k WHERE k.id = $1", {id},
      "No API key with id " + id + ".");
}

net::awaitable<store_result> account_store::list_keys(std::string tenant_id,
                                                      std::string project_id, page_request page) {
  return one_object(
      page_sql(key_json,
               "(SELECT k.*, k.id AS x_id FROM api_keys k) k WHERE ($3::text = '' OR "
               "k.tenant_id = $3) AND ($4::text = '' OR k.project_id = $4)",
               1, 2),
      {std::to_string(page.limit), page.after, tenant_id, project_id}, "No keys.");
}

net::awaitable<store_result> account_store::update_key(std::string id, key_update u,
                                                       std::string actor) {
  pg::param expires;
  if (u.expires_at_s) expires = std::to_string(*u.expires_at_s);
  pg::param models;
  if (u.allowed_models) models = pg::text_array(*u.allowed_models);
  return one_object(
      std::string("WITH b AS (SELECT * FROM api_keys WHERE id = $1 FOR UPDATE),"
                  " k AS (UPDATE api_keys SET name = coalesce($2, b.name),"
                  " expires_at = CASE WHEN $3::boolean THEN to_timestamp($4::bigint)"
                  " ELSE b.expires_at END,"
                  " allowed_models = CASE WHEN $5::boolean THEN $6::text[] ELSE b.allowed_models END"
                  " FROM b WHERE api_keys.id = b.id RETURNING api_keys.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $7, 'key.update', k.tenant_id, 'api_key', k.id,"
                  " (to_jsonb(b) - 'key_sha256'), ") +
          key_audit_json + " FROM k, b) SELECT " + key_json + "::text FROM k",
      {id, u.name, u.set_expires ? "true" : "false", expires, u.set_models ? "true" : "false",
       models, std::move(actor)},
      "No API key with id " + id + ".");
}

net::awaitable<store_result> account_store::revoke_key(std::string id, std::string actor) {
  return one_object(
      std::string("WITH b AS (SELECT * FROM api_keys WHERE id = $1 FOR UPDATE),"
                  " k AS (UPDATE api_keys SET status = 'revoked',"
                  " revoked_at = coalesce(b.revoked_at, now()) FROM b WHERE api_keys.id = b.id"
                  " RETURNING api_keys.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $2, 'key.revoke', k.tenant_id, 'api_key', k.id,"
                  " (to_jsonb(b) - 'key_sha256'), ") +
          key_audit_json + " FROM k, b) SELECT " + key_json + "::text FROM k",
      {id, std::move(actor)}, "No API key with id " + id + ".");
}

net::awaitable<store_result> account_store::rotate_key(std::string id, std::int64_t grace_s,
                                                       std::string actor) {
  const std::string secret = new_api_key();
  const std::string prefix = secret.substr(0, api_key_prefix.size() + key_display_chars);
  // One statement: the new key, the old key's end (revoked now, or expiring after the grace
  // period), and both audit rows.
  return one_object(
      std::string(
          "WITH b AS (SELECT * FROM api_keys WHERE id = $1 AND status = 'active' FOR UPDATE),"
          " old AS (UPDATE api_keys SET"
          " status = CASE WHEN $5::bigint = 0 THEN 'revoked' ELSE status END,"
          " revoked_at = CASE WHEN $5::bigint = 0 THEN now() ELSE revoked_at END,"
          " expires_at = CASE WHEN $5::bigint = 0 THEN expires_at"
          " ELSE least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $5::bigint))"
          " END WHERE id IN (SELECT id FROM b) RETURNING *),"
          " k AS (INSERT INTO api_keys (tenant_id, id, project_id, name, prefix, key_sha256,"
          " expires_at, allowed_models) SELECT b.tenant_id, $2, b.project_id, b.name, $3,"
          " $4::bytea, b.expires_at, b.allowed_models FROM b RETURNING *),"
          " a1 AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
          " before, after) SELECT $6, 'key.rotate', old.tenant_id, 'api_key', old.id,"
          " (to_jsonb(b) - 'key_sha256'), (to_jsonb(old) - 'key_sha256') FROM old, b),"
          " a2 AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
          " after) SELECT $6, 'key.create', k.tenant_id, 'api_key', k.id, ") +
          key_audit_json + " FROM k) SELECT (" + key_json +
          "::jsonb || jsonb_build_object('key', $7::text, 'replaces', $1::text))::text FROM k",
      {id, new_object_id("key"), prefix, hex_bytea(sha256_bytes(secret)), std::to_string(grace_s),
       std::move(actor), secret},
      "No active API key with id " + id + ".");
}

net::awaitable<store_result> account_store::list_audit(std::string tenant_id, page_request page) {
  return one_object(
      "WITH page AS (SELECT json_build_object('object','audit_log_entry','id',l.id,"
      "'occurred_at',extract(epoch from l.occurred_at)::bigint,'actor',l.actor,"
      "'action',l.action,'tenant_id',l.tenant_id,'object_type',l.object_type,"
      "'object_id',l.object_id,'before',l.before,'after',l.after) AS obj, l.id FROM audit_log l"
      " WHERE ($3::text = '' OR l.tenant_id = $3) AND ($2::text = '' OR l.id > $2::bigint)"
      " ORDER BY l.id LIMIT $1::int + 1),"
      " numbered AS (SELECT obj, id, row_number() OVER (ORDER BY id) AS rn FROM page)"
      " SELECT json_build_object('object','list','data',coalesce((SELECT json_agg(obj ORDER BY"
      " id) FROM numbered WHERE rn <= $1::int),'[]'::json),'first_id',(SELECT min(id)::text"
      " FROM numbered WHERE rn <= $1::int),'last_id',(SELECT max(id)::text FROM numbered WHERE"
      " rn <= $1::int),'has_more',(SELECT count(*) FROM page) > $1::int)::text",
      {std::to_string(page.limit), page.after, tenant_id}, "No audit entries.");
}

// ---- budgets ---------------------------------------------------------------------------------

namespace {
const char* const budget_json =
    "json_build_object('object','budget','id',g.id,'tenant_id',g.tenant_id,'scope',g.scope,"
    "'scope_id',g.scope_id,'metric',g.metric,'window',g.time_window,'limit',g.limit_value,"
    "'mode',g.mode,'status',g.status,'alert_thresholds',to_jsonb(g.alert_thresholds),"
    "'alert_webhook_url',g.alert_webhook_url,'alert_webhook_secret',g.alert_webhook_secret,"
    "'created_at',extract(epoch from g.created_at)::bigint)";

// PostgreSQL's array text for a list of integers: {50,80,100}.
std::string int_array(const std::vector<int>& v) {
  std::string out = "{";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out + "}";
}
}

net::awaitable<store_result> account_store::create_budget(budget_spec spec, std::string actor) {
  pg::param scope_id;
  if (!spec.scope_id.empty()) scope_id = spec.scope_id;
  pg::param webhook_url, webhook_secret;
  if (!spec.alert_webhook_url.empty()) {
    webhook_url = spec.alert_webhook_url;
    webhook_secret = new_webhook_secret();
  }
  // The scope must name a project or key of the same tenant: otherwise nothing is inserted
  // and the answer is 404.
  return one_object(
      std::string("WITH g AS (INSERT INTO budgets (tenant_id, id, scope, scope_id, metric,"
                  " time_window, limit_value, mode, alert_thresholds, alert_webhook_url,"
                  " alert_webhook_secret) SELECT $1, $2, $3, $4, $5, $6, $7::bigint, $8,"
                  " $10::integer[], $11, $12"
                  " WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) AND CASE $3"
                  " WHEN 'project' THEN EXISTS (SELECT 1 FROM projects WHERE tenant_id = $1 AND"
                  " id = $4) WHEN 'key' THEN EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1"
                  " AND id = $4) ELSE true END RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $9, 'budget.create', g.tenant_id, 'budget', g.id,"
                  " to_jsonb(g) - 'alert_webhook_secret' FROM g) SELECT ") +
          budget_json + "::text FROM g",
      {spec.tenant_id, new_object_id("bud"), spec.scope, scope_id, spec.metric, spec.window,
       std::to_string(spec.limit), spec.mode, std::move(actor), int_array(spec.alert_thresholds),
       webhook_url, webhook_secret},
      "The tenant, project or key named does not exist.");
}

net::awaitable<store_result> account_store::get_budget(std::string id) {
  return one_object(std::string("SELECT ") + budget_json + "::text FROM budgets g WHERE g.id = $1",
                    {id}, "No budget with id " + id + ".");
}

net::awaitable<store_result> account_store::list_budgets(std::string tenant_id,
                                                         page_request page) {
  return tenant_page(budget_json, "budgets", "g", std::move(tenant_id), page);
}

net::awaitable<basic_result<account_store::updated_budget, store_error>>
account_store::update_budget(std::string id, budget_update u, std::string actor) {
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
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return from_db(r.error());
  if (r->size() == 0 || r->is_null(0, 0)) {
    co_return store_error{404, "No budget with id " + id + ".", "not_found"};
  }
  co_return updated_budget{std::string(r->text(0, 0)), std::string(r->text(0, 1))};
}

net::awaitable<store_result> account_store::list_budget_alerts(std::string budget_id) {
  return one_object(
      "SELECT json_build_object('object','list','data',coalesce((SELECT json_agg("
      "json_build_object('object','budget.alert','id',x.id,'budget_id',x.budget_id,"
      "'tenant_id',x.tenant_id,'window_start',extract(epoch from x.window_start)::bigint,"
      "'threshold',x.threshold,'limit',x.limit_value,'used',x.used,'webhook_url',x.webhook_url,"
      "'status',x.status,'attempts',x.attempts,'last_error',x.last_error,"
      "'created_at',extract(epoch from x.created_at)::bigint,"
      "'delivered_at',extract(epoch from x.delivered_at)::bigint)"
      " ORDER BY x.created_at DESC, x.id DESC) FROM (SELECT * FROM budget_alerts"
      " WHERE budget_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100) x), '[]'::json))::text"
      " FROM budgets WHERE id = $1",
      {budget_id}, "No budget with id " + budget_id + ".");
}

net::awaitable<pg::db_result<bool>> account_store::record_budget_alert(budget_alert_spec a) {
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
      " ON CONFLICT (budget_id, window_start, threshold) DO NOTHING RETURNING status)"
      " SELECT count(*) FILTER (WHERE status = 'pending') > 0 FROM ins";
  std::vector<pg::param> params{new_object_id("alr"), a.budget_id,
                                std::to_string(a.window_start_ms), std::to_string(a.threshold),
                                std::to_string(a.limit), std::to_string(a.used), a.tenant_id};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->boolean(0, 0);
}

net::awaitable<pg::db_result<std::vector<alert_delivery>>> account_store::claim_alerts(
    int limit, std::int64_t lease_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "WITH due AS (SELECT id FROM budget_alerts WHERE status = 'pending'"
      " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1::integer"
      " FOR UPDATE SKIP LOCKED)"
      " UPDATE budget_alerts x SET attempts = x.attempts + 1,"
      " next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
      " FROM due, budgets b WHERE x.id = due.id AND b.id = x.budget_id"
      " RETURNING x.id, x.webhook_url, coalesce(b.alert_webhook_secret, ''), x.payload,"
      " x.attempts";
  std::vector<pg::param> params{std::to_string(limit), std::to_string(lease_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<alert_delivery> out;
  for (int i = 0; i < r->size(); ++i) {
    alert_delivery d;
    d.id = r->text(i, 0);
    d.url = r->text(i, 1);
    d.secret = r->text(i, 2);
    d.payload = r->text(i, 3);
    d.attempts = static_cast<int>(r->int64(i, 4));
    out.push_back(std::move(d));
  }
  co_return out;
}

net::awaitable<pg::db_result<bool>> account_store::finish_alert(std::string id,
                                                                std::string status,
                                                                std::string error,
                                                                std::int64_t retry_in_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "UPDATE budget_alerts SET status = $2, last_error = nullif($3, ''),"
      " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,"
      " next_attempt_at = now() + $4::bigint * interval '1 millisecond' WHERE id = $1";
  std::vector<pg::param> params{std::move(id), std::move(status), std::move(error),
                                std::to_string(retry_in_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return true;
}

net::awaitable<pg::db_result<std::vector<budget_info>>> account_store::active_budgets(
    std::string tenant_id, std::int64_t now_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  // For day and month windows of a tenant outside UTC, PostgreSQL's time zone rules give the
  // window boundaries: local midnight (or the first of the month) as instants.
  const std::string sql =
      "SELECT b.id, b.scope, coalesce(b.scope_id, ''), b.metric, b.time_window, b.limit_value,"
      " b.mode = 'hard', array_to_string(b.alert_thresholds, ','),"
      " coalesce((extract(epoch from z.s AT TIME ZONE t.time_zone) * 1000)::bigint, 0),"
      " coalesce((extract(epoch from (z.s + z.len) AT TIME ZONE t.time_zone) * 1000)::bigint, 0),"
      " coalesce((extract(epoch from (z.s + 2 * z.len) AT TIME ZONE t.time_zone) * 1000)::bigint,"
      " 0)"
      " FROM budgets b JOIN tenants t ON t.id = b.tenant_id"
      " LEFT JOIN LATERAL (SELECT date_trunc(CASE b.time_window WHEN 'day' THEN 'day'"
      " ELSE 'month' END, (timestamptz 'epoch' + $2::bigint"
      " * interval '1 millisecond') AT TIME ZONE t.time_zone) AS s,"
      " CASE b.time_window WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END AS len)"
      " z ON t.time_zone <> 'UTC' AND b.time_window IN ('day', 'month')"
      " WHERE b.tenant_id = $1 AND b.status = 'active' ORDER BY b.id";
  std::vector<pg::param> params{tenant_id, std::to_string(now_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<budget_info> out;
  for (int i = 0; i < r->size(); ++i) {
    budget_info b;
    b.id = r->text(i, 0);
    b.scope = r->text(i, 1);
    b.scope_id = r->text(i, 2);
    b.metric = r->text(i, 3);
    b.window = r->text(i, 4);
    b.limit = r->int64(i, 5);
    b.hard = r->boolean(i, 6);
    const std::string thresholds(r->text(i, 7));
    for (std::size_t at = 0; at < thresholds.size();) {
      std::size_t comma = thresholds.find(',', at);
      if (comma == std::string::npos) comma = thresholds.size();
      b.alert_thresholds.push_back(std::stoi(thresholds.substr(at, comma - at)));
      at = comma + 1;
    }
    b.zone_start_ms = r->int64(i, 8);
    b.zone_end_ms = r->int64(i, 9);
    b.zone_next_end_ms = r->int64(i, 10);
    out.push_back(std::move(b));
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
    for (auto& b : out) {
      if (b.metric == "spend") b.plan_rates = rates;
    }
    if (c->boolean(0, 5)) {
      budget_info b;
      b.id = "credit:" + tenant_id;
      b.scope = "tenant";
      b.metric = "credit";
      b.window = "lifetime";
      b.limit = c->int64(0, 0);
      b.credit_used = b.limit - c->int64(0, 1);
      b.plan_rates = std::move(rates);
      out.push_back(std::move(b));
    }
  }
  co_return out;
}

net::awaitable<pg::db_result<std::int64_t>> account_store::ledger_usage(ledger_budget_query q) {
  std::string prices = "[";
  for (const auto& p : q.prices) {
    json_object_writer w;
    w.add("model", p.model)
        .add("input", static_cast<std::int64_t>(p.input))
        .add("output", static_cast<std::int64_t>(p.output));
    if (prices.size() > 1) prices += ",";
    prices += w.finish();
  }
  prices += "]";
  std::string amount;
  if (q.metric == "tokens") {
    amount = "e.prompt_tokens + e.completion_tokens";
  } else if (q.metric == "spend") {
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
  std::string sql =
      "SELECT coalesce(sum(" + amount + "), 0)::bigint FROM usage_events e"
      " LEFT JOIN jsonb_to_recordset($4::jsonb) AS p(model text, input numeric, output numeric)"
      " ON p.model = e.model"
      " WHERE e.tenant_id = $1"
      " AND e.occurred_at >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'"
      " AND e.occurred_at < timestamptz 'epoch' + $3::bigint * interval '1 millisecond'";
  std::vector<pg::param> params{q.tenant_id, std::to_string(q.start_ms), std::to_string(q.end_ms),
                                prices};
  if (q.scope == "project") {
    sql += " AND e.project_id = $5";
    params.push_back(q.scope_id);
  } else if (q.scope == "key") {
    sql += " AND e.api_key_id = $5";
    params.push_back(q.scope_id);
  }
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->int64(0, 0);
}

// ---- usage -----------------------------------------------------------------------------------

namespace {

// The WHERE clause of a usage query: the time range ($1, $2 in unix seconds) and an equality
// test for each filter given, its value appended to `params`.
template <class Query>
std::string usage_where(const Query& q, std::vector<pg::param>& params) {
  std::string where =
      " WHERE occurred_at >= to_timestamp($1::bigint) AND occurred_at < to_timestamp($2::bigint)";
  const std::pair<const char*, const std::optional<std::string>*> filters[] = {
      {"tenant_id", &q.tenant_id},
      {"project_id", &q.project_id},
      {"api_key_id", &q.api_key_id},
      {"model", &q.model}};
  for (const auto& [column, value] : filters) {
    if (!*value) continue;
    params.push_back(**value);
    where += std::string(" AND ") + column + " = $" + std::to_string(params.size());
  }
  return where;
}

}  // namespace

net::awaitable<pg::db_result<std::vector<usage_row>>> account_store::usage(usage_query q) {
  std::vector<pg::param> params{std::to_string(q.start_s), std::to_string(q.end_s),
                                std::to_string(q.bucket_s)};
  std::string where = usage_where(q, params);
  if (q.batch) where += *q.batch ? " AND batch" : " AND NOT batch";
  auto grouped = [&](std::string_view c) {
    for (const auto& g : q.group_by) {
      if (g == c) return true;
    }
    return false;
  };
  std::string select =
      "SELECT (($1::bigint) + floor((extract(epoch from occurred_at) - $1::bigint) / "
      "$3::bigint)::bigint * $3::bigint) AS bucket";
  std::string group = " GROUP BY 1";
  int next = 2;
  for (const char* c : {"tenant_id", "project_id", "api_key_id", "model", "batch"}) {
    if (grouped(c)) {
      select += std::string(", ") + c;
      group += ", " + std::to_string(next);
    } else {
      select += ", NULL";
    }
    ++next;
  }
  select +=
      ", sum(prompt_tokens), sum(cached_prompt_tokens), sum(completion_tokens),"
      " sum(reasoning_tokens), count(*) FROM usage_events";
  const std::string sql = select + where + group + " ORDER BY" + group.substr(9);

  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<usage_row> rows;
  rows.reserve(static_cast<std::size_t>(r->size()));
  for (int i = 0; i < r->size(); ++i) {
    usage_row u;
    u.bucket_start_s = r->int64(i, 0);
    auto opt = [&](int col) -> std::optional<std::string> {
      if (r->is_null(i, col)) return std::nullopt;
      return std::string(r->text(i, col));
    };
    u.tenant_id = opt(1);
    u.project_id = opt(2);
    u.api_key_id = opt(3);
    u.model = opt(4);
    if (!r->is_null(i, 5)) u.batch = r->boolean(i, 5);
    u.input_tokens = r->int64(i, 6);
    u.input_cached_tokens = r->int64(i, 7);
    u.output_tokens = r->int64(i, 8);
    u.output_reasoning_tokens = r->int64(i, 9);
    u.requests = r->int64(i, 10);
    rows.push_back(std::move(u));
  }
  co_return rows;
}

net::awaitable<pg::db_result<account_store::events_page>> account_store::events(events_query q) {
  std::vector<pg::param> params{std::to_string(q.start_s), std::to_string(q.end_s),
                                std::to_string(q.limit)};
  std::string where = usage_where(q, params);
  if (!q.after.empty()) {
    // Cursor: "<occurred_at in unix µs>~<tenant_id>~<request_id>".
    const auto a = q.after.find('~');
    const auto b = a == std::string::npos ? a : q.after.find('~', a + 1);
    if (b == std::string::npos) co_return pg::db_error{"bad cursor", "22023", false};
    params.push_back(q.after.substr(0, a));
    params.push_back(q.after.substr(a + 1, b - a - 1));
    params.push_back(q.after.substr(b + 1));
    const std::size_t n = params.size();
    where += " AND (occurred_at, tenant_id, request_id) > ('epoch'::timestamptz + $" +
             std::to_string(n - 2) + "::bigint * interval '1 microsecond', $" +
             std::to_string(n - 1) + ", $" + std::to_string(n) + ")";
  }
  const std::string sql =
      "SELECT json_build_object('object','usage_event','request_id',request_id,"
      "'tenant_id',tenant_id,'project_id',project_id,'api_key_id',api_key_id,"
      "'occurred_at',to_char(occurred_at,'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
      "'endpoint',endpoint,'model',model,'upstream',upstream,'stream',stream,'batch',batch,"
      "'status',status,'prompt_tokens',prompt_tokens,'cached_prompt_tokens',cached_prompt_tokens,"
      "'completion_tokens',completion_tokens,'reasoning_tokens',reasoning_tokens,"
      "'counted_prompt_tokens',counted_prompt_tokens,"
      "'counted_completion_tokens',counted_completion_tokens,'usage_reported',usage_reported,"
      "'estimated',estimated,'latency_us',latency_us,'ttft_us',ttft_us,"
      "'client_disconnected',client_disconnected,'error_code',error_code,"
      "'client_request_id',client_request_id,'cost_micros',cost_micros,"
      "'price_book_id',price_book_id,'price_book_version',price_book_version,"
      "'credit_micros',credit_micros)::text,"
      " ((extract(epoch from occurred_at) * 1000000)::bigint)::text || '~' || tenant_id || '~' ||"
      " request_id FROM usage_events" +
      where + " ORDER BY occurred_at, tenant_id, request_id LIMIT $3::int + 1";
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  events_page page;
  page.data_json = "[";
  const int shown = std::min(r->size(), q.limit);
  for (int i = 0; i < shown; ++i) {
    if (i > 0) page.data_json.push_back(',');
    page.data_json += r->text(i, 0);
  }
  page.data_json += "]";
  if (r->size() > q.limit && shown > 0) page.next = std::string(r->text(shown - 1, 1));
  co_return page;
}

}  // namespace tollgate::billing

// ---- price books and plans -------------------------------------------------------------------

namespace tollgate::billing {

namespace {

const char* const price_book_json =
    "json_build_object('object','price_book','id',b.id,'name',b.name,'currency',b.currency,"
    "'tier_mode',b.tier_mode,'tier_scope',b.tier_scope,"
    "'created_at',extract(epoch from b.created_at)::bigint,"
    "'versions',(SELECT json_agg(json_build_object('version',v.version,"
    "'effective_at',extract(epoch from v.effective_at)::bigint,'prices',v.prices)"
    " ORDER BY v.version) FROM price_book_versions v WHERE v.book_id = b.id))";

}  // namespace

net::awaitable<store_result> account_store::create_price_book(price_book_spec spec,
                                                              std::string actor) {
  return one_object(
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

net::awaitable<store_result> account_store::get_price_book(std::string id) {
  return one_object(std::string("SELECT ") + price_book_json + "::text FROM price_books b"
                    " WHERE b.id = $1",
                    {id}, "No price book with id " + id + ".");
}

net::awaitable<store_result> account_store::list_price_books(page_request page) {
  return one_object(
      page_sql(price_book_json, "(SELECT b.*, b.id AS x_id FROM price_books b) b WHERE true", 1, 2),
      {std::to_string(page.limit), page.after}, "Nothing to list.");
}

net::awaitable<basic_result<account_store::price_book_kind_info, store_error>>
account_store::price_book_kind(std::string id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
  const std::string sql = "SELECT tier_mode, tier_scope FROM price_books WHERE id = $1";
  std::vector<pg::param> params;
  params.emplace_back(id);
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return from_db(r.error());
  if (r->size() == 0) co_return store_error{404, "No price book with id " + id + ".", "not_found"};
  price_book_kind_info kind;
  kind.mode = tier_mode_of(r->text(0, 0));
  kind.scope = tier_scope_of(r->text(0, 1));
  co_return kind;
}

net::awaitable<store_result> account_store::add_price_book_version(std::string book_id,
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
  auto latest = co_await one_object(std::move(latest_sql), std::move(latest_params), "");
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
  co_return co_await one_object(std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> account_store::set_tenant_plan(plan_spec spec, std::string actor) {
  pg::param discount, mode;
  if (spec.batch_discount_bp) discount = std::to_string(*spec.batch_discount_bp);
  if (spec.settlement_mode) mode = *spec.settlement_mode;
  // The rules (first plan at once, price changes at the next period) live in the function.
  return one_object("SELECT tollgate_set_tenant_plan($1, $2, $3::integer, $4, $5)::text",
                    {std::move(spec.tenant_id), std::move(spec.book_id), discount, mode,
                     std::move(actor)},
                    "The tenant or price book named does not exist.");
}

net::awaitable<store_result> account_store::get_tenant_plan(std::string tenant_id) {
  return one_object("SELECT tollgate_tenant_plan_json($1)::text", {tenant_id},
                    "Tenant " + tenant_id + " has no plan.");
}

net::awaitable<basic_result<period_usage, store_error>> account_store::load_plan(
    std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
  const std::string plan_sql =
      "SELECT p.book_id, b.currency, b.tier_mode, b.tier_scope, p.batch_discount_bp"
      " FROM tenant_plans p JOIN price_books b ON b.id = p.book_id WHERE p.tenant_id = $1"
      " AND p.from_period = tollgate_plan_period($1, $2)";
  std::vector<pg::param> plan_params;
  plan_params.emplace_back(tenant_id);
  plan_params.emplace_back(period);
  auto plan = co_await (*conn)->query(plan_sql, std::move(plan_params));
  if (!plan) co_return from_db(plan.error());
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
  const std::string versions_sql =
      "SELECT version, prices::text FROM price_book_versions WHERE book_id = $1"
      " ORDER BY effective_at";
  std::vector<pg::param> versions_params;
  versions_params.emplace_back(in.book_id);
  auto versions = co_await (*conn)->query(versions_sql, std::move(versions_params));
  if (!versions) co_return from_db(versions.error());
  for (int i = 0; i < versions->size(); ++i) {
    in.versions.push_back({static_cast<int>(versions->int64(i, 0)),
                           std::string(versions->text(i, 1))});
  }
  co_return in;
}

net::awaitable<basic_result<period_usage, store_error>> account_store::load_period_totals(
    period_usage plan, std::string period) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  plan.period = std::move(period);
  plan.rows.clear();
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
  // Totals per version in force at each event (0: before the first), model and batch flag.
  const std::string totals_sql =
      "WITH v AS (SELECT version, effective_at, lead(effective_at) OVER (ORDER BY effective_at)"
      " AS next FROM price_book_versions WHERE book_id = $2)"
      " SELECT coalesce(v.version, 0), e.model, e.batch,"
      " sum(e.prompt_tokens - least(e.cached_prompt_tokens, e.prompt_tokens)),"
      " sum(least(e.cached_prompt_tokens, e.prompt_tokens)), sum(e.completion_tokens)"
      " FROM usage_events e LEFT JOIN v ON e.occurred_at >= v.effective_at"
      " AND (v.next IS NULL OR e.occurred_at < v.next)"
      " WHERE e.tenant_id = $1 AND e.occurred_at >= to_timestamp($3::bigint)"
      " AND e.occurred_at < to_timestamp($4::bigint)"
      " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
  std::vector<pg::param> totals_params;
  totals_params.emplace_back(plan.tenant_id);
  totals_params.emplace_back(plan.book_id);
  totals_params.emplace_back(std::to_string(bounds->first));
  totals_params.emplace_back(std::to_string(bounds->second));
  auto totals = co_await (*conn)->query(totals_sql, std::move(totals_params));
  if (!totals) co_return from_db(totals.error());
  for (int i = 0; i < totals->size(); ++i) {
    period_usage::totals t;
    t.version = static_cast<int>(totals->int64(i, 0));
    t.model = std::string(totals->text(i, 1));
    t.batch = totals->boolean(i, 2);
    t.input = totals->int64(i, 3);
    t.cached_input = totals->int64(i, 4);
    t.output = totals->int64(i, 5);
    plan.rows.push_back(std::move(t));
  }
  co_return plan;
}

net::awaitable<store_result> account_store::cost_preview(std::string tenant_id,
                                                        std::string period) {
  if (!period_bounds(period)) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  auto plan = co_await load_plan(std::move(tenant_id), period);
  if (!plan) co_return plan.error();
  auto usage = co_await load_period_totals(std::move(*plan), std::move(period));
  if (!usage) co_return usage.error();
  co_return cost_preview_json(*usage);
}

// ---- invoices ----------------------------------------------------------------------------------

namespace {

const char* const invoice_json =
    "json_build_object('object','invoice','id',i.id,'tenant_id',i.tenant_id,'period',i.period,"
    "'status',i.status,'number',i.number,'currency',i.currency,'price_book_id',i.price_book_id,"
    "'minor_digits',i.minor_digits,'lines',i.lines,'adjustments',i.adjustments,"
    "'unpriced',i.unpriced,"
    "'total_micros',i.total_micros,'total_minor',i.total_minor,'credits',i.credits,"
    "'credits_micros',i.credits_micros,'credits_returned_micros',i.credits_returned_micros,"
    "'total_due_micros',coalesce(i.total_due_micros,i.total_micros),"
    "'total_due_minor',coalesce(i.total_due_minor,i.total_minor),"
    "'created_at',extract(epoch from i.created_at)::bigint,"
    "'finalized_at',extract(epoch from i.finalized_at)::bigint)";

}  // namespace

net::awaitable<store_result> account_store::draft_invoice(std::string tenant_id,
                                                         std::string period) {
  if (!period_bounds(period)) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  // A finalized invoice never changes: nothing to price.
  auto finalized_already = co_await finalized_invoice(tenant_id, period);
  if (finalized_already || finalized_already.error().status != 404) co_return finalized_already;
  auto plan = co_await load_plan(tenant_id, period);
  if (!plan) co_return plan.error();
  auto usage = co_await load_period_totals(*plan, period);
  if (!usage) co_return usage.error();
  const period_pricing priced = price_period(*usage);
  const int digits = currency_minor_digits(usage->currency);

  // Late usage of earlier periods whose invoices are finalized (the last 24): what each comes
  // to now, less what its invoice and the adjustments of other finalized invoices charged.
  std::vector<late_adjustment> adjustments;
  std::vector<std::string> earlier_adjustments;
  std::vector<std::pair<std::string, std::string>> finalized;  // period, lines
  {
    auto conn = co_await pool_.acquire();
    if (!conn) co_return unavailable(conn.error());
    const std::string earlier_sql =
        "SELECT period, lines::text FROM invoices WHERE tenant_id = $1 AND status = 'finalized'"
        " AND period < $2 ORDER BY period DESC LIMIT 24";
    std::vector<pg::param> earlier_params;
    earlier_params.emplace_back(tenant_id);
    earlier_params.emplace_back(period);
    auto earlier = co_await (*conn)->query(earlier_sql, std::move(earlier_params));
    if (!earlier) co_return from_db(earlier.error());
    const std::string adjusted_sql =
        "SELECT adjustments::text FROM invoices WHERE tenant_id = $1 AND status = 'finalized'"
        " AND period <> $2 AND adjustments <> '[]'::jsonb";
    std::vector<pg::param> adjusted_params;
    adjusted_params.emplace_back(tenant_id);
    adjusted_params.emplace_back(period);
    auto adjusted = co_await (*conn)->query(adjusted_sql, std::move(adjusted_params));
    if (!adjusted) co_return from_db(adjusted.error());
    for (int i = 0; i < adjusted->size(); ++i) earlier_adjustments.emplace_back(adjusted->text(i, 0));
    for (int i = 0; i < earlier->size(); ++i) {
      finalized.emplace_back(std::string(earlier->text(i, 0)), std::string(earlier->text(i, 1)));
    }
  }  // the connection goes back to the pool before the earlier periods are loaded
  for (auto it = finalized.rbegin(); it != finalized.rend(); ++it) {
    auto then_plan = co_await load_plan(tenant_id, it->first);  // the plan of that period
    if (!then_plan) co_return then_plan.error();
    auto then = co_await load_period_totals(std::move(*then_plan), it->first);
    if (!then) co_return then.error();
    const auto late =
        late_adjustments(it->first, price_period(*then), it->second, earlier_adjustments);
    adjustments.insert(adjustments.end(), late.begin(), late.end());
  }
  std::vector<std::int64_t> micros;
  std::int64_t total_micros = 0;
  for (const auto& l : priced.lines) micros.push_back(l.amount_micros);
  for (const auto& a : adjustments) micros.push_back(a.amount_micros);
  for (const auto m : micros) total_micros += m;
  const auto minor = to_minor_units(micros, digits);
  const std::int64_t total_minor = minor.total;
  std::string lines = priced_lines_json(priced.lines, &minor.amounts);
  std::string adjusted_json = adjustments_json(adjustments, minor.amounts, priced.lines.size());

  // Credits applied, in drawdown order: what the period's events drew, at most the period's
  // own charges (the excess, possible with volume tiers, goes back to the grants when the
  // invoice is finalized), then credit drawn by late usage of finalized periods.
  auto credits = co_await applied_credits(tenant_id, period);
  if (!credits) co_return credits.error();
  std::int64_t period_charges = priced.total_micros;
  std::int64_t period_credits = 0;
  for (const auto& c : *credits) {
    if (c.period == period) period_credits += c.amount_micros;
  }
  const std::int64_t credits_returned = std::max<std::int64_t>(0, period_credits - period_charges);
  for (std::int64_t cut = credits_returned, i = static_cast<std::int64_t>(credits->size()) - 1;
       cut > 0 && i >= 0; --i) {
    auto& c = (*credits)[static_cast<std::size_t>(i)];
    if (c.period != period) continue;
    const std::int64_t take = std::min(cut, c.amount_micros);
    c.amount_micros -= take;
    cut -= take;
  }
  std::erase_if(*credits, [](const applied_credit& c) { return c.amount_micros == 0; });
  std::vector<std::int64_t> credit_micros;
  std::int64_t credits_total = 0;
  for (const auto& c : *credits) {
    credit_micros.push_back(c.amount_micros);
    credits_total += c.amount_micros;
  }
  const auto credit_minor = to_minor_units(credit_micros, digits);
  std::string credits_json = "[";
  for (std::size_t i = 0; i < credits->size(); ++i) {
    const auto& c = (*credits)[i];
    json_object_writer w;
    w.add("period", c.period)
        .add("grant_id", c.grant_id)
        .add("kind", c.kind)
        .add("amount_micros", c.amount_micros)
        .add("amount_minor", credit_minor.amounts[i]);
    credits_json += (i ? "," : "") + w.finish();
  }
  credits_json += "]";
  // A draft is rewritten in place (same id). Should the invoice have been finalized
  // meanwhile, nothing is written and the answer is 404.
  std::string sql =
      std::string("WITH i AS (INSERT INTO invoices (id, tenant_id, period, status, currency,"
                  " price_book_id, minor_digits, lines, unpriced, total_micros, total_minor,"
                  " adjustments, credits, credits_micros, credits_returned_micros,"
                  " total_due_micros, total_due_minor) VALUES ($3, $1, $2, 'draft', $4, $5,"
                  " $6::integer, $7::jsonb, $8::jsonb, $9::bigint, $10::bigint, $11::jsonb,"
                  " $12::jsonb, $13::bigint, $14::bigint, $15::bigint, $16::bigint)"
                  " ON CONFLICT (tenant_id, period) DO UPDATE SET currency = EXCLUDED.currency,"
                  " price_book_id = EXCLUDED.price_book_id, minor_digits = EXCLUDED.minor_digits,"
                  " lines = EXCLUDED.lines, unpriced = EXCLUDED.unpriced,"
                  " total_micros = EXCLUDED.total_micros, total_minor = EXCLUDED.total_minor,"
                  " adjustments = EXCLUDED.adjustments, credits = EXCLUDED.credits,"
                  " credits_micros = EXCLUDED.credits_micros,"
                  " credits_returned_micros = EXCLUDED.credits_returned_micros,"
                  " total_due_micros = EXCLUDED.total_due_micros,"
                  " total_due_minor = EXCLUDED.total_due_minor,"
                  " updated_at = now() WHERE invoices.status = 'draft' RETURNING *) SELECT ") +
      invoice_json + "::text FROM i";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  params.emplace_back(new_object_id("inv"));
  params.emplace_back(usage->currency);
  params.emplace_back(usage->book_id);
  params.emplace_back(std::to_string(digits));
  params.emplace_back(std::move(lines));
  params.emplace_back(unpriced_json(priced.unpriced));
  params.emplace_back(std::to_string(total_micros));
  params.emplace_back(std::to_string(total_minor));
  params.emplace_back(std::move(adjusted_json));
  params.emplace_back(std::move(credits_json));
  params.emplace_back(std::to_string(credits_total));
  params.emplace_back(std::to_string(credits_returned));
  params.emplace_back(std::to_string(total_micros - credits_total));
  params.emplace_back(std::to_string(total_minor - credit_minor.total));
  std::string not_found = "The invoice of " + tenant_id + " for " + period + " was not written.";
  co_return co_await one_object(std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> account_store::finalized_invoice(std::string tenant_id,
                                                             std::string period) {
  std::string sql = std::string("SELECT ") + invoice_json +
                    "::text FROM invoices i WHERE i.tenant_id = $1 AND i.period = $2"
                    " AND i.status = 'finalized'";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  std::string not_found = "No finalized invoice of " + tenant_id + " for " + period + ".";
  co_return co_await one_object(std::move(sql), std::move(params), std::move(not_found));
}

net::awaitable<store_result> account_store::finalize_invoice(std::string tenant_id,
                                                            std::string period,
                                                            std::string actor) {
  std::string sql =
      std::string("WITH r AS (SELECT tollgate_credit_true_up(tenant_id, period,"
                  " credits_returned_micros) FROM invoices WHERE tenant_id = $1 AND period = $2"
                  " AND status = 'draft'),"
                  " i AS (UPDATE invoices SET status = 'finalized', finalized_at = now(),"
                  " number = 'TG-' || lpad(nextval('invoice_numbers')::text, 6, '0'),"
                  " updated_at = now() WHERE tenant_id = $1 AND period = $2 AND status = 'draft'"
                  " AND (SELECT count(*) FROM r) >= 0 RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $3, 'invoice.finalize', i.tenant_id, 'invoice', i.id,"
                  " jsonb_build_object('number', i.number, 'total_micros', i.total_micros) FROM i)"
                  " SELECT ") +
      invoice_json + "::text FROM i";
  std::vector<pg::param> params;
  params.emplace_back(tenant_id);
  params.emplace_back(period);
  params.emplace_back(std::move(actor));
  std::string not_found = "No draft invoice of " + tenant_id + " for " + period + ".";
  auto finalized = co_await one_object(std::move(sql), std::move(params), std::move(not_found));
  if (finalized || finalized.error().status != 404) co_return finalized;
  co_return co_await finalized_invoice(std::move(tenant_id), std::move(period));
}

net::awaitable<pg::db_result<std::vector<std::string>>> account_store::tenants_with_plans() {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql = "SELECT DISTINCT tenant_id FROM tenant_plans ORDER BY tenant_id";
  auto r = co_await (*conn)->query(sql);
  if (!r) co_return r.error();
  std::vector<std::string> out;
  for (int i = 0; i < r->size(); ++i) out.emplace_back(r->text(i, 0));
  co_return out;
}

net::awaitable<store_result> account_store::get_invoice(std::string id) {
  return one_object(std::string("SELECT ") + invoice_json + "::text FROM invoices i WHERE i.id = $1",
                    {id}, "No invoice with id " + id + ".");
}

net::awaitable<store_result> account_store::list_invoices(std::string tenant_id,
                                                         std::string period,
                                                         page_request page) {
  return one_object(
      page_sql(invoice_json,
               "(SELECT i.*, i.id AS x_id FROM invoices i) i WHERE ($3::text = '' OR"
               " i.tenant_id = $3) AND ($4::text = '' OR i.period = $4)",
               1, 2),
      {std::to_string(page.limit), page.after, std::move(tenant_id), std::move(period)},
      "Nothing to list.");
}

net::awaitable<store_result> account_store::run_invoices(std::string period,
                                                        std::string tenant_id, bool finalize,
                                                        std::int64_t now_s,
                                                        std::int64_t grace_s,
                                                        std::string actor) {
  const auto bounds = period_bounds(period);
  if (!bounds) co_return store_error{400, "period must be YYYY-MM.", "invalid_value"};
  if (finalize && now_s < bounds->second + grace_s) {
    co_return store_error{400,
                          "The invoices of " + period + " can be finalized from " +
                              std::to_string(bounds->second + grace_s) +
                              " (unix s): the period's end plus the grace period for late "
                              "events (invoices.grace_hours).",
                          "too_early"};
  }
  std::vector<std::string> tenants;
  if (!tenant_id.empty()) {
    tenants.push_back(tenant_id);
  } else {
    auto all = co_await tenants_with_plans();
    if (!all) co_return unavailable(all.error());
    tenants = std::move(*all);
  }
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& t : tenants) {
    // A finalized invoice comes back from draft_invoice unchanged; finalize_invoice then
    // finds no draft and answers with it again.
    auto invoice = co_await draft_invoice(t, period);
    if (invoice && finalize) invoice = co_await finalize_invoice(t, period, actor);
    if (!invoice) {
      if (!tenant_id.empty()) co_return invoice.error();
      // One tenant's failure does not stop the run; it is reported in the list.
      json_object_writer w;
      w.add("object", "invoice.error").add("tenant_id", t).add("period", period)
          .add("error", invoice.error().message);
      out += (first ? "" : ",") + w.finish();
    } else {
      out += (first ? "" : ",") + *invoice;
    }
    first = false;
  }
  co_return out + "],\"has_more\":false}";
}

}  // namespace tollgate::billing

// ---- credits ---------------------------------------------------------------------------------

namespace tollgate::billing {

namespace {

// A grant with its balance (g: credit_grants, a: its account).
const char* const credit_grant_json =
    "json_build_object('object','credit_grant','id',g.id,'tenant_id',g.tenant_id,'kind',g.kind,"
    "'amount_micros',g.amount_micros,'price_paid_micros',g.price_paid_micros,"
    "'balance_micros',a.balance_micros,"
    "'effective_at',extract(epoch from g.effective_at)::bigint,"
    "'expires_at',extract(epoch from g.expires_at)::bigint,"
    "'expired',coalesce(g.expires_at <= now(), false),'priority',g.priority,'models',g.models,"
    "'memo',g.memo,'created_at',extract(epoch from g.created_at)::bigint)";

// Drawdown order.
const char* const drawdown_order = "g.priority, g.expires_at NULLS LAST, g.effective_at, g.id";

}  // namespace

net::awaitable<store_result> account_store::grant_credit(credit_grant_spec spec,
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
  auto made = co_await one_object(std::move(sql), std::move(params), "The grant was not made.");
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

net::awaitable<store_result> account_store::get_credit_grant(std::string id) {
  std::string sql = std::string("SELECT ") + credit_grant_json +
                    "::text FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id"
                    " WHERE g.id = $1";
  std::vector<pg::param> params;
  params.emplace_back(id);
  co_return co_await one_object(std::move(sql), std::move(params),
                                "No credit grant with id " + id + ".");
}

net::awaitable<store_result> account_store::credit_balance(std::string tenant_id) {
  std::string sql =
      std::string(
          "SELECT CASE WHEN EXISTS (SELECT 1 FROM tenants WHERE id = $1) THEN"
          " json_build_object('object','credit_balance','tenant_id',$1::text,"
          "'available_micros',(SELECT coalesce(sum(a.balance_micros), 0) FROM credit_grants g"
          " JOIN credit_accounts a ON a.grant_id = g.id WHERE g.tenant_id = $1"
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
  co_return co_await one_object(std::move(sql), std::move(params),
                                "No tenant with id " + tenant_id + ".");
}

net::awaitable<store_result> account_store::credit_transfers(std::string tenant_id,
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
  co_return co_await one_object(std::move(sql), std::move(params),
                                "No tenant with id " + tenant_id + ".");
}

net::awaitable<store_result> account_store::expire_credits(std::int64_t at_s) {
  std::string sql =
      "SELECT json_build_object('object','credit_expiry','expired',"
      "tollgate_expire_credits(to_timestamp($1::bigint)))::text";
  std::vector<pg::param> params;
  params.emplace_back(std::to_string(at_s));
  co_return co_await one_object(std::move(sql), std::move(params), "");
}

net::awaitable<basic_result<std::vector<account_store::applied_credit>, store_error>>
account_store::applied_credits(std::string tenant_id, std::string period) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return unavailable(conn.error());
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
          " ORDER BY t.period = $2 DESC, t.period, ") +
      drawdown_order;
  std::vector<pg::param> drawn_params;
  drawn_params.emplace_back(tenant_id);
  drawn_params.emplace_back(period);
  auto drawn = co_await (*conn)->query(drawn_sql, std::move(drawn_params));
  if (!drawn) co_return from_db(drawn.error());
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
  if (!listed) co_return from_db(listed.error());
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

// ---- rating state (the cost header) ------------------------------------------------------------

namespace tollgate::billing {

net::awaitable<pg::db_result<account_store::rating_state>> account_store::load_rating_state(
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
      "SELECT model, token_class, batch, position, charged_micros FROM rating_accumulators"
      " WHERE tenant_id = $1 AND period = $2";
  std::vector<pg::param> acc_params{tenant_id, period};
  auto acc = co_await (*conn)->query(acc_sql, std::move(acc_params));
  if (!acc) co_return acc.error();
  for (int i = 0; i < acc->size(); ++i) {
    state.accumulators[{tenant_id, period, std::string(acc->text(i, 0)),
                        std::string(acc->text(i, 1)), acc->boolean(i, 2)}] =
        accumulator_state{acc->int64(i, 3), acc->int64(i, 4)};
  }
  co_return state;
}

}  // namespace tollgate::billing
