// POST /v1/responses request parsing, prompt counting and worst case: see responses_request.hpp.
#include "gateway/responses_request.hpp"

#include <optional>

#include "core/json_text.hpp"
#include "gateway/request_checks.hpp"

namespace tollgate::gateway {
namespace {

std::string_view string_or_empty(json::value v) {
  return v.valid() && v.is_string() ? v.as_string() : std::string_view{};
}

bool is_message_role(std::string_view role) {
  return role == "user" || role == "assistant" || role == "system" || role == "developer";
}

// Content parts whose text the gateway counts; any other part (input_image, input_file,
// input_audio, ...) is context it cannot count.
bool is_text_part(std::string_view type) {
  return type == "input_text" || type == "output_text" || type == "refusal";
}

// The text of a message's content (a string, or its text parts joined without separator), or
// of a function call's output (the same shapes).
std::string text_of(json::value content) {
  if (!content.valid() || content.is_null()) return {};
  if (content.is_string()) return std::string(content.as_string());
  std::string text;
  if (content.is_array()) {
    content.for_each_element([&](json::value part) {
      if (!part.is_object()) return;
      const std::string_view type = string_or_empty(part.find("type"));
      text += string_or_empty(part.find(type == "refusal" ? "refusal" : "text"));
    });
  }
  return text;
}

std::optional<api_error> check_content(json::value content, const std::string& at,
                                       bool& context_hold) {
  if (!given(content)) return missing(at);
  if (content.is_string()) return std::nullopt;
  if (!content.is_array()) return invalid_type(at, "a string or an array of objects", content);
  std::optional<api_error> error;
  std::uint32_t k = 0;
  content.for_each_element([&](json::value part) {
    if (error) return;
    const std::string part_at = at + "[" + std::to_string(k++) + "]";
    if (!part.is_object()) {
      error = invalid_type(part_at, "an object", part);
      return;
    }
    const json::value type = part.find("type");
    if (!type.valid()) {
      error = missing(part_at + ".type");
    } else if (!type.is_string()) {
      error = invalid_type(part_at + ".type", "a string", type);
    } else if (!is_text_part(type.as_string())) {
      context_hold = true;
    }
  });
  return error;
}

std::optional<api_error> check_item(json::value item, std::uint32_t index, bool& context_hold) {
  const std::string at = "input[" + std::to_string(index) + "]";
  if (!item.is_object()) return invalid_type(at, "an object", item);
  const json::value type = item.find("type");
  if (given(type) && !type.is_string()) return invalid_type(at + ".type", "a string", type);
  const std::string_view kind = given(type) ? type.as_string() : std::string_view{};
  if (kind.empty() || kind == "message") {
    const json::value role = item.find("role");
    if (!given(role)) return missing(kind.empty() ? at + ".type" : at + ".role");
    if (!role.is_string()) return invalid_type(at + ".role", "a string", role);
    if (!is_message_role(role.as_string())) {
      return invalid_request("Invalid value: '" + std::string(role.as_string()) +
                                 "'. Supported values are: 'user', 'assistant', 'system', and "
                                 "'developer'.",
                             at + ".role", "invalid_value");
    }
    return check_content(item.find("content"), at + ".content", context_hold);
  }
  // Items that stand for context the gateway cannot see: a stored item, a screenshot, reasoning
  // carried only in encrypted form.
  if (kind == "item_reference" || kind == "computer_call_output" ||
      (kind == "reasoning" && given(item.find("encrypted_content")))) {
    context_hold = true;
  }
  return std::nullopt;
}

std::optional<api_error> check_input(json::value input, bool& context_hold) {
  if (input.is_string()) return std::nullopt;
  if (!input.is_array()) return invalid_type("input", "a string or an array of input items", input);
  std::optional<api_error> error;
  std::uint32_t i = 0;
  input.for_each_element([&](json::value item) {
    if (!error) error = check_item(item, i, context_hold);
    ++i;
  });
  return error;
}

// One input item as the chat message(s) it amounts to, appended to `messages`.
void add_item_messages(json::value item, json_array_writer& messages) {
  json_object_writer m;
  const std::string_view type = string_or_empty(item.find("type"));
  if (type.empty() || type == "message") {
    m.add("role", string_or_empty(item.find("role"))).add("content", text_of(item.find("content")));
  } else if (type == "function_call" || type == "custom_tool_call") {
    std::string call(string_or_empty(item.find("name")));
    call += string_or_empty(item.find(type == "function_call" ? "arguments" : "input"));
    m.add("role", "assistant").add("content", call);
  } else if (type == "function_call_output" || type == "custom_tool_call_output") {
    m.add("role", "tool").add("content", text_of(item.find("output")));
  } else if (type == "reasoning") {
    std::string text;
    for (const char* key : {"summary", "content"}) {
      const json::value parts = item.find(key);
      if (parts.valid() && parts.is_array()) {
        parts.for_each_element([&](json::value p) {
          if (p.is_object()) text += string_or_empty(p.find("text"));
        });
      }
    }
    m.add("role", "assistant").add("content", text);
  } else if (type == "item_reference") {
    return;  // not countable (held at the context)
  } else {
    // Tool calls and outputs of built-in tools: their JSON text, an estimate.
    m.add("role", "assistant").add("content", item.source());
  }
  messages.add_raw(m.finish());
}

}  // namespace

result<completion_request> parse_responses_request(std::string_view body) {
  auto parsed = parse_request_body(body);
  if (!parsed) return parsed.error();
  completion_request req;
  req.kind = endpoint_kind::responses;
  req.body = std::move(*parsed);
  req.client_wants_usage = true;
  const json::value j = req.body->root();
  auto model = required_model(j);
  if (!model) return model.error();
  req.model = std::move(*model);

  // Context held elsewhere: a previous response, a conversation, a stored prompt template.
  for (const char* key : {"previous_response_id", "conversation", "prompt"}) {
    const json::value v = j.find(key);
    if (!given(v)) continue;
    const bool string_ok = std::string_view(key) != "prompt";
    if (!v.is_object() && !(string_ok && v.is_string())) {
      return invalid_type(key, string_ok ? "a string or an object" : "an object", v);
    }
    if (std::string_view(key) == "previous_response_id" && !v.is_string()) {
      return invalid_type(key, "a string", v);
    }
    req.context_hold = true;
  }
  const json::value input = j.find("input");
  if (given(input)) {
    if (auto e = check_input(input, req.context_hold)) return *e;
  } else if (!req.context_hold) {
    return missing("input");
  }
  if (const json::value v = j.find("instructions"); given(v) && !v.is_string()) {
    return invalid_type("instructions", "a string", v);
  }
  if (auto e = check_count(j.find("max_output_tokens"), "max_output_tokens", INT64_MAX,
                           req.max_tokens)) {
    return *e;
  }
  // Usage always arrives with response.completed: stream_options.include_usage is not read.
  if (auto e = parse_stream_fields(j, req, /*read_include_usage=*/false)) return *e;
  if (const json::value b = j.find("background"); given(b)) {
    if (!b.is_bool()) return invalid_type("background", "a boolean", b);
    if (b.as_bool()) {
      return invalid_request(
          "Background responses are not supported by this gateway: their "
          "usage could not be metered. Send the request without "
          "'background'.",
          "background", "unsupported_parameter");
    }
  }
  if (const json::value t = j.find("tools"); given(t) && !t.is_array()) {
    return invalid_type("tools", "an array", t);
  }
  if (auto e = parse_user_and_metadata(j, req.end_user, req.tags)) return *e;
  return req;
}

std::string chat_equivalent(json::value request) {
  json_array_writer messages;
  if (const json::value v = request.find("instructions"); v.valid() && v.is_string()) {
    json_object_writer m;
    m.add("role", "system").add("content", v.as_string());
    messages.add_raw(m.finish());
  }
  const json::value input = request.find("input");
  if (input.valid() && input.is_string()) {
    json_object_writer m;
    m.add("role", "user").add("content", input.as_string());
    messages.add_raw(m.finish());
  } else if (input.valid() && input.is_array()) {
    input.for_each_element([&](json::value item) { add_item_messages(item, messages); });
  }
  // Function tools, in the chat shape ({"type":"function","function":{...}}); built-in tools
  // (web search, file search, ...) have no published count and add nothing.
  json_array_writer tools;
  if (const json::value t = request.find("tools"); t.valid() && t.is_array()) {
    t.for_each_element([&](json::value tool) {
      if (!tool.is_object() || string_or_empty(tool.find("type")) != "function") return;
      json_object_writer f;
      for (const char* key : {"name", "description", "parameters"}) {
        if (const json::value v = tool.find(key); given(v)) f.add_raw(key, v.source());
      }
      json_object_writer wrapped;
      wrapped.add("type", "function").add_raw("function", f.finish());
      tools.add_raw(wrapped.finish());
    });
  }
  json_object_writer out;
  out.add_raw("messages", messages.finish());
  if (!tools.empty()) out.add_raw("tools", tools.finish());
  return out.finish();
}

std::int64_t count_responses_prompt(const metering::prompt_counter& counter, json::value request) {
  // The document points into its text: the text must outlive it.
  const std::string text = chat_equivalent(request);
  const auto chat = json::document::parse(text);
  return chat ? counter.count_chat(chat->root()) : 0;  // always parses: the gateway wrote it
}

result<metering::worst_case_tokens> responses_worst_case(const model_config& model,
                                                         const completion_request& req,
                                                         std::int64_t prompt_tokens) {
  metering::worst_case_request w;
  w.prompt_tokens = std::span<const std::int64_t>(&prompt_tokens, 1);
  w.max_tokens = req.max_tokens;
  w.context_tokens = static_cast<std::int64_t>(model.context_tokens);
  auto worst = metering::worst_case_of(w);
  if (!worst) {
    std::string message = "This model's maximum context length is " +
                          std::to_string(model.context_tokens) + " tokens. However, you requested ";
    if (req.max_tokens >= 0) {
      const __int128 total = static_cast<__int128>(prompt_tokens) + req.max_tokens;
      message += std::to_string(static_cast<std::uint64_t>(total)) + " tokens (" +
                 std::to_string(prompt_tokens) + " in the input, " +
                 std::to_string(req.max_tokens) + " in max_output_tokens).";
    } else {
      message += std::to_string(prompt_tokens) + " tokens in the input.";
    }
    message += " Please reduce the length of the input or of max_output_tokens.";
    return invalid_request(std::move(message), req.max_tokens >= 0 ? "max_output_tokens" : "input",
                           "context_length_exceeded");
  }
  if (req.context_hold) {
    // The uncounted context may fill whatever the output leaves of the model's context.
    worst->prompt_tokens = w.context_tokens - worst->completion_tokens;
  }
  return *worst;
}

json::value stream_event_usage(json::value event) {
  if (!event.is_object()) return {};
  if (const json::value usage = event.find("usage"); usage.valid()) return usage;
  const std::string_view type = string_or_empty(event.find("type"));
  if (type != "response.completed" && type != "response.incomplete" && type != "response.failed") {
    return {};
  }
  const json::value response = event.find("response");
  return response.valid() && response.is_object() ? response.find("usage") : json::value{};
}

}  // namespace tollgate::gateway
