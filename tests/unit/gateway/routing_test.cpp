// Routing decisions: rule evaluation in order with a default, each condition, weighted splits
// (deterministic and close to their weights), the features of a request (tools, images), the
// allowlist through a virtual model, and the fallback choice.
#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <string>

#include "core/config.hpp"
#include "gateway/routing.hpp"

using namespace tollgate;
using namespace tollgate::gateway;

namespace {

const env_lookup no_env = [](const char*) -> const char* { return nullptr; };

gateway_config routed_config() {
  return parse_config(R"({"upstreams": {"u": {"base_url": "http://127.0.0.1:9/v1"}},
    "models": {
      "small": {"upstream": "u", "fallbacks": ["medium", "large"]},
      "medium": {"upstream": "u"},
      "large": {"upstream": "u"},
      "vision": {"upstream": "u"},
      "canary": {"upstream": "u"}},
    "virtual_models": {"auto": {
      "rules": [
        {"name": "big", "prompt_tokens_min": 1000, "target": "large"},
        {"name": "pics", "images": true, "target": "vision"},
        {"name": "tier", "header": "x-tier", "header_value": "gold", "target": "large"},
        {"name": "gold", "caller_tags": {"tier": "gold"}, "target": "large"},
        {"name": "tools", "tools": true, "prompt_tokens_max": 999, "target": "medium"}],
      "default": [{"model": "small", "weight": 90}, {"model": "canary", "weight": 10}]}}})",
                      no_env);
}

// A parsed request points into its body's text, so the bodies live as long as the tests.
completion_request chat(const std::string& body) {
  static std::deque<std::string> bodies;
  bodies.push_back(body);
  auto r = parse_completion_request(endpoint_kind::chat_completions, bodies.back());
  REQUIRE(r);
  return std::move(*r);
}

}  // namespace

TEST_CASE("the first matching rule chooses; none matching, the default", "[routing]") {
  const auto cfg = routed_config();
  const auto& vm = *cfg.find_virtual_model("auto");
  route_inputs in;
  in.split_key = "req-1";
  in.prompt_tokens = 5000;
  in.images = true;
  auto c = choose_route(vm, in);
  CHECK(c.rule->name == "big");  // both big and pics match: the first wins
  CHECK(*c.model == "large");
  CHECK(c.label == "auto/big");
  in.prompt_tokens = 10;
  c = choose_route(vm, in);
  CHECK(c.label == "auto/pics");
  CHECK(*c.model == "vision");
  in.images = false;
  c = choose_route(vm, in);
  CHECK(c.rule->name == "default");
  CHECK(c.label == "auto/default");
  in.tools = true;
  CHECK(choose_route(vm, in).label == "auto/tools");
  CHECK(*choose_route(vm, in).model == "medium");
}

TEST_CASE("each condition: prompt bounds inclusive, flags both ways, header, caller tags",
          "[routing]") {
  routing_rule_config r;
  route_inputs in;
  r.prompt_tokens_min = 10;
  r.prompt_tokens_max = 20;
  in.prompt_tokens = 9;
  CHECK_FALSE(rule_matches(r, in));
  in.prompt_tokens = 10;
  CHECK(rule_matches(r, in));
  in.prompt_tokens = 20;
  CHECK(rule_matches(r, in));
  in.prompt_tokens = 21;
  CHECK_FALSE(rule_matches(r, in));

  routing_rule_config t;
  t.tools = 0;  // only requests without tools
  CHECK(rule_matches(t, in));
  in.tools = true;
  CHECK_FALSE(rule_matches(t, in));

  routing_rule_config h;
  h.header = "x-tier";
  h.header_value = "gold";
  CHECK_FALSE(rule_matches(h, in));  // no headers at all (a batch line)
  std::map<std::string, std::string> headers{{"x-tier", "silver"}};
  const header_lookup lookup = [&headers](std::string_view name) -> std::string_view {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? std::string_view{} : std::string_view(it->second);
  };
  in.header = &lookup;
  CHECK_FALSE(rule_matches(h, in));
  headers["x-tier"] = "gold";
  CHECK(rule_matches(h, in));

  routing_rule_config g;
  g.caller_tags = {{"tier", "gold"}, {"team", "ml"}};
  CHECK_FALSE(rule_matches(g, in));
  const metering::tag_set tags{{"team", "ml"}, {"tier", "gold"}};
  in.caller_tags = &tags;
  CHECK(rule_matches(g, in));
  const metering::tag_set other{{"team", "ml"}, {"tier", "silver"}};
  in.caller_tags = &other;
  CHECK_FALSE(rule_matches(g, in));
}

TEST_CASE("a weighted split is deterministic per key and close to its weights", "[routing]") {
  const auto cfg = routed_config();
  const auto& targets = cfg.find_virtual_model("auto")->default_rule.targets;
  CHECK(split_bucket("auto", "abc") == split_bucket("auto", "abc"));
  CHECK(split_bucket("auto", "abc") < 100);
  // FNV-1a of "auto\nabc", mod 100: fixed, so every gateway splits a request id alike.
  CHECK(split_bucket("auto", "abc") == 56);
  int canary = 0;
  const int n = 10000;
  for (int i = 0; i < n; ++i) {
    const std::string key = "req-" + std::to_string(i);
    const auto& t = split_target(targets, "auto", key);
    CHECK(&t == &split_target(targets, "auto", key));
    if (t.model == "canary") ++canary;
  }
  CHECK(canary > 800);  // 10 % of 10000, within a generous bound
  CHECK(canary < 1200);
  // A single target takes everything; weight 0 takes nothing.
  const std::vector<route_target> one{{"small", 100}};
  CHECK(split_target(one, "auto", "x").model == "small");
  const std::vector<route_target> off{{"small", 0}, {"large", 100}};
  for (int i = 0; i < 200; ++i) {
    CHECK(split_target(off, "auto", std::to_string(i)).model == "large");
  }
}

TEST_CASE("tools and images are found in chat and responses requests", "[routing]") {
  auto plain = chat(R"({"model":"auto","messages":[{"role":"user","content":"hi"}]})");
  CHECK_FALSE(features_of(plain).tools);
  CHECK_FALSE(features_of(plain).images);
  auto tools = chat(R"({"model":"auto","messages":[{"role":"user","content":"hi"}],
    "tools":[{"type":"function","function":{"name":"f","parameters":{}}}]})");
  CHECK(features_of(tools).tools);
  auto empty_tools = chat(R"({"model":"auto","messages":[{"role":"user","content":"hi"}],
    "tools":[]})");
  CHECK_FALSE(features_of(empty_tools).tools);
  auto image = chat(R"({"model":"auto","messages":[{"role":"user","content":[
    {"type":"text","text":"what is this"},
    {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]})");
  CHECK(features_of(image).images);
  CHECK_FALSE(features_of(image).tools);
  auto responses = parse_completion_request(endpoint_kind::responses, R"({"model":"auto",
    "input":[{"role":"user","content":[{"type":"input_text","text":"hi"},
    {"type":"input_image","image_url":"https://example.com/a.png"}]}],
    "tools":[{"type":"function","name":"f","parameters":{}}]})");
  REQUIRE(responses);
  CHECK(features_of(*responses).images);
  CHECK(features_of(*responses).tools);
}

TEST_CASE("a virtual model in the allowlist lets its targets serve through it", "[routing]") {
  const auto cfg = routed_config();
  const auto* vm = cfg.find_virtual_model("auto");
  caller who;
  who.allowed_models = std::vector<std::string>{"auto"};
  CHECK(may_serve(who, vm, "large"));
  CHECK_FALSE(may_serve(who, nullptr, "large"));  // asked for by name: not allowed
  caller other;
  other.allowed_models = std::vector<std::string>{"small"};
  CHECK_FALSE(may_serve(other, vm, "large"));
  CHECK(may_serve(other, vm, "small"));
  caller anyone;
  CHECK(may_serve(anyone, nullptr, "large"));
}

TEST_CASE("fallbacks: when, and the next allowed model not tried yet", "[routing]") {
  const auto cfg = routed_config();
  const auto& small = *cfg.find_model("small");
  CHECK(fallback_reason(small, "connect_error", 0, false) == "connect_error");
  CHECK(fallback_reason(small, "overloaded", 0, false) == "overloaded");
  CHECK(fallback_reason(small, "", 503, false) == "status_503");
  CHECK(fallback_reason(small, "", 429, false) == "status_429");
  CHECK_FALSE(fallback_reason(small, "", 200, false));
  CHECK_FALSE(fallback_reason(small, "", 400, false));
  CHECK_FALSE(fallback_reason(small, "connect_error", 0, true));  // the client has gone

  caller anyone;
  std::vector<const model_config*> tried{&small};
  const model_config* next = next_fallback(cfg, small, tried, anyone, nullptr);
  REQUIRE(next != nullptr);
  CHECK(next->name == "medium");
  tried.push_back(next);
  next = next_fallback(cfg, small, tried, anyone, nullptr);
  REQUIRE(next != nullptr);
  CHECK(next->name == "large");
  tried.push_back(next);
  CHECK(next_fallback(cfg, small, tried, anyone, nullptr) == nullptr);

  caller limited;
  limited.allowed_models = std::vector<std::string>{"small", "large"};
  tried = {&small};
  next = next_fallback(cfg, small, tried, limited, nullptr);
  REQUIRE(next != nullptr);
  CHECK(next->name == "large");  // medium is not the key's: skipped
  // Through the virtual model, medium (one of its targets) may serve.
  limited.allowed_models = std::vector<std::string>{"auto"};
  next = next_fallback(cfg, small, tried, limited, cfg.find_virtual_model("auto"));
  REQUIRE(next != nullptr);
  CHECK(next->name == "medium");
}
