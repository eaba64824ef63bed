// Configuration loading: JSON text -> defaults merged -> environment overrides -> typed,
// range-checked structs. Exceptions are fine here: this runs once, before serving.
#include "core/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/config_detail.hpp"
#include "core/limits.hpp"

namespace tollgate {
using namespace config_detail;
namespace {

constexpr std::string_view default_config_text = R"({
  "server": {
    "listen": "127.0.0.1:8080",
    "admin_listen": "127.0.0.1:8081"
  },
  "upstreams": {
    "infer": { "base_url": "http://127.0.0.1:8000/v1" }
  },
  "models": {
    "tiny-llama": { "upstream": "infer", "tokenizer": "llama3", "prompt_format": "llama3",
                    "context_tokens": 4096 }
  },
  "logging": { "level": "info", "usage_log": "stderr", "usage_log_flush_ms": 100 },
  "metering": { "tokenizer_dir": "", "n_max": 16 },
  "database": { "url": "", "pool_size": 4, "connect_timeout_ms": 2000,
                "statement_timeout_ms": 5000, "migrate_on_start": false },
  "ledger": { "flush_interval_ms": 50, "flush_events_max": 10000, "queue_events_max": 200000,
              "spool_dir": ".run/spool", "spool_bytes_max": 1073741824, "rate_events": true },
  "auth": { "admin_token": "", "finance_token": "", "key_cache_ttl_ms": 2000,
            "negative_key_cache_entries": 10000, "unknown_key_lookups_per_s": 10,
            "unknown_key_lookup_burst": 50 },
  "budgets": { "redis": "", "redis_cluster": false, "redis_password": "",
               "redis_tls": false, "redis_tls_ca_file": "", "redis_tls_cert_file": "",
               "redis_tls_key_file": "", "redis_tls_server_name": "", "failure_mode": "closed",
               "hold_ttl_ms": 660000, "settle_batch_ms": 0, "cache_ttl_ms": 1000,
               "leases": true, "lease_ms": 2000, "lease_flush_ms": 100,
               "lease_flush_far_ms": 1000, "lease_divisor": 8,
               "command_timeout_ms": 500,
               "alert_max_attempts": 8, "alert_webhook_ca_file": "",
               "alert_webhook_allow_private": false, "forecast_alert_interval_ms": 60000 },
  "invoices": { "grace_hours": 72 },
  "usage_reports": { "json_range_buckets_max": 100000, "csv_range_buckets_max": 527040 },
  "batches": { "enabled": true, "concurrency": 4, "poll_interval_ms": 500, "lease_ms": 30000,
               "yield_to_live_requests": 32, "max_file_bytes": 209715200,
               "max_file_lines": 50000 },
  "virtual_models": {},
  "console": { "enabled": true, "session_ttl_s": 28800, "sessions_max": 10000,
               "secure_cookies": false }
})";

// Server settings not given in the embedded text come from the named limits.
json server_defaults() {
  return json{
      {"threads", 0},
      {"max_connections", limits::max_connections_default},
      {"admin_max_connections", limits::admin_max_connections_default},
      {"header_limit_bytes", limits::header_limit_bytes_default},
      {"body_limit_bytes", limits::body_limit_bytes_default},
      {"request_read_timeout_ms", limits::request_read_timeout_ms_default},
      {"keepalive_idle_timeout_ms", limits::keepalive_idle_timeout_ms_default},
      {"client_write_timeout_ms", limits::client_write_timeout_ms_default},
      {"drain_timeout_ms", limits::drain_timeout_ms_default},
  };
}

// Defaults applied to every upstream entry before its own fields.
json upstream_defaults() {
  return json{
      {"base_url", ""},
      {"tls_ca_file", ""},
      {"tls_client_cert_file", ""},
      {"tls_client_key_file", ""},
      {"auth_env", ""},
      {"auth_file", ""},
      {"auth_header", ""},
      {"connect_timeout_ms", limits::upstream_connect_timeout_ms_default},
      {"first_byte_timeout_ms", limits::upstream_first_byte_timeout_ms_default},
      {"idle_timeout_ms", limits::upstream_idle_timeout_ms_default},
      {"max_idle_connections", limits::upstream_idle_connections_max_default},
      {"response_limit_bytes", limits::upstream_response_limit_bytes_default},
      {"endpoints", json::array()},
      {"eject_consecutive_failures", limits::upstream_eject_consecutive_failures_default},
      {"ejection_base_ms", limits::upstream_ejection_base_ms_default},
      {"ejection_max_ms", limits::upstream_ejection_max_ms_default},
      {"health_check_path", ""},
      {"health_check_interval_ms", limits::upstream_health_check_interval_ms_default},
      {"health_check_timeout_ms", limits::upstream_health_check_timeout_ms_default},
      {"health_check_healthy_threshold",
       limits::upstream_health_check_healthy_threshold_default},
      {"health_check_unhealthy_threshold",
       limits::upstream_health_check_unhealthy_threshold_default},
      {"attempts_max", limits::upstream_attempts_max_default},
      {"retry_budget_percent", limits::upstream_retry_budget_percent_default},
      {"retry_budget_min_retries", limits::upstream_retry_budget_min_retries_default},
      {"retry_after_max_ms", limits::upstream_retry_after_max_ms_default},
      {"concurrent_requests_max", 0},
      {"queue_requests_max", 0},
      {"queue_timeout_ms", limits::upstream_queue_timeout_ms_default},
      {"usage_fields", json{{"cache_write", "cache_creation_input_tokens"}}},
  };
}

json model_defaults() {
  json m{{"upstream", ""},
         {"upstream_model", ""},
         {"owned_by", "tollgate"},
         {"tokenizer", "o200k_base"},
         {"prompt_format", "openai"},
         {"context_tokens", 131072},
         {"estimate_input_price", 0},
         {"estimate_output_price", 0}};
  m.update(model_fallback_defaults());
  return m;
}

}  // namespace
namespace config_detail {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw config_error("config" + (path.empty() ? "" : " " + path) + ": " + what);
}

// Overlays `src` on `dst` for the keys that exist in `dst`; unknown keys are errors.
void overlay_known(json& dst, const json& src, const std::string& path) {
  if (!src.is_object()) fail(path, "must be an object");
  for (auto it = src.begin(); it != src.end(); ++it) {
    const std::string child = path + "/" + it.key();
    if (!dst.contains(it.key())) fail(child, "unknown field");
    dst[it.key()] = it.value();
  }
}

}  // namespace config_detail
namespace {

// Environment variable name for a JSON pointer path: /a/b-c/d_e -> TOLLGATE_A__B_C__D_E.
std::string env_name_for(const std::string& path) {
  std::string name = "TOLLGATE";
  for (char c : path) {
    if (c == '/') {
      name += name == "TOLLGATE" ? "_" : "__";
    } else if (std::isalnum(static_cast<unsigned char>(c))) {
      name.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    } else {
      name.push_back('_');
    }
  }
  return name;
}

// Replaces each scalar leaf with its environment override, if one is set.
void apply_env_overrides(json& node, const std::string& path, const env_lookup& env) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      apply_env_overrides(it.value(), path + "/" + it.key(), env);
    }
    return;
  }
  const std::string var = env_name_for(path);
  const char* raw = env(var.c_str());
  if (raw == nullptr) return;
  const std::string text(raw);
  if (node.is_string()) {
    node = text;
  } else if (node.is_boolean()) {
    if (text != "true" && text != "false") fail(path, var + " must be true or false");
    node = text == "true";
  } else if (node.is_number()) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) {
      fail(path, var + " must be a non-negative integer, got \"" + text + "\"");
    }
    node = v;
  }
}

}  // namespace
namespace config_detail {

std::uint64_t get_uint(const json& obj, const std::string& path, const char* key, std::uint64_t min,
                       std::uint64_t max) {
  const json& v = obj.at(key);
  const std::string p = path + "/" + key;
  if (!v.is_number_integer() ||
      (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0)) {
    fail(p, "must be a non-negative integer");
  }
  const auto n = v.get<std::uint64_t>();
  if (n < min || n > max) {
    fail(p, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                std::to_string(n));
  }
  return n;
}

bool get_bool(const json& obj, const std::string& path, const char* key) {
  const json& v = obj.at(key);
  if (!v.is_boolean()) fail(path + "/" + key, "must be true or false");
  return v.get<bool>();
}

std::string get_string(const json& obj, const std::string& path, const char* key) {
  const json& v = obj.at(key);
  if (!v.is_string()) fail(path + "/" + key, "must be a string");
  return v.get<std::string>();
}

}  // namespace config_detail
namespace {

listen_address get_listen(const json& obj, const std::string& path, const char* key) {
  listen_address a;
  const std::string text = get_string(obj, path, key);
  if (!parse_listen_address(text, a)) {
    fail(path + "/" + key, "must be host:port with a port in 1..65535, got \"" + text + "\"");
  }
  return a;
}

// Accepts http://host[:port][/path] and https://host[:port][/path] (ports 80 and 443 by default).
void parse_base_url(const std::string& url, const std::string& path,
                    upstream_endpoint_config& out) {
  constexpr std::string_view http = "http://";
  constexpr std::string_view https = "https://";
  std::string rest;
  if (url.rfind(http, 0) == 0) {
    rest = url.substr(http.size());
  } else if (url.rfind(https, 0) == 0) {
    rest = url.substr(https.size());
    out.tls = true;
  } else {
    fail(path, "must start with http:// or https://, got \"" + url + "\"");
  }
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  if (authority.find('@') != std::string::npos) {
    fail(path, "must not carry credentials (give the key by auth_env or auth_file)");
  }
  std::string base_path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  listen_address a;
  if (authority.find(':') == std::string::npos ||
      (authority.front() == '[' && authority.back() == ']')) {
    a.host = authority;
    a.port = out.tls ? 443 : 80;
  } else if (!parse_listen_address(authority, a)) {
    fail(path, "has a bad host:port, got \"" + url + "\"");
  }
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') {
    a.host = a.host.substr(1, a.host.size() - 2);
  }
  if (a.host.empty()) fail(path, "has no host, got \"" + url + "\"");
  out.host = a.host;
  out.port = a.port;
  out.base_path = base_path;
}

// A file setting must name a readable file; the message says which and why not.
void require_readable(const std::string& file, const std::string& path) {
  if (file.empty()) return;
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(path, "cannot read \"" + file + "\"");
}

// RFC 9110 token characters: what a header name may be made of.
bool is_header_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// The upstream's TLS files (https only; each must be readable now, so a typo stops start-up).
void parse_upstream_tls(const json& u, const std::string& path, upstream_config& up) {
  up.tls_ca_file = get_string(u, path, "tls_ca_file");
  up.tls_client_cert_file = get_string(u, path, "tls_client_cert_file");
  up.tls_client_key_file = get_string(u, path, "tls_client_key_file");
  for (const char* key : {"tls_ca_file", "tls_client_cert_file", "tls_client_key_file"}) {
    const std::string file = get_string(u, path, key);
    if (!file.empty() && !up.tls) fail(path + "/" + key, "applies only to https:// upstreams");
    require_readable(file, path + "/" + key);
  }
  if (up.tls_client_cert_file.empty() != up.tls_client_key_file.empty()) {
    fail(path + "/tls_client_key_file",
         "a client certificate needs both tls_client_cert_file and tls_client_key_file");
  }
}

// The upstream's API key, from auth_env or auth_file, and the header it goes in. Error messages
// name the variable or file, never the key.
void parse_upstream_auth(const json& u, const std::string& path, const env_lookup& env,
                         upstream_config& up) {
  up.auth_env = get_string(u, path, "auth_env");
  up.auth_file = get_string(u, path, "auth_file");
  up.auth_header = get_string(u, path, "auth_header");
  if (!up.auth_env.empty() && !up.auth_file.empty()) {
    fail(path + "/auth_file", "give the key by auth_env or auth_file, not both");
  }
  std::string key;
  if (!up.auth_env.empty()) {
    const char* value = env(up.auth_env.c_str());
    if (value == nullptr || *value == '\0') {
      fail(path + "/auth_env", "names " + up.auth_env + ", which is not set");
    }
    key = value;
  } else if (!up.auth_file.empty()) {
    std::ifstream in(up.auth_file, std::ios::binary);
    if (!in) fail(path + "/auth_file", "cannot read \"" + up.auth_file + "\"");
    std::ostringstream text;
    text << in.rdbuf();
    key = text.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (key.empty()) fail(path + "/auth_file", "\"" + up.auth_file + "\" is empty");
  }
  const bool bad_byte = std::any_of(key.begin(), key.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (bad_byte) {
    fail(path + (up.auth_env.empty() ? "/auth_file" : "/auth_env"),
         "the key holds a control character (a line break inside it?)");
  }
  if (!up.auth_header.empty()) {
    if (key.empty()) fail(path + "/auth_header", "needs a key from auth_env or auth_file");
    if (!is_header_name(up.auth_header)) {
      fail(path + "/auth_header", "is not a valid header name: \"" + up.auth_header + "\"");
    }
  }
  if (key.empty()) return;
  up.auth_header_name = up.auth_header.empty() ? "Authorization" : up.auth_header;
  up.auth_header_value = up.auth_header.empty() ? "Bearer " + key : key;
}

}  // namespace

bool parse_listen_address(std::string_view text, listen_address& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return false;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  out.host = std::string(host);
  out.port = static_cast<std::uint16_t>(value);
  return true;
}

env_lookup process_env() {
  return [](const char* name) { return std::getenv(name); };
}

std::string_view embedded_default_config() {
  return default_config_text;
}

const model_config* gateway_config::find_model(std::string_view name) const {
  auto it = std::lower_bound(models.begin(), models.end(), name,
                             [](const model_config& m, std::string_view n) { return m.name < n; });
  return it != models.end() && it->name == name ? &*it : nullptr;
}

const upstream_config* gateway_config::find_upstream(std::string_view name) const {
  auto it =
      std::lower_bound(upstreams.begin(), upstreams.end(), name,
                       [](const upstream_config& u, std::string_view n) { return u.name < n; });
  return it != upstreams.end() && it->name == name ? &*it : nullptr;
}

namespace {

// The file merged with the defaults, before environment overrides: every setting present.
json merge_with_defaults(const json& file) {
  // Merge: defaults for server/logging key by key; upstreams and models replace the defaults
  // as a whole when the file has them, and each entry gets the per-entry defaults.
  json merged = json::parse(default_config_text, nullptr, true, true);
  merged["server"].update(server_defaults());
  for (auto it = file.begin(); it != file.end(); ++it) {
    const std::string& key = it.key();
    if (key == "server" || key == "logging" || key == "metering" || key == "database" ||
        key == "ledger" || key == "auth" || key == "budgets" || key == "invoices" ||
        key == "usage_reports" || key == "batches" || key == "console") {
      overlay_known(merged[key], it.value(), "/" + key);
    } else if (key == "upstreams" || key == "models" || key == "virtual_models") {
      if (!it.value().is_object()) fail("/" + key, "must be an object keyed by name");
      merged[key] = it.value();
    } else {
      fail("/" + key, "unknown field");
    }
  }
  for (auto& [name, entry] : merged["upstreams"].items()) {
    json full = upstream_defaults();
    overlay_known(full, entry, "/upstreams/" + name);
    entry = std::move(full);
  }
  for (auto& [name, entry] : merged["models"].items()) {
    json full = model_defaults();
    overlay_known(full, entry, "/models/" + name);
    entry = std::move(full);
  }
  for (auto& [name, entry] : merged["virtual_models"].items()) {
    json full = virtual_model_defaults();
    overlay_known(full, entry, "/virtual_models/" + name);
    entry = std::move(full);
  }
  return merged;
}

}  // namespace

std::string default_settings_json() {
  return merge_with_defaults(json::object()).dump(2);
}

namespace {

// Each section of the merged settings into its typed struct (parse_config's steps).
void parse_server(const json& merged, gateway_config& cfg) {
  const json& s = merged["server"];
  auto& sv = cfg.server;
  sv.listen = get_listen(s, "/server", "listen");
  sv.admin_listen = get_listen(s, "/server", "admin_listen");
  sv.threads = static_cast<unsigned>(get_uint(s, "/server", "threads", 0, 256));
  sv.max_connections = get_uint(s, "/server", "max_connections", 1, 1'000'000);
  sv.admin_max_connections = get_uint(s, "/server", "admin_max_connections", 1, 1'000'000);
  sv.header_limit_bytes = get_uint(s, "/server", "header_limit_bytes", 1024, 1024 * 1024);
  sv.body_limit_bytes =
      get_uint(s, "/server", "body_limit_bytes", 1024, limits::body_limit_bytes_max);
  sv.request_read_timeout_ms = get_uint(s, "/server", "request_read_timeout_ms", 100, 3'600'000);
  sv.keepalive_idle_timeout_ms =
      get_uint(s, "/server", "keepalive_idle_timeout_ms", 100, 3'600'000);
  sv.client_write_timeout_ms = get_uint(s, "/server", "client_write_timeout_ms", 100, 3'600'000);
  sv.drain_timeout_ms = get_uint(s, "/server", "drain_timeout_ms", 0, 3'600'000);
  if (sv.listen.to_string() == sv.admin_listen.to_string()) {
    fail("/server/admin_listen", "must differ from /server/listen");
  }

}

// The upstream's endpoints: `base_url` (one), or `endpoints` (several, with weights).
void parse_endpoints(const json& u, const std::string& path, upstream_config& up) {
  const std::string base_url = get_string(u, path, "base_url");
  const json& list = u.at("endpoints");
  if (!list.is_array()) fail(path + "/endpoints", "must be an array");
  if (base_url.empty() == list.empty()) {
    fail(path, "give either base_url or endpoints (a non-empty array), not both");
  }
  if (list.size() > limits::upstream_endpoints_max) {
    fail(path + "/endpoints", "holds more than " +
                                  std::to_string(limits::upstream_endpoints_max) + " endpoints");
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < std::max<std::size_t>(list.size(), 1); ++i) {
    const std::string at = path + "/endpoints/" + std::to_string(i);
    upstream_endpoint_config e;
    if (list.empty()) {
      parse_base_url(base_url, path + "/base_url", e);
      e.name = base_url;
    } else {
      json full = json{{"base_url", ""}, {"weight", 1}, {"name", ""}};
      overlay_known(full, list[i], at);
      const std::string url = get_string(full, at, "base_url");
      parse_base_url(url, at + "/base_url", e);
      e.weight = get_uint(full, at, "weight", 1, limits::upstream_endpoint_weight_max);
      e.name = get_string(full, at, "name");
      if (e.name.empty()) e.name = url;
    }
    if (!names.insert(e.name).second) fail(at, "repeats the endpoint \"" + e.name + "\"");
    up.tls = up.tls || e.tls;
    up.endpoints.push_back(std::move(e));
  }
  up.host = up.endpoints.front().host;
  up.port = up.endpoints.front().port;
  up.base_path = up.endpoints.front().base_path;
}

// Where the upstream's usage object reports what OpenAI's shape has no field for: a member
// name, or "parent.member" one object down (docs/CONFIG.md, "usage_fields").
void parse_usage_fields(const json& u, const std::string& path, upstream_config& up) {
  const json& fields = u.at("usage_fields");
  const std::string at = path + "/usage_fields";
  if (!fields.is_object()) fail(at, "must be an object");
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it.key() != "cache_write") fail(at + "/" + it.key(), "unknown field (cache_write)");
  }
  up.usage_cache_write_field =
      fields.contains("cache_write") ? get_string(fields, at, "cache_write") : "";
  const std::string& f = up.usage_cache_write_field;
  const auto is_name = [](std::string_view n) {
    return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  };
  const std::size_t dot = f.find('.');
  if (!f.empty() &&
      !(dot == std::string::npos ? is_name(f)
                                 : is_name(std::string_view(f).substr(0, dot)) &&
                                       is_name(std::string_view(f).substr(dot + 1)))) {
    fail(at + "/cache_write", "must be a member name or \"parent.member\" (letters, digits, _)");
  }
}

// Health, retries and the per-thread concurrency cap (docs/CONFIG.md, "Replicas").
void parse_upstream_routing(const json& u, const std::string& path, upstream_config& up) {
  up.eject_consecutive_failures = get_uint(u, path, "eject_consecutive_failures", 0, 1'000'000);
  up.ejection_base_ms = get_uint(u, path, "ejection_base_ms", 1, 3'600'000);
  up.ejection_max_ms = get_uint(u, path, "ejection_max_ms", 1, 86'400'000);
  if (up.ejection_max_ms < up.ejection_base_ms) {
    fail(path + "/ejection_max_ms", "must be at least ejection_base_ms");
  }
  up.health_check_path = get_string(u, path, "health_check_path");
  if (!up.health_check_path.empty() &&
      (up.health_check_path.front() != '/' ||
       up.health_check_path.find_first_of(" \r\n\t") != std::string::npos)) {
    fail(path + "/health_check_path", "must be a path starting with / (no spaces)");
  }
  up.health_check_interval_ms = get_uint(u, path, "health_check_interval_ms", 100, 3'600'000);
  up.health_check_timeout_ms = get_uint(u, path, "health_check_timeout_ms", 10, 600'000);
  up.health_check_healthy_threshold =
      get_uint(u, path, "health_check_healthy_threshold", 1, 1000);
  up.health_check_unhealthy_threshold =
      get_uint(u, path, "health_check_unhealthy_threshold", 1, 1000);
  up.attempts_max = get_uint(u, path, "attempts_max", 1, limits::upstream_attempts_max_max);
  up.retry_budget_percent = get_uint(u, path, "retry_budget_percent", 0, 100);
  up.retry_budget_min_retries = get_uint(u, path, "retry_budget_min_retries", 0, 1'000'000);
  up.retry_after_max_ms = get_uint(u, path, "retry_after_max_ms", 0, 3'600'000);
  up.concurrent_requests_max = get_uint(u, path, "concurrent_requests_max", 0, 1'000'000);
  up.queue_requests_max = get_uint(u, path, "queue_requests_max", 0, 1'000'000);
  up.queue_timeout_ms = get_uint(u, path, "queue_timeout_ms", 1, 3'600'000);
  if (up.concurrent_requests_max == 0 && up.queue_requests_max > 0) {
    fail(path + "/queue_requests_max", "needs concurrent_requests_max (a queue waits for a cap)");
  }
}

void parse_upstreams(const json& merged, const env_lookup& env, gateway_config& cfg) {
  for (const auto& [name, u] : merged["upstreams"].items()) {
    const std::string path = "/upstreams/" + name;
    if (name.empty()) fail(path, "upstream names must not be empty");
    upstream_config up;
    up.name = name;
    parse_endpoints(u, path, up);
    parse_upstream_routing(u, path, up);
    parse_usage_fields(u, path, up);
    parse_upstream_tls(u, path, up);
    parse_upstream_auth(u, path, env, up);
    up.connect_timeout_ms = get_uint(u, path, "connect_timeout_ms", 1, 600'000);
    up.first_byte_timeout_ms = get_uint(u, path, "first_byte_timeout_ms", 1, 3'600'000);
    up.idle_timeout_ms = get_uint(u, path, "idle_timeout_ms", 1, 3'600'000);
    up.max_idle_connections = get_uint(u, path, "max_idle_connections", 0, 100'000);
    up.response_limit_bytes =
        get_uint(u, path, "response_limit_bytes", 1024, limits::body_limit_bytes_max);
    cfg.upstreams.push_back(std::move(up));
  }
  std::sort(cfg.upstreams.begin(), cfg.upstreams.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

}

void parse_models(const json& merged, gateway_config& cfg) {
  for (const auto& [name, m] : merged["models"].items()) {
    const std::string path = "/models/" + name;
    if (name.empty()) fail(path, "model names must not be empty");
    model_config model;
    model.name = name;
    model.upstream = get_string(m, path, "upstream");
    if (cfg.find_upstream(model.upstream) == nullptr) {
      fail(path + "/upstream",
           "names an upstream that is not configured: \"" + model.upstream + "\"");
    }
    model.upstream_model = get_string(m, path, "upstream_model");
    if (model.upstream_model.empty()) model.upstream_model = name;
    model.owned_by = get_string(m, path, "owned_by");
    model.tokenizer = get_string(m, path, "tokenizer");
    if (model.tokenizer.empty()) fail(path + "/tokenizer", "must name a tokenizer");
    model.prompt_format = get_string(m, path, "prompt_format");
    if (model.prompt_format != "openai" && model.prompt_format != "llama3" &&
        model.prompt_format != "chatml") {
      fail(path + "/prompt_format",
           "must be openai, llama3 or chatml, got \"" + model.prompt_format + "\"");
    }
    model.context_tokens = get_uint(m, path, "context_tokens", 1, 100'000'000);
    // Up to a million currency units per million tokens.
    model.estimate_input_price = get_uint(m, path, "estimate_input_price", 0, 1'000'000'000'000);
    model.estimate_output_price = get_uint(m, path, "estimate_output_price", 0, 1'000'000'000'000);
    parse_model_fallbacks(m, path, model);
    cfg.models.push_back(std::move(model));
  }
  std::sort(cfg.models.begin(), cfg.models.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  if (cfg.models.empty()) fail("/models", "must name at least one model");

}

void parse_logging_metering_database_ledger(const json& merged, gateway_config& cfg) {
  const json& l = merged["logging"];
  const std::string level = get_string(l, "/logging", "level");
  if (!parse_log_level(level, cfg.logging.level)) {
    fail("/logging/level", "must be debug, info, warn or error, got \"" + level + "\"");
  }
  cfg.logging.usage_log = get_string(l, "/logging", "usage_log");
  if (cfg.logging.usage_log.empty()) {
    fail("/logging/usage_log", "must be \"stderr\", \"off\" or a path");
  }
  cfg.logging.usage_log_flush_ms = get_uint(l, "/logging", "usage_log_flush_ms", 0, 60'000);
  cfg.metering.tokenizer_dir = get_string(merged["metering"], "/metering", "tokenizer_dir");
  cfg.metering.n_max = get_uint(merged["metering"], "/metering", "n_max", 1, 128);

  const json& d = merged["database"];
  cfg.database.url = get_string(d, "/database", "url");
  cfg.database.pool_size = get_uint(d, "/database", "pool_size", 1, 256);
  cfg.database.connect_timeout_ms = get_uint(d, "/database", "connect_timeout_ms", 10, 600'000);
  cfg.database.statement_timeout_ms =
      get_uint(d, "/database", "statement_timeout_ms", 10, 3'600'000);
  cfg.database.migrate_on_start = get_bool(d, "/database", "migrate_on_start");

  const json& lg = merged["ledger"];
  cfg.ledger.flush_interval_ms = get_uint(lg, "/ledger", "flush_interval_ms", 1, 60'000);
  cfg.ledger.flush_events_max = get_uint(lg, "/ledger", "flush_events_max", 1, 1'000'000);
  cfg.ledger.queue_events_max = get_uint(lg, "/ledger", "queue_events_max", 1, 100'000'000);
  cfg.ledger.spool_dir = get_string(lg, "/ledger", "spool_dir");
  if (cfg.ledger.spool_dir.empty()) fail("/ledger/spool_dir", "must name a folder");
  cfg.ledger.spool_bytes_max =
      get_uint(lg, "/ledger", "spool_bytes_max", 1024 * 1024, 1ull << 50);
  cfg.ledger.rate_events = get_bool(lg, "/ledger", "rate_events");

}

void parse_auth(const json& merged, gateway_config& cfg) {
  const json& a = merged["auth"];
  cfg.auth.admin_token = get_string(a, "/auth", "admin_token");
  cfg.auth.finance_token = get_string(a, "/auth", "finance_token");
  for (const auto* t : {&cfg.auth.admin_token, &cfg.auth.finance_token}) {
    if (!t->empty() && t->size() < 16) {
      fail(t == &cfg.auth.admin_token ? "/auth/admin_token" : "/auth/finance_token",
           "must be empty (API disabled) or at least 16 characters");
    }
  }
  if (!cfg.auth.admin_token.empty() && cfg.auth.admin_token == cfg.auth.finance_token) {
    fail("/auth/finance_token", "must differ from /auth/admin_token");
  }
  cfg.auth.key_cache_ttl_ms = get_uint(a, "/auth", "key_cache_ttl_ms", 0, 60'000);
  cfg.auth.negative_key_cache_entries =
      get_uint(a, "/auth", "negative_key_cache_entries", 0, 10'000'000);
  cfg.auth.unknown_key_lookups_per_s =
      get_uint(a, "/auth", "unknown_key_lookups_per_s", 1, 1'000'000);
  cfg.auth.unknown_key_lookup_burst =
      get_uint(a, "/auth", "unknown_key_lookup_burst", 1, 1'000'000);

}

void parse_budgets(const json& merged, gateway_config& cfg) {
  const json& b = merged["budgets"];
  cfg.budgets.redis = get_string(b, "/budgets", "redis");
  if (!b.at("redis_cluster").is_boolean()) fail("/budgets/redis_cluster", "must be true or false");
  cfg.budgets.redis_cluster = b.at("redis_cluster").get<bool>();
  if (!cfg.budgets.redis.empty()) {
    // One host:port, or for a cluster a comma-separated list of seed nodes.
    std::string_view rest = cfg.budgets.redis;
    while (true) {
      const auto comma = rest.find(',');
      const auto item = rest.substr(0, comma);
      listen_address ra;
      if (!parse_listen_address(item, ra)) {
        fail("/budgets/redis", "must be host:port" +
                                   std::string(cfg.budgets.redis_cluster
                                                   ? " (or a comma-separated list of them)"
                                                   : "") +
                                   ", got \"" + cfg.budgets.redis + "\"");
      }
      cfg.budgets.redis_nodes.push_back(std::move(ra));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (cfg.budgets.redis_nodes.size() > 1 && !cfg.budgets.redis_cluster) {
      fail("/budgets/redis", "lists several nodes: set /budgets/redis_cluster to true for a "
                             "Redis Cluster");
    }
  }
  cfg.budgets.redis_password = get_string(b, "/budgets", "redis_password");
  if (!b.at("redis_tls").is_boolean()) fail("/budgets/redis_tls", "must be true or false");
  cfg.budgets.redis_tls = b.at("redis_tls").get<bool>();
  cfg.budgets.redis_tls_ca_file = get_string(b, "/budgets", "redis_tls_ca_file");
  cfg.budgets.redis_tls_cert_file = get_string(b, "/budgets", "redis_tls_cert_file");
  cfg.budgets.redis_tls_key_file = get_string(b, "/budgets", "redis_tls_key_file");
  cfg.budgets.redis_tls_server_name = get_string(b, "/budgets", "redis_tls_server_name");
  if (cfg.budgets.redis_tls_cert_file.empty() != cfg.budgets.redis_tls_key_file.empty()) {
    fail("/budgets/redis_tls_key_file", "a client certificate needs both redis_tls_cert_file "
                                        "and redis_tls_key_file");
  }
  cfg.budgets.failure_mode = get_string(b, "/budgets", "failure_mode");
  if (cfg.budgets.failure_mode != "closed" && cfg.budgets.failure_mode != "open") {
    fail("/budgets/failure_mode", "must be closed or open, got \"" + cfg.budgets.failure_mode + "\"");
  }
  cfg.budgets.hold_ttl_ms = get_uint(b, "/budgets", "hold_ttl_ms", 1000, 86'400'000);
  cfg.budgets.settle_batch_ms = get_uint(b, "/budgets", "settle_batch_ms", 0, 1'000);
  cfg.budgets.cache_ttl_ms = get_uint(b, "/budgets", "cache_ttl_ms", 0, 60'000);
  cfg.budgets.leases = get_bool(b, "/budgets", "leases");
  cfg.budgets.lease_ms = get_uint(b, "/budgets", "lease_ms", 100, 600'000);
  cfg.budgets.lease_flush_ms = get_uint(b, "/budgets", "lease_flush_ms", 1, 10'000);
  cfg.budgets.lease_flush_far_ms = get_uint(b, "/budgets", "lease_flush_far_ms", 1, 60'000);
  if (cfg.budgets.lease_flush_far_ms < cfg.budgets.lease_flush_ms) {
    fail("/budgets/lease_flush_far_ms", "must be at least lease_flush_ms");
  }
  cfg.budgets.lease_divisor = get_uint(b, "/budgets", "lease_divisor", 1, 1'000'000);
  cfg.budgets.command_timeout_ms = get_uint(b, "/budgets", "command_timeout_ms", 10, 60'000);
  cfg.budgets.alert_max_attempts = get_uint(b, "/budgets", "alert_max_attempts", 1, 100);
  cfg.budgets.alert_webhook_ca_file = get_string(b, "/budgets", "alert_webhook_ca_file");
  cfg.budgets.alert_webhook_allow_private =
      get_bool(b, "/budgets", "alert_webhook_allow_private");
  cfg.budgets.forecast_alert_interval_ms =
      get_uint(b, "/budgets", "forecast_alert_interval_ms", 100, 86'400'000);
  if (!cfg.budgets.redis.empty() && cfg.database.url.empty()) {
    fail("/budgets/redis", "budgets need a database (database.url): they are stored there");
  }
  if (cfg.logging.usage_log == "off" && cfg.database.url.empty()) {
    fail("/logging/usage_log", "\"off\" needs a database (database.url): usage would go nowhere");
  }
}

void parse_invoices_reports_batches(const json& merged, gateway_config& cfg) {
  cfg.invoices.grace_hours = get_uint(merged["invoices"], "/invoices", "grace_hours", 0, 24 * 366);
  const json& ur = merged["usage_reports"];
  cfg.usage_reports.json_range_buckets_max =
      get_uint(ur, "/usage_reports", "json_range_buckets_max", 1, 10'000'000);
  cfg.usage_reports.csv_range_buckets_max =
      get_uint(ur, "/usage_reports", "csv_range_buckets_max", 1, 100'000'000);
  const json& bt = merged["batches"];
  cfg.batches.enabled = get_bool(bt, "/batches", "enabled");
  cfg.batches.concurrency = get_uint(bt, "/batches", "concurrency", 1, 1024);
  cfg.batches.poll_interval_ms = get_uint(bt, "/batches", "poll_interval_ms", 10, 60'000);
  cfg.batches.lease_ms = get_uint(bt, "/batches", "lease_ms", 1000, 3'600'000);
  cfg.batches.yield_to_live_requests =
      get_uint(bt, "/batches", "yield_to_live_requests", 1, 1'000'000);
  cfg.batches.max_file_bytes =
      get_uint(bt, "/batches", "max_file_bytes", 1024, limits::body_limit_bytes_max / 2);
  cfg.batches.max_file_lines = get_uint(bt, "/batches", "max_file_lines", 1, 1'000'000);
  const json& cs = merged["console"];
  cfg.console.enabled = get_bool(cs, "/console", "enabled");
  cfg.console.session_ttl_s = get_uint(cs, "/console", "session_ttl_s", 60, 7 * 24 * 3600);
  cfg.console.sessions_max = get_uint(cs, "/console", "sessions_max", 1, 1'000'000);
  cfg.console.secure_cookies = get_bool(cs, "/console", "secure_cookies");
}

}  // namespace

gateway_config parse_config(std::string_view json_text, const env_lookup& env) {
  const json file = json::parse(json_text, nullptr, /*allow_exceptions=*/false,
                                /*ignore_comments=*/true);
  if (file.is_discarded()) fail("", "is not valid JSON");
  if (!file.is_object()) fail("", "the top level must be an object");
  json merged = merge_with_defaults(file);
  apply_env_overrides(merged, "", env);

  gateway_config cfg;
  parse_server(merged, cfg);
  parse_upstreams(merged, env, cfg);
  parse_models(merged, cfg);
  parse_virtual_models(merged, cfg);
  resolve_fallbacks(cfg);
  parse_logging_metering_database_ledger(merged, cfg);
  parse_auth(merged, cfg);
  parse_budgets(merged, cfg);
  parse_invoices_reports_batches(merged, cfg);
  return cfg;
}

gateway_config load_config_file(const std::string& path, const env_lookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("config file " + path + ": cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return parse_config(text.str(), env);
  } catch (const config_error& e) {
    throw config_error(path + ": " + e.what());
  }
}

}  // namespace tollgate
