// Gateway configuration: one JSON file (see deploy/tollgate.example.json and docs/CONFIG.md),
// parsed once at start-up into typed, range-checked, immutable structs. Every scalar setting can
// be overridden by an environment variable named after its path:
//   /server/body_limit_bytes        -> TOLLGATE_SERVER__BODY_LIMIT_BYTES
//   /upstreams/infer/base_url       -> TOLLGATE_UPSTREAMS__INFER__BASE_URL
// A bad file or override stops start-up with a config_error naming the field.
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/log.hpp"

namespace tollgate {

class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct listen_address {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

struct server_config {
  listen_address listen;        // OpenAI API
  listen_address admin_listen;  // health, readiness, metrics (admin and finance APIs later)
  unsigned threads = 0;         // I/O threads; 0 = one per core
  std::uint64_t max_connections = 0;        // per listener: the API listener's
  std::uint64_t admin_max_connections = 0;  // the admin listener's own (a flood never locks it out)
  std::uint64_t header_limit_bytes = 0;
  std::uint64_t body_limit_bytes = 0;
  std::uint64_t request_read_timeout_ms = 0;
  std::uint64_t keepalive_idle_timeout_ms = 0;
  std::uint64_t client_write_timeout_ms = 0;
  std::uint64_t drain_timeout_ms = 0;
};

// One replica of an upstream: a base URL and its share of the traffic.
struct upstream_endpoint_config {
  std::string name;  // metrics label and ledger value: `name`, else the URL (never credentials)
  std::string host;
  std::uint16_t port = 0;
  std::string base_path;  // e.g. "/v1"; requests go to base_path + "/chat/completions"
  // https:// base URL: TLS with SNI and the certificate checked against the host name and the
  // system's CAs (OpenSSL's default paths, so SSL_CERT_FILE applies) or tls_ca_file's.
  bool tls = false;
  std::uint64_t weight = 1;
};

struct upstream_config {
  std::string name;
  // Its replicas: `base_url` alone is one endpoint; `endpoints` lists several with weights.
  std::vector<upstream_endpoint_config> endpoints;
  // The first endpoint's address (what `base_url` gave), kept for callers that name one.
  std::string host;
  std::uint16_t port = 0;
  std::string base_path;
  bool tls = false;  // any endpoint is https (the TLS settings below then apply to each)
  std::string tls_ca_file;           // trusted CAs (PEM); "" = the system's
  std::string tls_client_cert_file;  // client certificate (PEM) for upstreams that ask for one
  std::string tls_client_key_file;   // its key (PEM)
  // The upstream's API key: from an environment variable or a file (read at start-up, trailing
  // newline trimmed), sent as `Authorization: Bearer <key>` or, with auth_header, raw in that
  // header (Azure's `api-key`). Never logged.
  std::string auth_env;           // environment variable holding the key ("" = none)
  std::string auth_file;          // file holding the key ("" = none)
  std::string auth_header;        // header name for the raw key; "" = Authorization: Bearer
  std::string auth_header_name;   // resolved at load time: the header sent ("" = none)
  std::string auth_header_value;  // resolved at load time: its value (a secret)
  std::uint64_t connect_timeout_ms = 0;
  std::uint64_t first_byte_timeout_ms = 0;
  std::uint64_t idle_timeout_ms = 0;
  std::uint64_t max_idle_connections = 0;  // per I/O thread
  std::uint64_t response_limit_bytes = 0;
  // Passive health (docs/CONFIG.md): this many failures in a row (connect errors, timeouts,
  // resets, 5xx) eject an endpoint for ejection_base_ms, doubled on each ejection in a row up
  // to ejection_max_ms; a success resets both. 0 = never ejected.
  std::uint64_t eject_consecutive_failures = 0;
  std::uint64_t ejection_base_ms = 0;
  std::uint64_t ejection_max_ms = 0;
  // Active health: GET of this path (as is, not under base_path; "" = off) every interval.
  std::string health_check_path;
  std::uint64_t health_check_interval_ms = 0;
  std::uint64_t health_check_timeout_ms = 0;
  std::uint64_t health_check_healthy_threshold = 0;    // passes in a row to be healthy again
  std::uint64_t health_check_unhealthy_threshold = 0;  // failures in a row to be unhealthy
  // Retries: attempts of one request (1 = none); at most retry_budget_percent of the requests
  // are retries, plus retry_budget_min_retries per window, per I/O thread; a 429 is retried
  // when its Retry-After is at most retry_after_max_ms (0: never).
  std::uint64_t attempts_max = 0;
  std::uint64_t retry_budget_percent = 0;
  std::uint64_t retry_budget_min_retries = 0;
  std::uint64_t retry_after_max_ms = 0;
  // Per I/O thread: requests in flight to this upstream (0 = no cap), and how many may wait for
  // a slot and for how long before a 503.
  std::uint64_t concurrent_requests_max = 0;
  std::uint64_t queue_requests_max = 0;
  std::uint64_t queue_timeout_ms = 0;
  // Where its usage object reports prompt tokens written to its cache ("member" or
  // "parent.member"; "" = it does not): priced as the cache_write class.
  std::string usage_cache_write_field;
};

struct model_config {
  std::string name;            // what clients send as "model"
  std::string upstream;        // key into upstreams
  std::string upstream_model;  // model name sent upstream (defaults to name)
  std::string owned_by;
  // How the gateway counts this model's prompts: a tokenizer name ("cl100k_base", "o200k_base",
  // "llama3", "qwen3" or a tokenizer.json path) and a prompt format ("openai", "llama3",
  // "chatml"). Checked when the gateway starts.
  std::string tokenizer;
  std::string prompt_format;
  // The model's context length: a request whose prompt + max_tokens exceeds it is refused
  // (400), and a request without max_tokens is held at context minus prompt (budgets).
  std::uint64_t context_tokens = 0;
  // Estimate prices for spend budgets, in micro-units per million tokens (0: the model's usage
  // counts nothing against spend budgets). The pricing engine replaces them once it exists.
  std::uint64_t estimate_input_price = 0;
  std::uint64_t estimate_output_price = 0;
  // Fallback models (gateway/routing.hpp): tried in order when this model's upstream is down
  // (nothing reached the client: connect or TLS error, no healthy endpoint, retries exhausted,
  // concurrency-cap queue full or timed out) or answers one of fallback_on_status.
  std::vector<std::string> fallbacks;
  std::vector<unsigned> fallback_on_status;  // default 429, 500, 502, 503, 504
  // Resolved at load time: every model a request for this one may fall back to, in the order
  // they are tried (each fallback followed by its own fallbacks, depth first, each model once).
  std::vector<std::string> fallback_chain;
};

// One target of a routing decision and its share of the traffic.
struct route_target {
  std::string model;         // a configured (real) model
  std::uint64_t weight = 0;  // percent; the targets of one rule sum to 100
};

// A routing rule: every condition given must hold (an absent one holds always); the first
// matching rule of a virtual model chooses its targets.
struct routing_rule_config {
  std::string name;  // unique within its virtual model; on the ledger as "<virtual>/<name>"
  std::int64_t prompt_tokens_min = -1;  // counted prompt tokens at least this (-1: any)
  std::int64_t prompt_tokens_max = -1;  // at most this (-1: any)
  int tools = -1;   // 1: the request carries tools (or functions); 0: it does not; -1: any
  int images = -1;  // 1: it carries image input; 0: it does not; -1: any
  std::string header;        // a request header (lower case) whose value must be header_value
  std::string header_value;
  // The caller's default tags (the API key's over its project's, set by an admin) must hold
  // each of these key=value pairs.
  std::vector<std::pair<std::string, std::string>> caller_tags;
  std::vector<route_target> targets;  // one, or a weighted split
};

// A virtual model (`"model": "auto"` or any alias): no upstream of its own; its rules choose a
// configured model for each request.
struct virtual_model_config {
  std::string name;
  std::string owned_by;
  // The model whose tokenizer and prompt format count the prompt for the rules (default: the
  // first target of `default`).
  std::string count_with;
  // What a weighted split hashes: "request_id" (each request on its own) or "end_user" (an
  // end user stays on one target; requests without one hash their request id).
  std::string split_by;
  std::vector<routing_rule_config> rules;
  routing_rule_config default_rule;  // `default`: no conditions, named "default"
  bool routes_to(std::string_view model) const;
};

struct metering_config {
  std::string tokenizer_dir;  // where `make deps` keeps tokenizer data; "" = the built-in default
  std::uint64_t n_max = 16;   // the largest n (and best_of) a request may ask for
};

// PostgreSQL: tenants, API keys and the usage ledger. Without a URL the gateway runs with no
// database: no authentication, usage goes to the usage log only (development and tests).
struct database_config {
  std::string url;  // libpq connection string or postgresql:// URI; "" = no database
  std::uint64_t pool_size = 0;  // connections for key lookups and the admin/finance APIs
  std::uint64_t connect_timeout_ms = 0;
  std::uint64_t statement_timeout_ms = 0;
  bool migrate_on_start = false;  // apply pending migrations before serving
};

struct ledger_config {
  std::uint64_t flush_interval_ms = 0;
  std::uint64_t flush_events_max = 0;
  std::uint64_t queue_events_max = 0;
  std::string spool_dir;  // journal and spool of usage events not yet committed
  std::uint64_t spool_bytes_max = 0;
  bool rate_events = true;  // price each usage event as it is stored
};

struct auth_config {
  std::string admin_token;    // Bearer token of /admin/* ("" = admin API disabled)
  std::string finance_token;  // Bearer token of /finance/* ("" = finance API disabled)
  std::uint64_t key_cache_ttl_ms = 0;  // how long a key lookup is trusted
  std::uint64_t negative_key_cache_entries = 0;  // unknown keys remembered (LRU); valid ones apart
  std::uint64_t unknown_key_lookups_per_s = 0;   // per client address: database look-ups of keys
  std::uint64_t unknown_key_lookup_burst = 0;    // that turn out unknown (token bucket)
};

// Budgets and rate limits in Redis (metering/budget_engine). Without `redis` no budget is
// enforced.
struct budgets_config {
  std::string redis;           // host:port of Redis; "" = budgets off
  bool redis_cluster = false;  // Redis Cluster: `redis` lists seed nodes, comma-separated
  std::vector<listen_address> redis_nodes;  // `redis` parsed: the server, or the cluster seeds
  std::string redis_password;  // AUTH password ("" = none)
  bool redis_tls = false;             // TLS to every Redis node, the certificate verified
  std::string redis_tls_ca_file;      // trusted CAs (PEM); "" = the system's
  std::string redis_tls_cert_file;    // client certificate (PEM) when Redis asks for one
  std::string redis_tls_key_file;     // its key (PEM)
  std::string redis_tls_server_name;  // name the certificate must carry; "" = the host
  std::string failure_mode;    // Redis unreachable: "closed" (503) or "open" (serve, unenforced)
  std::uint64_t hold_ttl_ms = 0;         // a hold not settled by then expires
  std::uint64_t settle_batch_ms = 0;     // settlements of one I/O thread gathered this long
  std::uint64_t cache_ttl_ms = 0;        // how long a tenant's budget list is trusted
  bool leases = true;                    // serve requests from budget leases (docs/BUDGETS.md)
  std::uint64_t lease_ms = 0;            // how long a lease serves requests, at most
  std::uint64_t lease_flush_ms = 0;      // lease settlements and returns sent this often
  std::uint64_t lease_flush_far_ms = 0;  // ... this often while every lease is far from a limit
  std::uint64_t lease_divisor = 0;       // a lease takes 1/(divisor x gateways) of what is left
  std::uint64_t command_timeout_ms = 0;  // one Redis script call
  std::uint64_t alert_max_attempts = 0;  // webhook deliveries of one alert before it fails
  std::string alert_webhook_ca_file;     // CAs for https:// webhooks (PEM); "" = the system's
  bool alert_webhook_allow_private = false;  // deliver to loopback/private/link-local addresses
  std::uint64_t forecast_alert_interval_ms = 0;  // how often forecast alerts are checked
};

// Invoices (billing/invoice_store, docs/PRICING.md).
struct invoices_config {
  std::uint64_t grace_hours = 0;  // after a period ends, how long late events may still arrive
};

// Usage reports (/v1/usage, /finance/v1/usage): how many buckets one query's range may span.
struct usage_reports_config {
  std::uint64_t json_range_buckets_max = 0;  // JSON pages: a longer range is a 400
  std::uint64_t csv_range_buckets_max = 0;   // CSV (streamed): a longer range is a 400
};

// The Batch API (gateway/batch_api, gateway/batch_worker, docs/BATCH.md).
struct batches_config {
  bool enabled = true;                        // run the batch worker in this gateway
  std::uint64_t concurrency = 4;              // batch lines in flight per gateway
  std::uint64_t poll_interval_ms = 500;       // idle worker: how often it looks for lines
  std::uint64_t lease_ms = 30000;             // a claimed line's lease (renewed while it runs)
  std::uint64_t yield_to_live_requests = 32;  // no new line while this many live requests run
  std::uint64_t max_file_bytes = 200u * 1024 * 1024;
  std::uint64_t max_file_lines = 50000;
};

// The web console (gateway/console_server, docs/CONSOLE.md): its sign-in sessions.
struct console_config {
  bool enabled = true;                 // serve /console/ on both listeners
  std::uint64_t session_ttl_s = 28800;  // a session's lifetime from sign-in
  std::uint64_t sessions_max = 10000;   // sessions held per listener (the oldest go first)
  bool secure_cookies = false;  // always mark the cookie Secure (else only behind https proxies)
};

struct logging_config {
  log_level level = log_level::info;
  std::string usage_log;  // "stderr" or a file path for usage records
  // Usage lines are buffered and written at most this long after (0: one write(2) per line).
  std::uint64_t usage_log_flush_ms = 100;
};

struct gateway_config {
  server_config server;
  std::vector<upstream_config> upstreams;  // sorted by name
  std::vector<model_config> models;        // sorted by name
  std::vector<virtual_model_config> virtual_models;  // sorted by name; none shares a model's
  logging_config logging;
  metering_config metering;
  database_config database;
  ledger_config ledger;
  auth_config auth;
  budgets_config budgets;
  invoices_config invoices;
  usage_reports_config usage_reports;
  batches_config batches;
  console_config console;

  const model_config* find_model(std::string_view name) const;
  const virtual_model_config* find_virtual_model(std::string_view name) const;
  const upstream_config* find_upstream(std::string_view name) const;
};

// Looks up an environment variable; returns nullptr when unset. Injected for tests.
using env_lookup = std::function<const char*(const char*)>;
env_lookup process_env();

// The built-in configuration used when no file is given: listeners on 127.0.0.1:8080/8081 and
// the development upstream (tollgate-dev-upstream) on 127.0.0.1:8090.
std::string_view embedded_default_config();

// Every setting with its default as the parser knows them (JSON text): what an empty file means,
// each upstream and model entry filled in. deploy/tollgate.example.json is checked against it.
std::string default_settings_json();

gateway_config parse_config(std::string_view json_text, const env_lookup& env);
gateway_config load_config_file(const std::string& path, const env_lookup& env);

// "host:port" with a numeric port 1..65535.
bool parse_listen_address(std::string_view text, listen_address& out);

}  // namespace tollgate
