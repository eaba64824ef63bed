// The admin API's handlers for tenants, projects, API keys and the audit log: one function per
// route of admin_router.cpp's table.
#include "billing/tenant_store.hpp"
#include "core/limits.hpp"
#include "gateway/admin_routes.hpp"

namespace tollgate::gateway::routes {

using limits::unix_seconds_max;

// ---- tenants ---------------------------------------------------------------------------------

handler_result create_tenant(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "time_zone"});
  auto name = body.name("name", true);
  auto zone = body.name("time_zone", false);
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(c.billing().tenants->create_tenant(*name, zone, c.actor), 201);
}

handler_result list_tenants(route_call& c) {
  co_await c.reply(c.billing().tenants->list_tenants(c.page));
}

handler_result get_tenant(route_call& c) {
  co_await c.reply(c.billing().tenants->get_tenant(c.id));
}

handler_result update_tenant(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "status", "time_zone"});
  auto name = body.name("name", false);
  auto status = body.status("active", "disabled");
  auto zone = body.name("time_zone", false);
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(c.billing().tenants->update_tenant(c.id, name, status, zone, c.actor));
}

// ---- projects --------------------------------------------------------------------------------

handler_result create_tenant_project(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "default_tags"});
  auto name = body.name("name", true);
  auto tags = body.tags("default_tags");
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(
      c.billing().tenants->create_project(c.id, *name, tags.value_or(std::nullopt), c.actor),
      201);
}

handler_result list_tenant_projects(route_call& c) {
  co_await c.reply(c.billing().tenants->list_projects(c.id, c.page));
}

handler_result create_project(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"tenant_id", "name", "default_tags"});
  auto tenant = body.name("tenant_id", true);
  auto name = body.name("name", true);
  auto tags = body.tags("default_tags");
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(
      c.billing().tenants->create_project(*tenant, *name, tags.value_or(std::nullopt), c.actor),
      201);
}

handler_result list_projects(route_call& c) {
  co_await c.reply(
      c.billing().tenants->list_projects(c.query.get("tenant_id").value_or(""), c.page));
}

handler_result get_project(route_call& c) {
  co_await c.reply(c.billing().tenants->get_project(c.id));
}

handler_result update_project(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "status", "default_tags"});
  auto name = body.name("name", false);
  auto status = body.status("active", "disabled");
  auto tags = body.tags("default_tags");
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(c.billing().tenants->update_project(c.id, name, status, tags.has_value(),
                                                       tags.value_or(std::nullopt), c.actor));
}

// ---- API keys --------------------------------------------------------------------------------

handler_result create_key(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown(
      {"tenant_id", "project_id", "name", "expires_at", "allowed_models", "default_tags"});
  billing::tenant_store::key_spec spec;
  auto tenant = body.name("tenant_id", true);
  auto project = body.name("project_id", false);
  auto name = body.name("name", false);
  auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
  auto models = body.models("allowed_models");
  auto tags = body.tags("default_tags");
  if (!body.ok()) co_return co_await c.fail(body.error());
  spec.default_tags = tags.value_or(std::nullopt);
  spec.tenant_id = *tenant;
  spec.project_id = project.value_or("");
  spec.name = name.value_or("");
  if (expires) spec.expires_at_s = *expires;
  if (models) spec.allowed_models = *models;
  co_await c.reply(c.billing().tenants->create_key(spec, c.actor), 201);
}

handler_result list_keys(route_call& c) {
  co_await c.reply(c.billing().tenants->list_keys(c.query.get("tenant_id").value_or(""),
                                                  c.query.get("project_id").value_or(""), c.page));
}

handler_result get_key(route_call& c) {
  co_await c.reply(c.billing().tenants->get_key(c.id));
}

handler_result update_key(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "expires_at", "allowed_models", "default_tags"});
  billing::tenant_store::key_update u;
  u.name = body.name("name", false);
  auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
  auto models = body.models("allowed_models");
  auto tags = body.tags("default_tags");
  if (!body.ok()) co_return co_await c.fail(body.error());
  u.set_tags = tags.has_value();
  u.default_tags = tags.value_or(std::nullopt);
  u.set_expires = expires.has_value();
  if (expires) u.expires_at_s = *expires;
  u.set_models = models.has_value();
  if (models) u.allowed_models = *models;
  co_await c.reply(c.billing().tenants->update_key(c.id, u, c.actor));
}

// POST /admin/v1/keys/{id}/revoke (its body, if any, must still be a JSON object) and
// DELETE /admin/v1/keys/{id}.
handler_result revoke_key(route_call& c) {
  if (const body_reader body = c.body(); !body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(c.billing().tenants->revoke_key(c.id, c.actor));
}

handler_result rotate_key(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"grace_seconds"});
  auto grace = body.nullable_int("grace_seconds", 0, limits::key_rotate_grace_s_max);
  if (!body.ok()) co_return co_await c.fail(body.error());
  const std::int64_t g = grace && *grace ? **grace : 0;
  co_await c.reply(c.billing().tenants->rotate_key(c.id, g, c.actor), 201);
}

// ---- the audit log ---------------------------------------------------------------------------

handler_result list_audit_log(route_call& c) {
  co_await c.reply(c.billing().tenants->list_audit(c.query.get("tenant_id").value_or(""), c.page));
}

}  // namespace tollgate::gateway::routes
