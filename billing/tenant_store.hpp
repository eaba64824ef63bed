// The tenant store: tenants, projects, API keys (create, list, update, revoke, rotate; the key
// look-up authentication needs) and the audit log in PostgreSQL. Every method is a coroutine on
// the billing executor using the shared connection pool. Objects come back as the JSON the admin
// API shows (rendered by PostgreSQL's json_build_object, so there is one definition of each
// shape); every change and its audit_log row are written by one statement.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/pg.hpp"
#include "billing/store_common.hpp"
#include "metering/attribution.hpp"

namespace tollgate::billing {

// What authentication needs to know about a key.
struct key_info {
  std::string key_id;
  std::string tenant_id;
  std::string project_id;                     // "" if the key is tenant-wide
  bool active = false;                        // key active and tenant active
  std::string inactive_reason;                // "revoked", "tenant_disabled", "project_disabled"
  std::int64_t expires_at_ms = 0;             // 0 = never
  std::optional<std::vector<std::string>> allowed_models;  // nullopt = all
  // The key's default tags over its project's (metering/attribution.hpp).
  metering::tag_set default_tags;
};

class tenant_store {
 public:
  explicit tenant_store(pg::pool& pool) : pool_(pool) {}

  boost::asio::awaitable<pg::db_result<std::optional<key_info>>> find_key(std::string key_sha256);

  // `time_zone`: an IANA name for the tenant's calendar budget windows (nullopt: UTC).
  boost::asio::awaitable<store_result> create_tenant(std::string name,
                                                     std::optional<std::string> time_zone,
                                                     std::string actor);
  boost::asio::awaitable<store_result> get_tenant(std::string id);
  boost::asio::awaitable<store_result> list_tenants(page_request page);
  boost::asio::awaitable<store_result> update_tenant(std::string id, std::optional<std::string> name,
                                                     std::optional<std::string> status,
                                                     std::optional<std::string> time_zone,
                                                     std::string actor);

  // `default_tags`: a compact JSON object of tags (metering/attribution.hpp), nullopt for none.
  boost::asio::awaitable<store_result> create_project(std::string tenant_id, std::string name,
                                                      std::optional<std::string> default_tags,
                                                      std::string actor);
  boost::asio::awaitable<store_result> get_project(std::string id);
  boost::asio::awaitable<store_result> list_projects(std::string tenant_id, page_request page);
  boost::asio::awaitable<store_result> update_project(std::string id,
                                                      std::optional<std::string> name,
                                                      std::optional<std::string> status,
                                                      bool set_tags,
                                                      std::optional<std::string> default_tags,
                                                      std::string actor);

  struct key_spec {
    std::string tenant_id;
    std::string project_id;  // "" = tenant-wide
    std::string name;
    std::optional<std::int64_t> expires_at_s;
    std::optional<std::vector<std::string>> allowed_models;
    std::optional<std::string> default_tags;  // compact JSON object
  };
  // The returned object carries the secret in "key": the only time it is ever shown.
  boost::asio::awaitable<store_result> create_key(key_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_key(std::string id);
  boost::asio::awaitable<store_result> list_keys(std::string tenant_id, std::string project_id,
                                                 page_request page);
  struct key_update {
    std::optional<std::string> name;
    bool set_expires = false;
    std::optional<std::int64_t> expires_at_s;  // with set_expires: nullopt clears it
    bool set_models = false;
    std::optional<std::vector<std::string>> allowed_models;
    bool set_tags = false;
    std::optional<std::string> default_tags;  // with set_tags: nullopt clears them
  };
  boost::asio::awaitable<store_result> update_key(std::string id, key_update update,
                                                  std::string actor);
  boost::asio::awaitable<store_result> revoke_key(std::string id, std::string actor);
  // A new key with the same tenant, project, name and allowlist; the old one stops working
  // after `grace_s` seconds (0: at once).
  boost::asio::awaitable<store_result> rotate_key(std::string id, std::int64_t grace_s,
                                                  std::string actor);

  boost::asio::awaitable<store_result> list_audit(std::string tenant_id, page_request page);

 private:
  pg::pool& pool_;
};

}  // namespace tollgate::billing
