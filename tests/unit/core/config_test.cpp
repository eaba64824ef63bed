// Configuration: defaults, overrides from the environment, and errors that name the field.
#include <catch2/catch.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "core/config.hpp"

using namespace tollgate;

namespace {

env_lookup env_of(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

std::string error_of(const std::string& text, std::map<std::string, std::string> env = {}) {
  try {
    parse_config(text, env_of(std::move(env)));
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the embedded default config is valid and routes tiny-llama to tollgate-infer") {
  const auto cfg = parse_config(embedded_default_config(), env_of({}));
  CHECK(cfg.server.listen.to_string() == "127.0.0.1:8080");
  CHECK(cfg.server.admin_listen.to_string() == "127.0.0.1:8081");
  CHECK(cfg.server.body_limit_bytes == 8u * 1024 * 1024);
  const auto* m = cfg.find_model("tiny-llama");
  REQUIRE(m != nullptr);
  CHECK(m->upstream == "infer");
  CHECK(m->upstream_model == "tiny-llama");
  CHECK(m->tokenizer == "llama3");
  const auto* u = cfg.find_upstream("infer");
  REQUIRE(u != nullptr);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 8000);
  CHECK(u->base_path == "/v1");
  CHECK(cfg.find_model("gpt-4o") == nullptr);
}

TEST_CASE("a file overrides defaults key by key and replaces the model table") {
  const auto cfg = parse_config(R"({
    "server": {"body_limit_bytes": 2048, "threads": 3},
    "upstreams": {"a": {"base_url": "http://localhost:9000/", "connect_timeout_ms": 50}},
    "models": {"m1": {"upstream": "a", "upstream_model": "real-m1"}, "m0": {"upstream": "a"}}
  })",
                                env_of({}));
  CHECK(cfg.server.body_limit_bytes == 2048);
  CHECK(cfg.server.threads == 3);
  CHECK(cfg.server.listen.port == 8080);  // untouched default
  REQUIRE(cfg.models.size() == 2);
  CHECK(cfg.models[0].name == "m0");  // sorted
  CHECK(cfg.find_model("m1")->upstream_model == "real-m1");
  CHECK(cfg.find_model("dev-echo") == nullptr);
  const auto* a = cfg.find_upstream("a");
  CHECK(a->base_path == "");
  CHECK(a->port == 9000);
  CHECK(a->connect_timeout_ms == 50);
}

TEST_CASE("environment variables override scalar settings by path") {
  const auto cfg = parse_config(
      embedded_default_config(),
      env_of({{"TOLLGATE_SERVER__BODY_LIMIT_BYTES", "4096"},
              {"TOLLGATE_SERVER__LISTEN", "127.0.0.1:9999"},
              {"TOLLGATE_UPSTREAMS__INFER__BASE_URL", "http://10.1.2.3:7000/openai/v1"}}));
  CHECK(cfg.server.body_limit_bytes == 4096);
  CHECK(cfg.server.listen.port == 9999);
  CHECK(cfg.find_upstream("infer")->host == "10.1.2.3");
  CHECK(cfg.find_upstream("infer")->base_path == "/openai/v1");
}

TEST_CASE("upstream auth comes from the named environment variable") {
  const std::string text = R"({"upstreams": {"u": {"base_url": "http://h:1", "auth_env": "UP_KEY"}},
                               "models": {"m": {"upstream": "u"}}})";
  CHECK(parse_config(text, env_of({{"UP_KEY", "sk-123"}})).find_upstream("u")->auth_header_value ==
        "Bearer sk-123");
  CHECK(error_of(text) == "config /upstreams/u/auth_env: names UP_KEY, which is not set");
}

namespace {

std::string upstream_text(const std::string& fields) {
  return R"({"upstreams": {"u": {)" + fields + R"(}}, "models": {"m": {"upstream": "u"}}})";
}

// A file holding `text`, in the system's temporary folder.
std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = std::string(P_tmpdir) + "/tollgate-config-test-" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  return path;
}

}  // namespace

TEST_CASE("https upstreams: TLS on, port 443 by default, TLS files only for https") {
  const auto cfg =
      parse_config(upstream_text(R"("base_url": "https://api.example.com/v1/")"), env_of({}));
  const auto* u = cfg.find_upstream("u");
  CHECK(u->tls);
  CHECK(u->host == "api.example.com");
  CHECK(u->port == 443);
  CHECK(u->base_path == "/v1");
  const auto ip6 = parse_config(upstream_text(R"("base_url": "https://[::1]:8443")"), env_of({}));
  CHECK(ip6.find_upstream("u")->host == "::1");
  CHECK(ip6.find_upstream("u")->port == 8443);
  CHECK_FALSE(
      parse_config(upstream_text(R"("base_url": "http://h")"), env_of({})).find_upstream("u")->tls);
  CHECK(error_of(upstream_text(R"("base_url": "https://h", "tls_ca_file": "/nonexistent/ca")")) ==
        "config /upstreams/u/tls_ca_file: cannot read \"/nonexistent/ca\"");
  const std::string pem = temp_file("ca.pem", "x");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "tls_ca_file": ")" + pem + "\"")) ==
        "config /upstreams/u/tls_ca_file: applies only to https:// upstreams");
  CHECK(error_of(
            upstream_text(R"("base_url": "https://h", "tls_client_cert_file": ")" + pem + "\"")) ==
        "config /upstreams/u/tls_client_key_file: a client certificate needs both "
        "tls_client_cert_file and tls_client_key_file");
  CHECK(error_of(upstream_text(R"("base_url": "https://")")) ==
        "config /upstreams/u/base_url: has no host, got \"https://\"");
}

TEST_CASE("upstream keys: from a file, trimmed; in a named header; errors never show the key") {
  const std::string key_file = temp_file("key", "sk-file-1\r\n");
  const auto bearer = parse_config(
      upstream_text(R"("base_url": "https://h", "auth_file": ")" + key_file + "\""), env_of({}));
  CHECK(bearer.find_upstream("u")->auth_header_name == "Authorization");
  CHECK(bearer.find_upstream("u")->auth_header_value == "Bearer sk-file-1");
  const auto named = parse_config(
      upstream_text(R"("base_url": "https://h", "auth_env": "K", "auth_header": "api-key")"),
      env_of({{"K", "sk-env-2"}}));
  CHECK(named.find_upstream("u")->auth_header_name == "api-key");
  CHECK(named.find_upstream("u")->auth_header_value == "sk-env-2");
  CHECK(parse_config(upstream_text(R"("base_url": "http://h")"), env_of({}))
            .find_upstream("u")
            ->auth_header_name.empty());

  CHECK(error_of(upstream_text(R"("base_url": "http://h", "auth_env": "K", "auth_file": "f")"),
                 {{"K", "v"}}) ==
        "config /upstreams/u/auth_file: give the key by auth_env or auth_file, not both");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "auth_file": "/nonexistent/key")")) ==
        "config /upstreams/u/auth_file: cannot read \"/nonexistent/key\"");
  const std::string empty = temp_file("empty-key", "\n");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "auth_file": ")" + empty + "\"")) ==
        "config /upstreams/u/auth_file: \"" + empty + "\" is empty");
  const std::string two_lines = temp_file("two-line-key", "sk-secret-3\nsecond\n");
  const std::string e =
      error_of(upstream_text(R"("base_url": "http://h", "auth_file": ")" + two_lines + "\""));
  CHECK(e ==
        "config /upstreams/u/auth_file: the key holds a control character (a line break "
        "inside it?)");
  CHECK(e.find("sk-secret-3") == std::string::npos);
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "auth_header": "api-key")")) ==
        "config /upstreams/u/auth_header: needs a key from auth_env or auth_file");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "auth_env": "K", "auth_header": "a b")"),
                 {{"K", "v"}}) ==
        "config /upstreams/u/auth_header: is not a valid header name: \"a b\"");
}

TEST_CASE("bad configs stop start-up with a message naming the field") {
  CHECK(error_of("{") == "config: is not valid JSON");
  CHECK(error_of("[]") == "config: the top level must be an object");
  CHECK(error_of(R"({"server": {"body_limt_bytes": 1}})") ==
        "config /server/body_limt_bytes: unknown field");
  CHECK(error_of(R"({"server": {"body_limit_bytes": 10}})") ==
        "config /server/body_limit_bytes: must be between 1024 and 1073741824, got 10");
  CHECK(error_of(R"({"server": {"body_limit_bytes": -5}})") ==
        "config /server/body_limit_bytes: must be a non-negative integer");
  CHECK(error_of(R"({"server": {"threads": "two"}})") ==
        "config /server/threads: must be a non-negative integer");
  CHECK(error_of(R"({"server": {"listen": "localhost"}})") ==
        "config /server/listen: must be host:port with a port in 1..65535, got \"localhost\"");
  CHECK(error_of(R"({"server": {"admin_listen": "127.0.0.1:8080"}})") ==
        "config /server/admin_listen: must differ from /server/listen");
  CHECK(error_of(R"({"models": {"m": {"upstream": "nope"}}})") ==
        "config /models/m/upstream: names an upstream that is not configured: \"nope\"");
  CHECK(error_of(R"({"upstreams": {"u": {"base_url": "ftp://api.example.com/v1"}}})") ==
        "config /upstreams/u/base_url: must start with http:// or https://, got "
        "\"ftp://api.example.com/v1\"");
  CHECK(error_of(R"({"models": {}})") == "config /models: must name at least one model");
  CHECK(error_of(R"({"logging": {"level": "loud"}})") ==
        "config /logging/level: must be debug, info, warn or error, got \"loud\"");
  CHECK(error_of(R"({"extra": 1})") == "config /extra: unknown field");
  CHECK(
      error_of(embedded_default_config().data(), {{"TOLLGATE_SERVER__THREADS", "x"}}) ==
      "config /server/threads: TOLLGATE_SERVER__THREADS must be a non-negative integer, got \"x\"");
}

TEST_CASE("listen addresses parse host:port") {
  listen_address a;
  CHECK(parse_listen_address("0.0.0.0:80", a));
  CHECK(a.host == "0.0.0.0");
  CHECK(a.port == 80);
  CHECK(parse_listen_address("[::1]:8080", a));
  CHECK(a.host == "::1");
  CHECK_FALSE(parse_listen_address("host:0", a));
  CHECK_FALSE(parse_listen_address("host:65536", a));
  CHECK_FALSE(parse_listen_address(":80", a));
  CHECK_FALSE(parse_listen_address("host:80x", a));
}

TEST_CASE("the shipped example config parses and matches the embedded default") {
  const auto example =
      load_config_file(TOLLGATE_SOURCE_DIR "/deploy/tollgate.example.json", env_of({}));
  const auto defaults = parse_config(embedded_default_config(), env_of({}));
  CHECK(example.server.body_limit_bytes == defaults.server.body_limit_bytes);
  CHECK(example.server.drain_timeout_ms == defaults.server.drain_timeout_ms);
  CHECK(example.find_upstream("infer")->first_byte_timeout_ms ==
        defaults.find_upstream("infer")->first_byte_timeout_ms);
  CHECK(example.find_model("tiny-llama") != nullptr);
  CHECK(example.batches.max_file_bytes == defaults.batches.max_file_bytes);
  CHECK(example.invoices.grace_hours == defaults.invoices.grace_hours);
}

TEST_CASE("database, ledger, auth and budgets settings are checked") {
  const auto cfg = parse_config(embedded_default_config(), env_of({}));
  CHECK(cfg.database.url.empty());
  CHECK(cfg.ledger.flush_interval_ms == 50);
  CHECK(cfg.auth.key_cache_ttl_ms == 2000);
  CHECK(cfg.budgets.redis.empty());
  CHECK(cfg.budgets.failure_mode == "closed");
  CHECK(cfg.find_model("tiny-llama")->context_tokens == 4096);
  const auto with = parse_config(embedded_default_config(),
                                 env_of({{"TOLLGATE_DATABASE__URL", "postgresql://x@h/db"},
                                         {"TOLLGATE_BUDGETS__REDIS", "127.0.0.1:6379"},
                                         {"TOLLGATE_BUDGETS__FAILURE_MODE", "open"}}));
  CHECK(with.budgets.redis == "127.0.0.1:6379");
  CHECK(with.budgets.failure_mode == "open");
  REQUIRE(with.budgets.redis_nodes.size() == 1);
  CHECK(with.budgets.redis_nodes[0].port == 6379);
  CHECK_FALSE(with.budgets.redis_cluster);
  const auto cluster = parse_config(
      R"({"database":{"url":"postgresql://x@h/db"},"budgets":{"redis":"127.0.0.1:7001,127.0.0.1:7002","redis_cluster":true}})",
      env_of({}));
  REQUIRE(cluster.budgets.redis_nodes.size() == 2);
  CHECK(cluster.budgets.redis_nodes[1].port == 7002);
  CHECK(cluster.budgets.redis_cluster);
  CHECK_THAT(error_of(R"({"database":{"url":"postgresql://x@h/db"},"budgets":{"redis":"127.0.0.1:7001,127.0.0.1:7002"}})"),
             Catch::Contains("redis_cluster"));
  CHECK_THAT(error_of(R"({"database":{"url":"postgresql://x@h/db"},"budgets":{"redis":"127.0.0.1:7001,","redis_cluster":true}})"),
             Catch::Contains("/budgets/redis"));
  CHECK_THAT(error_of(R"({"budgets":{"redis_cluster":"yes"}})"), Catch::Contains("/budgets/redis_cluster"));
  CHECK_FALSE(cfg.budgets.redis_tls);
  CHECK(cfg.budgets.settle_batch_ms == 0);
  CHECK_THAT(error_of(R"({"budgets":{"settle_batch_ms":5000}})"), Catch::Contains("/budgets/settle_batch_ms"));
  CHECK(cfg.budgets.lease_flush_ms == 100);
  CHECK(cfg.budgets.lease_flush_far_ms == 1000);
  CHECK_THAT(error_of(R"({"budgets":{"lease_flush_ms":2000}})"),
             Catch::Contains("/budgets/lease_flush_far_ms"));
  CHECK(cfg.invoices.grace_hours == 72);
  CHECK_THAT(error_of(R"({"invoices":{"grace_hours":9000}})"), Catch::Contains("/invoices/grace_hours"));
  CHECK_THAT(error_of(R"({"invoices":{"grace":1}})"), Catch::Contains("unknown field"));
  CHECK(cfg.batches.enabled);
  CHECK(cfg.batches.concurrency == 4);
  CHECK(cfg.batches.lease_ms == 30000);
  CHECK(cfg.batches.max_file_bytes == 200u * 1024 * 1024);
  CHECK(cfg.batches.max_file_lines == 50000);
  CHECK_THAT(error_of(R"({"batches":{"concurrency":0}})"), Catch::Contains("/batches/concurrency"));
  CHECK_THAT(error_of(R"({"batches":{"lease_ms":10}})"), Catch::Contains("/batches/lease_ms"));
  CHECK_THAT(error_of(R"({"batches":{"enabled":"no"}})"), Catch::Contains("/batches/enabled"));
  CHECK_THAT(error_of(R"({"batches":{"workers":2}})"), Catch::Contains("unknown field"));
  CHECK(parse_config(embedded_default_config(), env_of({{"TOLLGATE_BATCHES__CONCURRENCY", "8"}}))
            .batches.concurrency == 8);
  CHECK_THAT(error_of(R"({"budgets":{"redis_tls":1}})"), Catch::Contains("/budgets/redis_tls"));
  CHECK_THAT(error_of(R"({"budgets":{"redis_tls_cert_file":"c.pem"}})"),
             Catch::Contains("redis_tls_key_file"));
  CHECK_THAT(error_of(R"({"budgets":{"redis":"localhost"}})",
                      {{"TOLLGATE_DATABASE__URL", "postgresql://x@h/db"}}),
             Catch::Contains("/budgets/redis") && Catch::Contains("host:port"));
  CHECK_THAT(error_of(R"({"budgets":{"redis":"127.0.0.1:6379"}})"),
             Catch::Contains("budgets need a database"));
  CHECK_THAT(error_of(R"({"logging":{"usage_log":"off"}})"),
             Catch::Contains("/logging/usage_log") && Catch::Contains("needs a database"));
  CHECK(parse_config(R"({"database":{"url":"postgresql://x@h/db"},"logging":{"usage_log":"off"}})",
                     env_of({}))
            .logging.usage_log == "off");
  CHECK_THAT(error_of(R"({"budgets":{"failure_mode":"maybe"}})"),
             Catch::Contains("/budgets/failure_mode"));
  CHECK_THAT(error_of(R"({"auth":{"admin_token":"short"}})"),
             Catch::Contains("/auth/admin_token"));
  CHECK_THAT(error_of(R"({"auth":{"admin_token":"same-token-0123456789","finance_token":"same-token-0123456789"}})"),
             Catch::Contains("must differ"));
  CHECK_THAT(error_of(R"({"ledger":{"spool_dir":""}})"), Catch::Contains("/ledger/spool_dir"));
  CHECK_THAT(error_of(R"({"database":{"migrate_on_start":"yes"}})"),
             Catch::Contains("/database/migrate_on_start"));
  CHECK_THAT(error_of(R"({"database":{"bogus":1}})"), Catch::Contains("unknown field"));
}

TEST_CASE("upstream replicas: endpoints with weights, or base_url as one endpoint") {
  const auto cfg = parse_config(
      upstream_text(R"("endpoints": [{"base_url": "http://10.0.0.1:8000/v1", "weight": 3},
                                    {"base_url": "https://b.example/v1", "name": "b"}],
                       "attempts_max": 3, "concurrent_requests_max": 4,
                       "queue_requests_max": 8, "health_check_path": "/health")"),
      env_of({}));
  const auto* u = cfg.find_upstream("u");
  REQUIRE(u->endpoints.size() == 2);
  CHECK(u->endpoints[0].name == "http://10.0.0.1:8000/v1");
  CHECK(u->endpoints[0].weight == 3);
  CHECK(u->endpoints[0].base_path == "/v1");
  CHECK_FALSE(u->endpoints[0].tls);
  CHECK(u->endpoints[1].name == "b");
  CHECK(u->endpoints[1].tls);
  CHECK(u->endpoints[1].port == 443);
  CHECK(u->tls);  // an https endpoint: the TLS settings apply to it
  CHECK(u->host == "10.0.0.1");
  CHECK(u->attempts_max == 3);
  CHECK(u->eject_consecutive_failures == 5);
  CHECK(u->ejection_base_ms == 10000);
  CHECK(u->ejection_max_ms == 300000);
  CHECK(u->retry_budget_percent == 20);
  CHECK(u->health_check_path == "/health");

  const auto one = parse_config(upstream_text(R"("base_url": "http://h:1/v1")"), env_of({}));
  REQUIRE(one.find_upstream("u")->endpoints.size() == 1);
  CHECK(one.find_upstream("u")->endpoints[0].name == "http://h:1/v1");
  CHECK(one.find_upstream("u")->endpoints[0].weight == 1);
  CHECK(one.find_upstream("u")->attempts_max == 2);

  CHECK(error_of(upstream_text(
            R"("base_url": "http://h", "endpoints": [{"base_url": "http://g"}])")) ==
        "config /upstreams/u: give either base_url or endpoints (a non-empty array), not both");
  CHECK(error_of(upstream_text(R"("endpoints": [])")) ==
        "config /upstreams/u: give either base_url or endpoints (a non-empty array), not both");
  CHECK(error_of(upstream_text(R"("endpoints": [{"base_url": "http://g", "weight": 0}])")) ==
        "config /upstreams/u/endpoints/0/weight: must be between 1 and 1000, got 0");
  CHECK(error_of(upstream_text(R"("endpoints": [{"base_url": "http://g", "port": 1}])")) ==
        "config /upstreams/u/endpoints/0/port: unknown field");
  CHECK(error_of(upstream_text(
            R"("endpoints": [{"base_url": "http://g"}, {"base_url": "http://g"}])")) ==
        "config /upstreams/u/endpoints/1: repeats the endpoint \"http://g\"");
  CHECK(error_of(upstream_text(R"("base_url": "http://user:pw@h/v1")")) ==
        "config /upstreams/u/base_url: must not carry credentials (give the key by auth_env or "
        "auth_file)");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "queue_requests_max": 5)")) ==
        "config /upstreams/u/queue_requests_max: needs concurrent_requests_max (a queue waits "
        "for a cap)");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "ejection_max_ms": 5)")) ==
        "config /upstreams/u/ejection_max_ms: must be at least ejection_base_ms");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "attempts_max": 0)")) ==
        "config /upstreams/u/attempts_max: must be between 1 and 10, got 0");
  CHECK(error_of(upstream_text(R"("base_url": "http://h", "health_check_path": "health")")) ==
        "config /upstreams/u/health_check_path: must be a path starting with / (no spaces)");
}
