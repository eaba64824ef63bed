// OpenAI completion request parsing and validation: see openai_request.hpp. Messages follow
// OpenAI's own wording for the same mistakes, so clients see familiar errors.
#include "gateway/openai_request.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "gateway/embeddings_request.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/responses_request.hpp"

namespace tollgate::gateway {
namespace {

bool is_one_of(std::string_view v, std::initializer_list<std::string_view> options) {
  for (auto o : options) {
    if (v == o) return true;
  }
  return false;
}

// The error for one message, if any. Parameter paths are only built on the error path.
std::optional<api_error> check_message(json::value m, std::uint32_t index) {
  auto at = [index](std::string_view rest = {}) {
    return "messages[" + std::to_string(index) + "]" + std::string(rest);
  };
  if (!m.is_object()) return invalid_type(at(), "an object", m);
  const json::value role = m.find("role");
  if (!role.valid()) return missing(at(".role"));
  if (!role.is_string()) return invalid_type(at(".role"), "a string", role);
  if (!is_one_of(role.as_string(),
                 {"system", "developer", "user", "assistant", "tool", "function"})) {
    return invalid_request("Invalid value: '" + std::string(role.as_string()) +
                               "'. Supported values are: 'system', 'assistant', 'user', "
                               "'function', 'tool', and 'developer'.",
                           at(".role"), "invalid_value");
  }
  const json::value content = m.find("content");
  if (content.valid() && !content.is_string() && !content.is_array() && !content.is_null()) {
    return invalid_type(at(".content"), "one of a string or array of objects", content);
  }
  // Only an assistant message that calls tools or a function, and the legacy function role,
  // may come without content (OpenAI answers the same).
  if (!given(content)) {
    const std::string_view r = role.as_string();
    const bool calls = given(m.find("tool_calls")) || given(m.find("function_call"));
    const bool may_omit = r == "function" || (r == "assistant" && (calls || content.valid()));
    if (!may_omit) return missing(at(".content"));
  }
  if (content.valid() && content.is_array()) {
    std::optional<api_error> error;
    std::uint32_t k = 0;
    content.for_each_element([&](json::value part) {
      if (error) return;
      auto part_at = [&](std::string_view rest = {}) {
        return at(".content[" + std::to_string(k) + "]" + std::string(rest));
      };
      if (!part.is_object()) {
        error = invalid_type(part_at(), "an object", part);
      } else if (const json::value type = part.find("type"); !type.valid()) {
        error = missing(part_at(".type"));
      } else if (!type.is_string()) {
        error = invalid_type(part_at(".type"), "a string", type);
      }
      ++k;
    });
    if (error) return error;
  }
  const json::value name = m.find("name");
  if (name.valid() && !name.is_string()) return invalid_type(at(".name"), "a string", name);
  return std::nullopt;
}

// Returns an error for the first invalid message, if any.
std::optional<api_error> check_messages(json::value messages) {
  if (!messages.is_array()) return invalid_type("messages", "an array", messages);
  if (messages.size() == 0) {
    return invalid_request(
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        "messages", "empty_array");
  }
  std::optional<api_error> error;
  std::uint32_t i = 0;
  messages.for_each_element([&](json::value m) {
    if (!error) error = check_message(m, i);
    ++i;
  });
  return error;
}

std::optional<api_error> check_prompt(json::value prompt, std::int64_t prompts_max) {
  if (prompt.is_string()) return std::nullopt;
  if (!prompt.is_array()) {
    return invalid_type("prompt", "a string or an array of strings or tokens", prompt);
  }
  if (static_cast<std::int64_t>(prompt.size()) > prompts_max) {
    bool token_ids = true;
    prompt.for_each_element([&](json::value p) { token_ids = token_ids && p.is_int64(); });
    if (!token_ids) {
      return invalid_request("Invalid 'prompt': array too long. Expected an array with maximum "
                             "length " + std::to_string(prompts_max) + ", but got an array with "
                             "length " + std::to_string(prompt.size()) + " instead.",
                             "prompt", "array_above_max_length");
    }
  }
  // One prompt of token ids, or a list of prompts: not both in one array.
  bool any_id = false, any_prompt = false;
  prompt.for_each_element([&](json::value p) {
    any_id = any_id || p.is_int64();
    any_prompt = any_prompt || !p.is_int64();
  });
  if (any_id && any_prompt) {
    return invalid_request("Invalid 'prompt': an array holds either token ids (one prompt) or "
                           "prompts (strings or arrays of token ids), not both.",
                           "prompt", "invalid_value");
  }
  std::optional<api_error> error;
  prompt.for_each_element([&](json::value p) {
    if (error) return;
    bool ok = p.is_string() || p.is_int64();
    if (p.is_array()) {
      ok = true;
      p.for_each_element([&](json::value t) { ok = ok && t.is_int64(); });
    }
    if (!ok) error = invalid_type("prompt", "a string or an array of strings or tokens", p);
  });
  return error;
}

}  // namespace

std::string_view endpoint_path(endpoint_kind kind) {
  switch (kind) {
    case endpoint_kind::chat_completions: return "/chat/completions";
    case endpoint_kind::completions: return "/completions";
    case endpoint_kind::embeddings: return "/embeddings";
    case endpoint_kind::responses: return "/responses";
  }
  return "/chat/completions";
}

std::optional<api_error> parse_stream_fields(json::value j, completion_request& req,
                                             bool read_include_usage) {
  if (const json::value s = j.find("stream"); given(s)) {
    if (!s.is_bool()) return invalid_type("stream", "a boolean", s);
    req.stream = s.as_bool();
  }
  req.stream_options_member = j.find("stream_options").valid();
  if (const json::value so = j.find("stream_options"); given(so)) {
    if (!so.is_object()) return invalid_type("stream_options", "an object", so);
    if (!req.stream) {
      return invalid_request(
          "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
          "stream_options", "invalid_value");
    }
    req.has_stream_options = true;
    if (const json::value iu = so.find("include_usage"); read_include_usage && given(iu)) {
      if (!iu.is_bool()) return invalid_type("stream_options.include_usage", "a boolean", iu);
      req.client_wants_usage = iu.as_bool();
    }
  }
  return std::nullopt;
}

result<completion_request> parse_completion_request(endpoint_kind kind, std::string_view body,
                                                    const request_limits& limits) {
  if (kind == endpoint_kind::embeddings) return parse_embeddings_request(body, limits);
  if (kind == endpoint_kind::responses) return parse_responses_request(body);
  auto parsed = parse_request_body(body);
  if (!parsed) return parsed.error();
  completion_request req;
  req.kind = kind;
  req.body = std::move(*parsed);
  const json::value j = req.body->root();
  auto model = required_model(j);
  if (!model) return model.error();
  req.model = std::move(*model);

  if (kind == endpoint_kind::chat_completions) {
    const json::value messages = j.find("messages");
    if (!messages.valid()) return missing("messages");
    if (auto e = check_messages(messages)) return *e;
  } else if (const json::value prompt = j.find("prompt"); given(prompt)) {
    if (auto e = check_prompt(prompt, limits.prompts_max)) return *e;
  }

  if (auto e = parse_stream_fields(j, req, /*read_include_usage=*/true)) return *e;
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    const json::value v = j.find(key);
    if (!given(v)) continue;
    if (!v.is_int64()) return invalid_type(key, "an integer", v);
    const auto n = v.as_int64();
    if (n < 1) {
      return invalid_request("Invalid '" + std::string(key) +
                                 "': integer below minimum value. "
                                 "Expected a value >= 1, but got " +
                                 std::to_string(n) + " instead.",
                             key, "integer_below_min_value");
    }
    if (req.max_tokens < 0) req.max_tokens = n;
  }
  if (auto e = check_count(j.find("n"), "n", limits.n_max, req.n)) return *e;
  if (auto e = parse_user_and_metadata(j, req.end_user, req.tags)) return *e;
  if (kind == endpoint_kind::completions) {
    if (auto e = check_count(j.find("best_of"), "best_of", limits.n_max, req.best_of)) return *e;
    if (given(j.find("best_of")) && req.best_of < req.n) {
      return invalid_request("Invalid 'best_of': it must be at least 'n'.", "best_of",
                             "invalid_value");
    }
  }
  return req;
}

result<metering::attribution> attribution_of(const completion_request& request,
                                             const attribution_headers& headers,
                                             const metering::tag_set& default_tags) {
  metering::attribution out;
  if (!headers.end_user.empty()) {
    if (auto bad = metering::check_end_user(headers.end_user)) {
      return invalid_request("Invalid x-tollgate-end-user header: it " + *bad + ".",
                             "x-tollgate-end-user", "invalid_value");
    }
    out.end_user = std::string(headers.end_user);
  } else {
    out.end_user = request.end_user;
  }
  if (!headers.session.empty()) {
    if (auto bad = metering::check_session(headers.session)) {
      return invalid_request("Invalid x-tollgate-session header: it " + *bad + ".",
                             "x-tollgate-session", "invalid_value");
    }
    out.session = std::string(headers.session);
  }
  metering::tag_set request_tags = request.tags;
  if (!headers.tags.empty()) {
    auto tags = metering::tags_from_header(headers.tags);
    if (!tags.error.empty()) {
      return invalid_request("Invalid x-tollgate-tags header: it " + tags.error + ".",
                             "x-tollgate-tags", "invalid_value");
    }
    request_tags = metering::merge_tags(tags.tags, request_tags);
  }
  out.tags = default_tags.empty() ? std::move(request_tags)
                                  : metering::merge_tags(request_tags, default_tags);
  return out;
}

std::string upstream_body(const completion_request& request, std::string_view original,
                          std::string_view upstream_model) {
  const bool rename = upstream_model != request.model;
  const bool force_usage = request.stream && !request.client_wants_usage;
  if (!rename && !force_usage) return std::string(original);

  if (!rename && !request.stream_options_member) {
    // Common case: splice the option in after the opening brace instead of re-serializing.
    // A validated request is a non-empty object, so a member follows the brace.
    const auto brace = original.find('{');
    std::string out;
    out.reserve(original.size() + 48);
    out.append(original.substr(0, brace + 1));
    out += "\"stream_options\":{\"include_usage\":true},";
    out.append(original.substr(brace + 1));
    return out;
  }
  // Otherwise rebuild the top level from the members' original bytes, replacing the model and
  // merging include_usage into stream_options. The body was validated, so it parses.
  const auto doc = json::document::parse(original);
  std::string out = "{";
  bool first = true;
  auto member = [&](std::string_view raw_key) {
    if (!first) out.push_back(',');
    first = false;
    out += raw_key;
    out.push_back(':');
  };
  doc->root().for_each_member_node([&](json::value key, json::value v) {
    const std::string_view name = key.as_string();
    member(key.source());
    if (name == "model" && rename) {
      append_json_string(out, upstream_model);
    } else if (name == "stream_options" && force_usage) {
      // Rewritten whatever the client sent (an object, or null that would switch usage off).
      out += "{\"include_usage\":true";
      if (v.is_object()) {
        v.for_each_member_node([&](json::value k2, json::value v2) {
          if (k2.as_string() == "include_usage") return;
          out.push_back(',');
          out += k2.source();
          out.push_back(':');
          out += v2.source();
        });
      }
      out.push_back('}');
    } else {
      out += v.source();
    }
  });
  if (force_usage && !request.stream_options_member) {
    member("\"stream_options\"");
    out += "{\"include_usage\":true}";
  }
  out.push_back('}');
  return out;
}

}  // namespace tollgate::gateway
