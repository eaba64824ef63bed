// The tenant store: see tenant_store.hpp.
#include "billing/tenant_store.hpp"

#include "billing/api_keys.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

const char* const tenant_json =
    "json_build_object('object','tenant','id',t.id,'name',t.name,'status',t.status,"
    "'time_zone',t.time_zone,'created_at',extract(epoch from t.created_at)::bigint)";
const char* const project_json =
    "json_build_object('object','project','id',p.id,'tenant_id',p.tenant_id,'name',p.name,"
    "'status',p.status,'default_tags',p.default_tags,"
    "'created_at',extract(epoch from p.created_at)::bigint)";
const char* const key_json =
    "json_build_object('object','api_key','id',k.id,'tenant_id',k.tenant_id,"
    "'project_id',k.project_id,'name',k.name,'redacted_value',k.prefix || '...',"
    "'status',CASE WHEN k.status = 'active' AND k.expires_at IS NOT NULL AND k.expires_at <= now()"
    " THEN 'expired' ELSE k.status END,'allowed_models',k.allowed_models,"
    "'default_tags',k.default_tags,"
    "'created_at',extract(epoch from k.created_at)::bigint,"
    "'expires_at',extract(epoch from k.expires_at)::bigint,"
    "'revoked_at',extract(epoch from k.revoked_at)::bigint)";

}  // namespace

net::awaitable<pg::db_result<std::optional<key_info>>> tenant_store::find_key(
    std::string key_sha256) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "SELECT k.id, k.tenant_id, coalesce(k.project_id, ''), k.status, t.status,"
      " coalesce(p.status, 'active'),"
      " coalesce((extract(epoch from k.expires_at) * 1000)::bigint, 0),"
      " k.allowed_models IS NOT NULL, array_to_string(k.allowed_models, E'\\n'),"
      " coalesce(k.default_tags::text, ''), coalesce(p.default_tags::text, '')"
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
  if (r->boolean(0, 7)) k.allowed_models = split_list(r->text(0, 8), '\n');
  k.default_tags = metering::merge_tags(metering::tags_from_json_text(r->text(0, 9)),
                                       metering::tags_from_json_text(r->text(0, 10)));
  co_return std::optional<key_info>{std::move(k)};
}

// ---- tenants ---------------------------------------------------------------------------------

net::awaitable<store_result> tenant_store::create_tenant(std::string name,
                                                         std::optional<std::string> time_zone,
                                                         std::string actor) {
  // AT TIME ZONE refuses an unknown zone (SQLSTATE 22023, a 400).
  return one_object(
      pool_,
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

net::awaitable<store_result> tenant_store::get_tenant(std::string id) {
  return one_object(
      pool_,
      std::string("SELECT ") + tenant_json + "::text FROM tenants t WHERE t.id = $1", {id},
      "No tenant with id " + id + ".");
}

net::awaitable<store_result> tenant_store::list_tenants(page_request page) {
  return one_object(
      pool_,
      page_sql(tenant_json, "(SELECT t.*, t.id AS x_id FROM tenants t) t WHERE true", 1, 2),
      {std::to_string(page.limit), page.after}, "No tenants.");
}

net::awaitable<store_result> tenant_store::update_tenant(std::string id,
                                                         std::optional<std::string> name,
                                                         std::optional<std::string> status,
                                                         std::optional<std::string> time_zone,
                                                         std::string actor) {
  return one_object(
      pool_,
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

net::awaitable<store_result> tenant_store::create_project(std::string tenant_id,
                                                          std::string name,
                                                          std::optional<std::string> default_tags,
                                                          std::string actor) {
  return one_object(
      pool_,
      std::string("WITH p AS (INSERT INTO projects (tenant_id, id, name, default_tags)"
                  " VALUES ($1, $2, $3, $5::jsonb) RETURNING *), a AS (INSERT INTO audit_log (actor, action, tenant_id,"
                  " object_type, object_id, after) SELECT $4, 'project.create', p.tenant_id,"
                  " 'project', p.id, to_jsonb(p) FROM p) SELECT ") +
          project_json + "::text FROM p",
      {tenant_id, new_object_id("proj"), std::move(name), std::move(actor),
       std::move(default_tags)},
      "Project of tenant " + tenant_id);
}

net::awaitable<store_result> tenant_store::get_project(std::string id) {
  return one_object(
      pool_,
      std::string("SELECT ") + project_json + "::text FROM projects p WHERE p.id = $1", {id},
      "No project with id " + id + ".");
}

net::awaitable<store_result> tenant_store::list_projects(std::string tenant_id,
                                                         page_request page) {
  return tenant_page(pool_, project_json, "projects", "p", std::move(tenant_id), page);
}

net::awaitable<store_result> tenant_store::update_project(std::string id,
                                                          std::optional<std::string> name,
                                                          std::optional<std::string> status,
                                                          bool set_tags,
                                                          std::optional<std::string> default_tags,
                                                          std::string actor) {
  return one_object(
      pool_,
      std::string("WITH b AS (SELECT * FROM projects WHERE id = $1 FOR UPDATE),"
                  " p AS (UPDATE projects SET name = coalesce($2, b.name),"
                  " status = coalesce($3, b.status), default_tags = CASE WHEN $5::boolean"
                  " THEN $6::jsonb ELSE b.default_tags END, updated_at = now() FROM b"
                  " WHERE projects.id = b.id RETURNING projects.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $4, 'project.update', p.tenant_id, 'project', p.id,"
                  " to_jsonb(b), to_jsonb(p) FROM p, b) SELECT ") +
          project_json + "::text FROM p",
      {id, std::move(name), std::move(status), std::move(actor), set_tags ? "true" : "false",
       std::move(default_tags)},
      "No project with id " + id + ".");
}

// ---- API keys --------------------------------------------------------------------------------

namespace {
const char* const key_audit_json = "(to_jsonb(k) - 'key_sha256')";
}

net::awaitable<store_result> tenant_store::create_key(key_spec spec, std::string actor) {
  const std::string secret = new_api_key();
  const std::string prefix = secret.substr(0, api_key_prefix.size() + key_display_chars);
  pg::param expires;
  if (spec.expires_at_s) expires = std::to_string(*spec.expires_at_s);
  pg::param models;
  if (spec.allowed_models) models = pg::text_array(*spec.allowed_models);
  pg::param project;
  if (!spec.project_id.empty()) project = spec.project_id;
  return one_object(
      pool_,
      std::string("WITH k AS (INSERT INTO api_keys (tenant_id, id, project_id, name, prefix,"
                  " key_sha256, expires_at, allowed_models, default_tags) VALUES ($1, $2, $3, $4,"
                  " $5, $6::bytea, to_timestamp($7::bigint), $8::text[], $11::jsonb) RETURNING *),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " after) SELECT $9, 'key.create', k.tenant_id, 'api_key', k.id, ") +
          key_audit_json + " FROM k) SELECT (" + key_json +
          "::jsonb || jsonb_build_object('key', $10::text))::text FROM k",
      {spec.tenant_id, new_object_id("key"), project, spec.name, prefix,
       hex_bytea(sha256_bytes(secret)), expires, models, std::move(actor), secret,
       std::move(spec.default_tags)},
      "Key for tenant " + spec.tenant_id);
}

net::awaitable<store_result> tenant_store::get_key(std::string id) {
  return one_object(
      pool_,
      std::string("SELECT ") + key_json + "::text FROM api_keys k WHERE k.id = $1", {id},
      "No API key with id " + id + ".");
}

net::awaitable<store_result> tenant_store::list_keys(std::string tenant_id,
                                                     std::string project_id, page_request page) {
  return one_object(
      pool_,
      page_sql(key_json,
               "(SELECT k.*, k.id AS x_id FROM api_keys k) k WHERE ($3::text = '' OR "
               "k.tenant_id = $3) AND ($4::text = '' OR k.project_id = $4)",
               1, 2),
      {std::to_string(page.limit), page.after, tenant_id, project_id}, "No keys.");
}

net::awaitable<store_result> tenant_store::update_key(std::string id, key_update u,
                                                      std::string actor) {
  pg::param expires;
  if (u.expires_at_s) expires = std::to_string(*u.expires_at_s);
  pg::param models;
  if (u.allowed_models) models = pg::text_array(*u.allowed_models);
  return one_object(
      pool_,
      std::string("WITH b AS (SELECT * FROM api_keys WHERE id = $1 FOR UPDATE),"
                  " k AS (UPDATE api_keys SET name = coalesce($2, b.name),"
                  " expires_at = CASE WHEN $3::boolean THEN to_timestamp($4::bigint)"
                  " ELSE b.expires_at END,"
                  " allowed_models = CASE WHEN $5::boolean THEN $6::text[] ELSE b.allowed_models END,"
                  " default_tags = CASE WHEN $8::boolean THEN $9::jsonb ELSE b.default_tags END"
                  " FROM b WHERE api_keys.id = b.id RETURNING api_keys.*),"
                  " a AS (INSERT INTO audit_log (actor, action, tenant_id, object_type, object_id,"
                  " before, after) SELECT $7, 'key.update', k.tenant_id, 'api_key', k.id,"
                  " (to_jsonb(b) - 'key_sha256'), ") +
          key_audit_json + " FROM k, b) SELECT " + key_json + "::text FROM k",
      {id, u.name, u.set_expires ? "true" : "false", expires, u.set_models ? "true" : "false",
       models, std::move(actor), u.set_tags ? "true" : "false", std::move(u.default_tags)},
      "No API key with id " + id + ".");
}

net::awaitable<store_result> tenant_store::revoke_key(std::string id, std::string actor) {
  return one_object(
      pool_,
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

net::awaitable<store_result> tenant_store::rotate_key(std::string id, std::int64_t grace_s,
                                                      std::string actor) {
  const std::string secret = new_api_key();
  const std::string prefix = secret.substr(0, api_key_prefix.size() + key_display_chars);
  // One statement: the new key, the old key's end (revoked now, or expiring after the grace
  // period), and both audit rows.
  return one_object(
      pool_,
      std::string(
          "WITH b AS (SELECT * FROM api_keys WHERE id = $1 AND status = 'active' FOR UPDATE),"
          " old AS (UPDATE api_keys SET"
          " status = CASE WHEN $5::bigint = 0 THEN 'revoked' ELSE status END,"
          " revoked_at = CASE WHEN $5::bigint = 0 THEN now() ELSE revoked_at END,"
          " expires_at = CASE WHEN $5::bigint = 0 THEN expires_at"
          " ELSE least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $5::bigint))"
          " END WHERE id IN (SELECT id FROM b) RETURNING *),"
          " k AS (INSERT INTO api_keys (tenant_id, id, project_id, name, prefix, key_sha256,"
          " expires_at, allowed_models, default_tags) SELECT b.tenant_id, $2, b.project_id,"
          " b.name, $3, $4::bytea, b.expires_at, b.allowed_models, b.default_tags FROM b"
          " RETURNING *),"
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

net::awaitable<store_result> tenant_store::list_audit(std::string tenant_id, page_request page) {
  return one_object(
      pool_,
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

}  // namespace tollgate::billing
