// Configuration of fallback models and virtual models: defaults, the resolved fallback chains,
// and start-up errors that name the field (unknown names, cycles, clashes, weights).
#include <catch2/catch.hpp>
#include <string>

#include "core/config.hpp"

using namespace tollgate;

namespace {

const env_lookup no_env = [](const char*) -> const char* { return nullptr; };

// A config with upstream "u" and models a, b, c, d (a falls back as `a_extra` says), and
// `more` appended to the top level.
std::string config_with(const std::string& a_extra, const std::string& more = "",
                        const std::string& b_extra = "") {
  return R"({"upstreams": {"u": {"base_url": "http://127.0.0.1:9/v1"}},
    "models": {"a": {"upstream": "u")" +
         a_extra + R"(}, "b": {"upstream": "u")" + b_extra +
         R"(}, "c": {"upstream": "u", "tokenizer": "cl100k_base"}, "d": {"upstream": "u"}})" +
         more + "}";
}

std::string error_of(const std::string& text) {
  try {
    parse_config(text, no_env);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("fallback settings default to none, on 429 and 5xx", "[config][routing]") {
  const auto cfg = parse_config(config_with(""), no_env);
  const auto* a = cfg.find_model("a");
  REQUIRE(a != nullptr);
  CHECK(a->fallbacks.empty());
  CHECK(a->fallback_chain.empty());
  CHECK(a->fallback_on_status == std::vector<unsigned>{429, 500, 502, 503, 504});
  CHECK(cfg.virtual_models.empty());
}

TEST_CASE("a fallback chain follows each fallback's own fallbacks, each model once",
          "[config][routing]") {
  const auto cfg =
      parse_config(config_with(R"(, "fallbacks": ["b", "d"], "fallback_on_status": [503])", "",
                               R"(, "fallbacks": ["c", "d"])"),
                   no_env);
  const auto* a = cfg.find_model("a");
  CHECK(a->fallbacks == std::vector<std::string>{"b", "d"});
  CHECK(a->fallback_chain == std::vector<std::string>{"b", "c", "d"});
  CHECK(a->fallback_on_status == std::vector<unsigned>{503});
  CHECK(cfg.find_model("b")->fallback_chain == std::vector<std::string>{"c", "d"});
}

TEST_CASE("bad fallbacks stop start-up naming the field", "[config][routing]") {
  CHECK(error_of(config_with(R"(, "fallbacks": ["nope"])")) ==
        "config /models/a/fallbacks/0: names a model that is not configured: \"nope\"");
  CHECK(error_of(config_with(R"(, "fallbacks": ["a"])")) ==
        "config /models/a/fallbacks/0: names the model itself");
  CHECK(error_of(config_with(R"(, "fallbacks": ["b", "b"])")) ==
        "config /models/a/fallbacks/1: repeats \"b\"");
  CHECK(error_of(config_with(R"(, "fallbacks": ["b"])", "", R"(, "fallbacks": ["a"])")) ==
        "config /models/a/fallbacks: form a cycle: a -> b -> a");
  CHECK(error_of(config_with(R"(, "fallback_on_status": [200])")) ==
        "config /models/a/fallback_on_status/0: must be an HTTP error status (400 to 599)");
  CHECK(error_of(config_with(R"(, "fallbacks": "b")")) ==
        "config /models/a/fallbacks: must be an array of model names");
  CHECK(error_of(config_with(R"(, "fallbacks": ["auto"])",
                             R"(, "virtual_models": {"auto": {"default": "b"}})")) ==
        "config /models/a/fallbacks/0: names the virtual model \"auto\": fallbacks must be "
        "configured models");
}

TEST_CASE("a virtual model's rules, targets and defaults", "[config][routing]") {
  const auto cfg = parse_config(config_with("", R"(, "virtual_models": {"auto": {
      "rules": [
        {"name": "long", "prompt_tokens_min": 100, "target": "c"},
        {"header": "X-Tier", "header_value": "gold", "tools": true, "images": false,
         "caller_tags": {"tier": "gold"}, "prompt_tokens_max": 50, "target": "b"},
        {"name": "canary", "target": [{"model": "a", "weight": 90}, {"model": "d", "weight": 10}]}
      ],
      "default": "a"}})"),
                                no_env);
  const auto* v = cfg.find_virtual_model("auto");
  REQUIRE(v != nullptr);
  CHECK(cfg.find_model("auto") == nullptr);
  CHECK(v->owned_by == "tollgate");
  CHECK(v->split_by == "request_id");
  CHECK(v->count_with == "a");  // the default's first target
  REQUIRE(v->rules.size() == 3);
  CHECK(v->rules[0].name == "long");
  CHECK(v->rules[0].prompt_tokens_min == 100);
  CHECK(v->rules[0].prompt_tokens_max == -1);
  CHECK(v->rules[0].tools == -1);
  CHECK(v->rules[1].name == "rule2");
  CHECK(v->rules[1].header == "x-tier");
  CHECK(v->rules[1].header_value == "gold");
  CHECK(v->rules[1].tools == 1);
  CHECK(v->rules[1].images == 0);
  CHECK(v->rules[1].caller_tags.size() == 1);
  CHECK(v->rules[2].targets.size() == 2);
  CHECK(v->rules[2].targets[1].model == "d");
  CHECK(v->rules[2].targets[1].weight == 10);
  CHECK(v->default_rule.name == "default");
  CHECK(v->default_rule.targets.front().model == "a");
  CHECK(v->default_rule.targets.front().weight == 100);
  CHECK(v->routes_to("c"));
  CHECK(v->routes_to("d"));
  CHECK_FALSE(v->routes_to("auto"));
}

TEST_CASE("bad virtual models stop start-up naming the field", "[config][routing]") {
  const auto vm = [](const std::string& body) {
    return error_of(config_with("", R"(, "virtual_models": {"auto": )" + body + "}"));
  };
  CHECK(error_of(config_with("", R"(, "virtual_models": {"b": {"default": "a"}})")) ==
        "config /virtual_models/b: clashes with the configured model of the same name");
  CHECK(vm(R"({"default": "nope"})") ==
        "config /virtual_models/auto/default: names a model that is not configured: \"nope\"");
  CHECK(vm(R"({})") ==
        "config /virtual_models/auto/default: is needed: the model (or weighted "
        "split) when no rule matches");
  CHECK(vm(R"({"default": [{"model": "a", "weight": 90}, {"model": "b", "weight": 20}]})") ==
        "config /virtual_models/auto/default: weights must sum to 100 (percent), got 110");
  CHECK(vm(R"({"default": [{"model": "a", "weight": 101}]})") ==
        "config /virtual_models/auto/default/0/weight: must be between 0 and 100, got 101");
  CHECK(vm(R"({"default": [{"model": "a", "weight": 50}, {"model": "a", "weight": 50}]})") ==
        "config /virtual_models/auto/default/1/model: repeats \"a\"");
  CHECK(vm(R"({"default": "a", "rules": [{"target": "zz"}]})") ==
        "config /virtual_models/auto/rules/0/target: names a model that is not configured: "
        "\"zz\"");
  CHECK(vm(R"({"default": "a", "rules": [{"prompt_tokens_min": 5}]})") ==
        "config /virtual_models/auto/rules/0/target: is needed: a model or a weighted split");
  CHECK(vm(R"({"default": "a", "rules": [{"size": 5, "target": "a"}]})") ==
        "config /virtual_models/auto/rules/0/size: unknown field");
  CHECK(vm(R"({"default": "a", "rules": [{"header": "x-a", "target": "a"}]})") ==
        "config /virtual_models/auto/rules/0/header_value: is needed with header");
  CHECK(vm(R"({"default": "a", "rules": [{"prompt_tokens_min": 9, "prompt_tokens_max": 3,
        "target": "a"}]})") ==
        "config /virtual_models/auto/rules/0/prompt_tokens_max: must be at least "
        "prompt_tokens_min");
  CHECK(vm(R"({"default": "a", "rules": [{"name": "x", "target": "a"},
        {"name": "x", "target": "b"}]})") ==
        "config /virtual_models/auto/rules/1/name: repeats the rule name \"x\"");
  CHECK(vm(R"({"default": "a", "rules": [{"name": "default", "target": "a"}]})") ==
        "config /virtual_models/auto/rules/0/name: must be 1 to 64 letters, digits, - _ . or : "
        "and not \"default\"");
  CHECK(vm(R"({"default": "a", "split_by": "tenant"})") ==
        "config /virtual_models/auto/split_by: must be request_id or end_user, got \"tenant\"");
  CHECK(vm(R"({"default": "a", "count_with": "nope"})") ==
        "config /virtual_models/auto/count_with: names a model that is not configured: "
        "\"nope\"");
  CHECK(error_of(config_with("", R"(, "virtual_models": {"auto": {"default": "a"},
        "auto2": {"default": "auto"}})")) ==
        "config /virtual_models/auto2/default: names the virtual model \"auto\": targets must "
        "be configured models");
}
