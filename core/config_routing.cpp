// The routing sections of the configuration: each model's fallbacks (checked for unknown names
// and cycles, resolved into the order a request tries them) and the virtual models with their
// rules and weighted splits. Start-up only: errors are config_errors naming the field.
#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

#include "core/config_detail.hpp"
#include "core/limits.hpp"

namespace tollgate {
namespace config_detail {
namespace {

constexpr std::uint64_t prompt_tokens_bound = 1'000'000'000;
constexpr std::size_t rule_name_chars_max = 64;

// Letters, digits and - _ . : (a rule name goes on the ledger as "<virtual>/<name>").
bool is_rule_name(std::string_view name) {
  if (name.empty() || name.size() > rule_name_chars_max) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':';
  });
}

bool is_header_token(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// A target names a configured model; a virtual one cannot be a target (no routing twice).
void check_target_model(const gateway_config& cfg, const std::string& model,
                        const std::string& path, std::string_view what = "targets") {
  if (model.empty()) fail(path, "must name a model");
  if (cfg.find_model(model) != nullptr) return;
  const bool is_virtual = std::any_of(cfg.virtual_models.begin(), cfg.virtual_models.end(),
                                      [&](const auto& v) { return v.name == model; });
  if (is_virtual) {
    fail(path, "names the virtual model \"" + model + "\": " + std::string(what) +
                   " must be configured models");
  }
  fail(path, "names a model that is not configured: \"" + model + "\"");
}

// `target`/`default`: a model name, or a weighted split [{"model": ..., "weight": percent}]
// whose weights sum to 100.
std::vector<route_target> parse_targets(const gateway_config& cfg, const json& t,
                                        const std::string& path) {
  std::vector<route_target> out;
  if (t.is_string()) {
    check_target_model(cfg, t.get<std::string>(), path);
    out.push_back({t.get<std::string>(), limits::routing_split_percent});
    return out;
  }
  if (!t.is_array() || t.empty()) {
    fail(path, "must be a model name or a non-empty array of {\"model\", \"weight\"}");
  }
  if (t.size() > limits::routing_split_targets_max) {
    fail(path, "splits between more than " + std::to_string(limits::routing_split_targets_max) +
                   " targets");
  }
  std::uint64_t sum = 0;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const std::string at = path + "/" + std::to_string(i);
    json full = json{{"model", ""}, {"weight", 0}};
    overlay_known(full, t[i], at);
    route_target r;
    r.model = get_string(full, at, "model");
    check_target_model(cfg, r.model, at + "/model");
    if (!seen.insert(r.model).second) fail(at + "/model", "repeats \"" + r.model + "\"");
    r.weight = get_uint(full, at, "weight", 0, limits::routing_split_percent);
    sum += r.weight;
    out.push_back(std::move(r));
  }
  if (sum != limits::routing_split_percent) {
    fail(path, "weights must sum to 100 (percent), got " + std::to_string(sum));
  }
  return out;
}

// An optional prompt-size bound (-1 when absent).
std::int64_t optional_tokens(const json& r, const std::string& path, const char* key) {
  if (!r.contains(key)) return -1;
  return static_cast<std::int64_t>(get_uint(r, path, key, 0, prompt_tokens_bound));
}

int optional_flag(const json& r, const std::string& path, const char* key) {
  if (!r.contains(key)) return -1;
  return get_bool(r, path, key) ? 1 : 0;
}

routing_rule_config parse_rule(const gateway_config& cfg, const json& r, const std::string& path,
                               std::size_t index) {
  static const std::set<std::string> known{
      "name",   "prompt_tokens_min", "prompt_tokens_max", "tools", "images",
      "header", "header_value",      "caller_tags",       "target"};
  if (!r.is_object()) fail(path, "must be an object");
  for (auto it = r.begin(); it != r.end(); ++it) {
    if (!known.contains(it.key())) fail(path + "/" + it.key(), "unknown field");
  }
  routing_rule_config rule;
  rule.name = r.contains("name") ? get_string(r, path, "name") : "rule" + std::to_string(index + 1);
  if (!is_rule_name(rule.name) || rule.name == "default") {
    fail(path + "/name", "must be 1 to 64 letters, digits, - _ . or : and not \"default\"");
  }
  rule.prompt_tokens_min = optional_tokens(r, path, "prompt_tokens_min");
  rule.prompt_tokens_max = optional_tokens(r, path, "prompt_tokens_max");
  if (rule.prompt_tokens_min >= 0 && rule.prompt_tokens_max >= 0 &&
      rule.prompt_tokens_min > rule.prompt_tokens_max) {
    fail(path + "/prompt_tokens_max", "must be at least prompt_tokens_min");
  }
  rule.tools = optional_flag(r, path, "tools");
  rule.images = optional_flag(r, path, "images");
  if (r.contains("header")) {
    rule.header = get_string(r, path, "header");
    if (!is_header_token(rule.header)) fail(path + "/header", "is not a valid header name");
    std::transform(rule.header.begin(), rule.header.end(), rule.header.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!r.contains("header_value")) fail(path + "/header_value", "is needed with header");
    rule.header_value = get_string(r, path, "header_value");
    if (rule.header_value.empty()) fail(path + "/header_value", "must not be empty");
  } else if (r.contains("header_value")) {
    fail(path + "/header_value", "needs header (the header's name)");
  }
  if (r.contains("caller_tags")) {
    const json& tags = r.at("caller_tags");
    if (!tags.is_object()) fail(path + "/caller_tags", "must be an object of strings");
    for (auto it = tags.begin(); it != tags.end(); ++it) {
      if (!it.value().is_string()) fail(path + "/caller_tags/" + it.key(), "must be a string");
      rule.caller_tags.emplace_back(it.key(), it.value().get<std::string>());
    }
  }
  if (!r.contains("target")) fail(path + "/target", "is needed: a model or a weighted split");
  rule.targets = parse_targets(cfg, r.at("target"), path + "/target");
  return rule;
}

virtual_model_config parse_virtual_model(const gateway_config& cfg, const std::string& name,
                                         const json& v) {
  const std::string path = "/virtual_models/" + name;
  if (name.empty()) fail(path, "virtual model names must not be empty");
  if (cfg.find_model(name) != nullptr) {
    fail(path, "clashes with the configured model of the same name");
  }
  virtual_model_config vm;
  vm.name = name;
  vm.owned_by = get_string(v, path, "owned_by");
  vm.split_by = get_string(v, path, "split_by");
  if (vm.split_by != "request_id" && vm.split_by != "end_user") {
    fail(path + "/split_by", "must be request_id or end_user, got \"" + vm.split_by + "\"");
  }
  const json& rules = v.at("rules");
  if (!rules.is_array()) fail(path + "/rules", "must be an array");
  if (rules.size() > limits::routing_rules_max) {
    fail(path + "/rules",
         "holds more than " + std::to_string(limits::routing_rules_max) + " rules");
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const std::string at = path + "/rules/" + std::to_string(i);
    vm.rules.push_back(parse_rule(cfg, rules[i], at, i));
    if (!names.insert(vm.rules.back().name).second) {
      fail(at + "/name", "repeats the rule name \"" + vm.rules.back().name + "\"");
    }
  }
  const json& fallback = v.at("default");
  if (fallback.is_string() && fallback.get<std::string>().empty()) {
    fail(path + "/default", "is needed: the model (or weighted split) when no rule matches");
  }
  vm.default_rule.name = "default";
  vm.default_rule.targets = parse_targets(cfg, fallback, path + "/default");
  vm.count_with = get_string(v, path, "count_with");
  if (vm.count_with.empty()) vm.count_with = vm.default_rule.targets.front().model;
  check_target_model(cfg, vm.count_with, path + "/count_with");
  return vm;
}

}  // namespace

json model_fallback_defaults() {
  return json{{"fallbacks", json::array()},
              {"fallback_on_status", json::array({429, 500, 502, 503, 504})}};
}

json virtual_model_defaults() {
  return json{{"owned_by", "tollgate"},
              {"count_with", ""},
              {"split_by", "request_id"},
              {"rules", json::array()},
              {"default", ""}};
}

void parse_model_fallbacks(const json& m, const std::string& path, model_config& model) {
  const json& list = m.at("fallbacks");
  if (!list.is_array()) fail(path + "/fallbacks", "must be an array of model names");
  if (list.size() > limits::model_fallbacks_max) {
    fail(path + "/fallbacks",
         "names more than " + std::to_string(limits::model_fallbacks_max) + " models");
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string at = path + "/fallbacks/" + std::to_string(i);
    if (!list[i].is_string()) fail(at, "must be a model name");
    const std::string name = list[i].get<std::string>();
    if (name == model.name) fail(at, "names the model itself");
    if (std::find(model.fallbacks.begin(), model.fallbacks.end(), name) != model.fallbacks.end()) {
      fail(at, "repeats \"" + name + "\"");
    }
    model.fallbacks.push_back(name);
  }
  const json& statuses = m.at("fallback_on_status");
  if (!statuses.is_array()) fail(path + "/fallback_on_status", "must be an array of statuses");
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    const std::string at = path + "/fallback_on_status/" + std::to_string(i);
    const json& v = statuses[i];
    if (!v.is_number_integer() || v.get<std::int64_t>() < 400 || v.get<std::int64_t>() > 599) {
      fail(at, "must be an HTTP error status (400 to 599)");
    }
    model.fallback_on_status.push_back(static_cast<unsigned>(v.get<std::int64_t>()));
  }
}

void parse_virtual_models(const json& merged, gateway_config& cfg) {
  // Every name first, so that a target naming any virtual model is told so.
  for (const auto& [name, v] : merged["virtual_models"].items()) {
    cfg.virtual_models.emplace_back().name = name;
  }
  std::size_t i = 0;
  for (const auto& [name, v] : merged["virtual_models"].items()) {
    cfg.virtual_models[i++] = parse_virtual_model(cfg, name, v);
  }
  std::sort(cfg.virtual_models.begin(), cfg.virtual_models.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
}

void resolve_fallbacks(gateway_config& cfg) {
  for (const auto& m : cfg.models) {
    for (std::size_t i = 0; i < m.fallbacks.size(); ++i) {
      check_target_model(cfg, m.fallbacks[i],
                         "/models/" + m.name + "/fallbacks/" + std::to_string(i), "fallbacks");
    }
  }
  // A cycle (a falls back to b, b to a) is refused: depth first, a model met again while it is
  // still on the path closes one.
  std::set<std::string> done;
  std::vector<std::string> path;
  std::function<void(const model_config&)> visit = [&](const model_config& m) {
    if (done.contains(m.name)) return;
    if (const auto at = std::find(path.begin(), path.end(), m.name); at != path.end()) {
      std::string cycle;
      for (auto it = at; it != path.end(); ++it) cycle += *it + " -> ";
      fail("/models/" + *at + "/fallbacks", "form a cycle: " + cycle + m.name);
    }
    path.push_back(m.name);
    for (const auto& f : m.fallbacks) visit(*cfg.find_model(f));
    path.pop_back();
    done.insert(m.name);
  };
  for (const auto& m : cfg.models) visit(m);
  // Each model's chain: its fallbacks in order, each followed by its own (depth first), each
  // model once.
  for (auto& m : cfg.models) {
    std::vector<std::string> chain;
    std::function<void(const model_config&)> walk = [&](const model_config& from) {
      for (const auto& f : from.fallbacks) {
        if (f == m.name || std::find(chain.begin(), chain.end(), f) != chain.end()) continue;
        chain.push_back(f);
        walk(*cfg.find_model(f));
      }
    };
    walk(m);
    if (chain.size() > limits::model_fallbacks_max) {
      fail("/models/" + m.name + "/fallbacks", "lead to more than " +
                                                   std::to_string(limits::model_fallbacks_max) +
                                                   " models with their own fallbacks");
    }
    m.fallback_chain = std::move(chain);
  }
}

}  // namespace config_detail

bool virtual_model_config::routes_to(std::string_view model) const {
  const auto in = [&](const routing_rule_config& r) {
    return std::any_of(r.targets.begin(), r.targets.end(),
                       [&](const route_target& t) { return t.model == model; });
  };
  return in(default_rule) || std::any_of(rules.begin(), rules.end(), in);
}

const virtual_model_config* gateway_config::find_virtual_model(std::string_view name) const {
  auto it = std::lower_bound(
      virtual_models.begin(), virtual_models.end(), name,
      [](const virtual_model_config& v, std::string_view n) { return v.name < n; });
  return it != virtual_models.end() && it->name == name ? &*it : nullptr;
}

}  // namespace tollgate
