// deploy/tollgate.example.json against the parser's own table of settings: the same keys and the
// same defaults, entry for entry, so a setting added to the parser without an example line (or a
// default changed on one side only) fails here. Every other deploy/*.example.json is accepted
// by the parser (the fallback sample: fallbacks and a virtual model resolved as it says).
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"

using json = nlohmann::json;

namespace {

json read_example() {
  std::ifstream in(std::string(TOLLGATE_SOURCE_DIR) + "/deploy/tollgate.example.json");
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  return json::parse(text.str(), nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
}

// Appends one line per difference: a setting missing from the example, one the parser does not
// know, or a default that differs.
void compare(const json& parser, const json& example, const std::string& path,
             std::vector<std::string>& out) {
  if (!parser.is_object() || !example.is_object()) {
    if (parser != example) {
      out.push_back(path + ": the parser's default is " + parser.dump() + ", the example says " +
                    example.dump());
    }
    return;
  }
  for (const auto& [key, value] : parser.items()) {
    if (!example.contains(key)) {
      out.push_back(path + "/" + key + ": missing from the example (default " + value.dump() + ")");
    } else {
      compare(value, example.at(key), path + "/" + key, out);
    }
  }
  for (const auto& [key, value] : example.items()) {
    if (!parser.contains(key)) out.push_back(path + "/" + key + ": not a setting the parser knows");
  }
}

}  // namespace

TEST_CASE("the example config names every setting with its default", "[config][example]") {
  const json parser = json::parse(tollgate::default_settings_json());
  const json example = read_example();
  std::vector<std::string> differences;
  compare(parser, example, "", differences);
  for (const auto& d : differences) UNSCOPED_INFO(d);
  CHECK(differences.empty());
}

TEST_CASE("the example config is accepted by the parser", "[config][example]") {
  std::ifstream in(std::string(TOLLGATE_SOURCE_DIR) + "/deploy/tollgate.example.json");
  std::ostringstream text;
  text << in.rdbuf();
  const auto env = [](const char*) -> const char* { return nullptr; };
  CHECK_NOTHROW(tollgate::parse_config(text.str(), env));
}

TEST_CASE("the fallback sample config is accepted: fallbacks and the virtual model resolved",
          "[config][example]") {
  std::ifstream in(std::string(TOLLGATE_SOURCE_DIR) + "/deploy/tollgate.fallback.example.json");
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  const auto env = [](const char* name) -> const char* {
    return std::string_view(name) == "OPENAI_API_KEY" ? "sk-test" : nullptr;
  };
  const auto cfg = tollgate::parse_config(text.str(), env);
  const auto* local = cfg.find_model("llama-3.1-8b");
  REQUIRE(local != nullptr);
  CHECK(local->fallback_chain == std::vector<std::string>{"gpt-4o-mini"});
  const auto* hosted = cfg.find_upstream("openai");
  REQUIRE(hosted != nullptr);
  CHECK(hosted->tls);
  CHECK(hosted->auth_header_value == "Bearer sk-test");
  CHECK(cfg.find_upstream("vllm")->endpoints.size() == 2);
  const auto* vm = cfg.find_virtual_model("auto");
  REQUIRE(vm != nullptr);
  CHECK(vm->rules.size() == 4);
  CHECK(vm->default_rule.targets.size() == 2);
}
