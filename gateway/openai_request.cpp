// OpenAI completion request parsing and validation: see openai_request.hpp. Messages follow
// OpenAI's own wording for the same mistakes, so clients see familiar errors.
#include "gateway/openai_request.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

namespace tollgate::gateway {
namespace {

using json = nlohmann::json;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a decimal";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unknown type";
  }
}

api_error invalid_type(const std::string& param, const char* expected, const json& got) {
  return invalid_request("Invalid type for '" + param + "': expected " + expected + ", but got " +
                             type_name(got) + " instead.",
                         param, "invalid_type");
}

api_error missing(const std::string& param) {
  return invalid_request("Missing required parameter: '" + param + "'.", param,
                         "missing_required_parameter");
}

bool is_one_of(const std::string& v, std::initializer_list<const char*> options) {
  for (const char* o : options) {
    if (v == o) return true;
  }
  return false;
}

// Returns an error for the first invalid message, if any.
std::optional<api_error> check_messages(const json& messages) {
  if (!messages.is_array()) return invalid_type("messages", "an array", messages);
  if (messages.empty()) {
    return invalid_request(
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        "messages", "empty_array");
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return invalid_type(at, "an object", m);
    auto role = m.find("role");
    if (role == m.end()) return missing(at + ".role");
    if (!role->is_string()) return invalid_type(at + ".role", "a string", *role);
    const auto r = role->get<std::string>();
    if (!is_one_of(r, {"system", "developer", "user", "assistant", "tool", "function"})) {
      return invalid_request("Invalid value: '" + r +
                                 "'. Supported values are: 'system', 'assistant', 'user', "
                                 "'function', 'tool', and 'developer'.",
                             at + ".role", "invalid_value");
    }
    auto content = m.find("content");
    if (content != m.end() && !content->is_string() && !content->is_array() &&
        !content->is_null()) {
      return invalid_type(at + ".content", "one of a string or array of objects", *content);
    }
    if (content != m.end() && content->is_array()) {
      for (std::size_t k = 0; k < content->size(); ++k) {
        const json& part = (*content)[k];
        const std::string pat = at + ".content[" + std::to_string(k) + "]";
        if (!part.is_object()) return invalid_type(pat, "an object", part);
        auto type = part.find("type");
        if (type == part.end()) return missing(pat + ".type");
        if (!type->is_string()) return invalid_type(pat + ".type", "a string", *type);
      }
    }
    if (auto name = m.find("name"); name != m.end() && !name->is_string()) {
      return invalid_type(at + ".name", "a string", *name);
    }
  }
  return std::nullopt;
}

std::optional<api_error> check_prompt(const json& prompt) {
  if (prompt.is_string()) return std::nullopt;
  if (!prompt.is_array()) {
    return invalid_type("prompt", "a string or an array of strings or tokens", prompt);
  }
  for (const json& p : prompt) {
    const bool ok = p.is_string() || p.is_number_integer() ||
                    (p.is_array() && std::all_of(p.begin(), p.end(), [](const json& t) {
                       return t.is_number_integer();
                     }));
    if (!ok) return invalid_type("prompt", "a string or an array of strings or tokens", p);
  }
  return std::nullopt;
}

}  // namespace

completion_request::completion_request() = default;
completion_request::completion_request(completion_request&&) noexcept = default;
completion_request& completion_request::operator=(completion_request&&) noexcept = default;
completion_request::~completion_request() = default;

std::string_view endpoint_path(endpoint_kind kind) {
  return kind == endpoint_kind::chat_completions ? "/chat/completions" : "/completions";
}

result<completion_request> parse_completion_request(endpoint_kind kind, std::string_view body) {
  // nlohmann rejects invalid UTF-8 and unpaired surrogate escapes, so every string that gets
  // through is valid text.
  auto parsed = std::make_unique<json>(json::parse(body, nullptr, /*allow_exceptions=*/false));
  if (parsed->is_discarded()) {
    return invalid_request(
        "We could not parse the JSON body of your request. The API expects a JSON payload "
        "(valid UTF-8, no unpaired surrogates), but what was sent was not valid JSON.");
  }
  const json& j = *parsed;
  if (!j.is_object()) return invalid_type("body", "an object", j);

  completion_request req;
  req.kind = kind;
  auto model = j.find("model");
  if (model == j.end() || model->is_null()) {
    return invalid_request("You must provide a model parameter.", "model",
                           "missing_required_parameter");
  }
  if (!model->is_string()) return invalid_type("model", "a string", *model);
  req.model = model->get<std::string>();

  if (kind == endpoint_kind::chat_completions) {
    auto messages = j.find("messages");
    if (messages == j.end()) return missing("messages");
    if (auto e = check_messages(*messages)) return *e;
  } else if (auto prompt = j.find("prompt"); prompt != j.end() && !prompt->is_null()) {
    if (auto e = check_prompt(*prompt)) return *e;
  }

  if (auto s = j.find("stream"); s != j.end() && !s->is_null()) {
    if (!s->is_boolean()) return invalid_type("stream", "a boolean", *s);
    req.stream = s->get<bool>();
  }
  if (auto so = j.find("stream_options"); so != j.end() && !so->is_null()) {
    if (!so->is_object()) return invalid_type("stream_options", "an object", *so);
    if (!req.stream) {
      return invalid_request("The 'stream_options' parameter is only allowed when 'stream' is "
                             "enabled.",
                             "stream_options", "invalid_value");
    }
    if (auto iu = so->find("include_usage"); iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) {
        return invalid_type("stream_options.include_usage", "a boolean", *iu);
      }
      req.client_wants_usage = iu->get<bool>();
    }
  }
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number_integer()) return invalid_type(key, "an integer", *it);
    const auto v = it->get<std::int64_t>();
    if (v < 1) {
      return invalid_request("Invalid '" + std::string(key) + "': integer below minimum value. "
                                 "Expected a value >= 1, but got " + std::to_string(v) +
                                 " instead.",
                             key, "integer_below_min_value");
    }
    if (req.max_tokens < 0) req.max_tokens = v;
  }
  if (auto n = j.find("n"); n != j.end() && !n->is_null()) {
    if (!n->is_number_integer()) return invalid_type("n", "an integer", *n);
    if (n->get<std::int64_t>() < 1) {
      return invalid_request("Invalid 'n': integer below minimum value. Expected a value >= 1.",
                             "n", "integer_below_min_value");
    }
  }
  req.body = std::move(parsed);
  return req;
}

std::string upstream_body(const completion_request& request, std::string_view original,
                          std::string_view upstream_model) {
  const bool rename = upstream_model != request.model;
  const bool force_usage = request.stream && !request.client_wants_usage;
  if (!rename && !force_usage) return std::string(original);

  const json& j = *request.body;
  if (!rename && !j.contains("stream_options")) {
    // Common case: splice the option in after the opening brace instead of re-serializing.
    const auto brace = original.find('{');
    std::string out;
    out.reserve(original.size() + 48);
    out.append(original.substr(0, brace + 1));
    out += "\"stream_options\":{\"include_usage\":true},";
    out.append(original.substr(brace + 1));
    return out;
  }
  json copy = j;
  if (rename) copy["model"] = upstream_model;
  if (force_usage) {
    if (!copy["stream_options"].is_object()) copy["stream_options"] = json::object();
    copy["stream_options"]["include_usage"] = true;
  }
  return copy.dump();
}

}  // namespace tollgate::gateway
