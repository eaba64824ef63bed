// Routing rules and fallback choices: see routing.hpp.
#include "gateway/routing.hpp"

#include <algorithm>

#include "core/limits.hpp"

namespace tollgate::gateway {
namespace {

bool non_empty_array(json::value v) {
  return v.valid() && v.is_array() && v.size() > 0;
}

bool part_is_image(json::value part) {
  if (!part.is_object()) return false;
  const json::value type = part.find("type");
  if (!type.valid() || !type.is_string()) return false;
  const std::string_view t = type.as_string();
  return t == "image_url" || t == "input_image";
}

// A content array holding an image part.
bool content_has_image(json::value content) {
  if (!content.valid() || !content.is_array()) return false;
  bool found = false;
  content.for_each_element([&](json::value part) { found = found || part_is_image(part); });
  return found;
}

// Chat messages, or a Responses input list: items (or their content) with image parts.
bool items_have_image(json::value items) {
  if (!items.valid() || !items.is_array()) return false;
  bool found = false;
  items.for_each_element([&](json::value item) {
    if (found || !item.is_object()) return;
    found = part_is_image(item) || content_has_image(item.find("content"));
  });
  return found;
}

}  // namespace

request_features features_of(const completion_request& req) {
  request_features f;
  if (!req.body) return f;
  const json::value body = req.body->root();
  switch (req.kind) {
    case endpoint_kind::chat_completions:
      f.tools = non_empty_array(body.find("tools")) || non_empty_array(body.find("functions"));
      f.images = items_have_image(body.find("messages"));
      break;
    case endpoint_kind::responses:
      f.tools = non_empty_array(body.find("tools"));
      f.images = items_have_image(body.find("input"));
      break;
    case endpoint_kind::completions:
    case endpoint_kind::embeddings:
      break;
  }
  return f;
}

bool rule_matches(const routing_rule_config& rule, const route_inputs& in) {
  if (rule.prompt_tokens_min >= 0 && in.prompt_tokens < rule.prompt_tokens_min) return false;
  if (rule.prompt_tokens_max >= 0 && in.prompt_tokens > rule.prompt_tokens_max) return false;
  if (rule.tools >= 0 && (rule.tools == 1) != in.tools) return false;
  if (rule.images >= 0 && (rule.images == 1) != in.images) return false;
  if (!rule.header.empty()) {
    if (in.header == nullptr || !*in.header) return false;
    if ((*in.header)(rule.header) != rule.header_value) return false;
  }
  for (const auto& [key, value] : rule.caller_tags) {
    if (in.caller_tags == nullptr) return false;
    const auto& tags = *in.caller_tags;
    const auto it = std::find_if(tags.begin(), tags.end(),
                                 [&](const metering::tag& t) { return t.key == key; });
    if (it == tags.end() || it->value != value) return false;
  }
  return true;
}

std::uint64_t split_bucket(std::string_view virtual_model, std::string_view key) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a offset basis
  const auto mix = [&h](std::string_view s) {
    for (const char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;  // FNV prime
    }
  };
  mix(virtual_model);
  mix("\n");
  mix(key);
  return h % limits::routing_split_percent;
}

const route_target& split_target(const std::vector<route_target>& targets,
                                 std::string_view virtual_model, std::string_view key) {
  if (targets.size() == 1) return targets.front();
  const std::uint64_t bucket = split_bucket(virtual_model, key);
  std::uint64_t upto = 0;
  for (const auto& t : targets) {
    upto += t.weight;
    if (bucket < upto) return t;
  }
  return targets.back();  // weights sum to 100 (checked at start-up): not reached
}

route_choice choose_route(const virtual_model_config& vm, const route_inputs& in) {
  const routing_rule_config* rule = &vm.default_rule;
  for (const auto& r : vm.rules) {
    if (rule_matches(r, in)) {
      rule = &r;
      break;
    }
  }
  route_choice c;
  c.rule = rule;
  c.model = &split_target(rule->targets, vm.name, in.split_key).model;
  c.label = vm.name + "/" + rule->name;
  return c;
}

bool may_serve(const caller& who, const virtual_model_config* via, std::string_view model) {
  if (who.may_use(model)) return true;
  return via != nullptr && who.may_use(via->name) && via->routes_to(model);
}

std::optional<std::string> fallback_reason(const model_config& model,
                                           std::string_view failure_label, unsigned status,
                                           bool client_gone) {
  if (client_gone) return std::nullopt;
  if (!failure_label.empty()) return std::string(failure_label);
  const auto& listed = model.fallback_on_status;
  if (std::find(listed.begin(), listed.end(), status) != listed.end()) {
    return "status_" + std::to_string(status);
  }
  return std::nullopt;
}

const model_config* next_fallback(const gateway_config& config, const model_config& primary,
                                  const std::vector<const model_config*>& tried, const caller& who,
                                  const virtual_model_config* via) {
  for (const auto& name : primary.fallback_chain) {
    const model_config* m = config.find_model(name);
    if (m == nullptr) continue;  // resolved at start-up: not reached
    if (std::find(tried.begin(), tried.end(), m) != tried.end()) continue;
    if (!may_serve(who, via, m->name)) continue;
    return m;
  }
  return nullptr;
}

}  // namespace tollgate::gateway
