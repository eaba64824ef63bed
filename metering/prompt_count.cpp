// Chat and completion prompt counting (see prompt_count.hpp).
#include "metering/prompt_count.hpp"

#include "metering/unicode.hpp"

namespace tollgate::metering {
namespace {

// Jinja's `trim` (Python's str.strip): leading and trailing whitespace, Unicode-aware.
std::string_view trim(std::string_view s) {
  const auto is_space = [](char32_t cp) {
    return (unicode::flags_of(cp) & unicode::space) || (cp >= 0x1C && cp <= 0x1F);
  };
  const auto* begin = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = begin + s.size();
  const auto* p = begin;
  while (p < end) {
    char32_t cp;
    const int len = unicode::decode(p, end, cp);
    if (!is_space(cp)) break;
    p += len;
  }
  // Trailing: walk forward remembering the end of the last non-space character.
  const auto* last = p;
  for (const auto* q = p; q < end;) {
    char32_t cp;
    const int len = unicode::decode(q, end, cp);
    q += len;
    if (!is_space(cp)) last = q;
  }
  return std::string_view(reinterpret_cast<const char*>(p), std::size_t(last - p));
}

std::string_view string_or_empty(json::value v) { return v.valid() && v.is_string() ? v.as_string() : std::string_view{}; }

// A non-string value counted as its JSON text (tool_calls, function_call): an estimate.
std::string_view as_text(json::value v) { return v.is_string() ? v.as_string() : v.source(); }

std::string_view without_final_period(std::string_view s) {
  return !s.empty() && s.back() == '.' ? s.substr(0, s.size() - 1) : s;
}

}  // namespace

std::optional<prompt_format> parse_prompt_format(std::string_view name) {
  if (name == "openai") return prompt_format::openai;
  if (name == "llama3") return prompt_format::llama3;
  if (name == "chatml") return prompt_format::chatml;
  return std::nullopt;
}

std::string_view prompt_format_name(prompt_format format) {
  switch (format) {
    case prompt_format::openai: return "openai";
    case prompt_format::llama3: return "llama3";
    case prompt_format::chatml: return "chatml";
  }
  return "openai";
}

std::string message_text(json::value content) {
  if (!content.valid() || content.is_null()) return {};
  if (content.is_string()) return std::string(content.as_string());
  std::string text;
  if (content.is_array()) {
    content.for_each_element([&](json::value part) {
      if (part.is_object() && string_or_empty(part.find("type")) == "text") {
        text += string_or_empty(part.find("text"));
      }
    });
  }
  return text;
}

result<prompt_counter> prompt_counter::make(std::shared_ptr<const tokenizer> tok, prompt_format format) {
  prompt_counter c(tok, format);
  const auto need = [&](std::string_view text, token_id& id) -> bool {
    const auto found = tok->special_token(text);
    if (found) id = *found;
    return found.has_value();
  };
  bool ok = true;
  if (format == prompt_format::llama3) {
    ok = need("<|begin_of_text|>", c.special_.begin_of_text) && need("<|start_header_id|>", c.special_.start_header) &&
         need("<|end_header_id|>", c.special_.end_header) && need("<|eot_id|>", c.special_.end_of_turn);
  } else if (format == prompt_format::chatml) {
    ok = need("<|im_start|>", c.special_.im_start) && need("<|im_end|>", c.special_.im_end);
  }
  if (!ok) {
    return internal_error("tokenizer " + tok->name() + " lacks the special tokens of the " +
                          std::string(prompt_format_name(format)) + " chat template");
  }
  return c;
}

bool prompt_counter::render_chat(json::value messages, std::vector<token_id>& out) const {
  if (format_ == prompt_format::openai || !messages.is_array()) return false;
  bool first = true;
  messages.for_each_element([&](json::value m) {
    const std::string_view role = string_or_empty(m.find("role"));
    const std::string content = message_text(m.find("content"));
    if (format_ == prompt_format::llama3) {
      // '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>',
      // the first message prefixed with <|begin_of_text|>.
      if (first) out.push_back(special_.begin_of_text);
      out.push_back(special_.start_header);
      tok_->encode(role, out);
      out.push_back(special_.end_header);
      tok_->encode("\n\n" + std::string(trim(content)), out);
      out.push_back(special_.end_of_turn);
    } else {
      // '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n'
      out.push_back(special_.im_start);
      tok_->encode(std::string(role) + "\n" + content, out);
      out.push_back(special_.im_end);
      tok_->encode("\n", out);
    }
    first = false;
  });
  // The generation prompt.
  if (format_ == prompt_format::llama3) {
    out.push_back(special_.start_header);
    tok_->encode("assistant", out);
    out.push_back(special_.end_header);
    tok_->encode("\n\n", out);
  } else {
    out.push_back(special_.im_start);
    tok_->encode("assistant\n", out);
  }
  return true;
}

std::int64_t prompt_counter::count_chat(json::value request) const {
  if (format_ == prompt_format::openai) return count_openai_chat(request);
  thread_local std::vector<token_id> ids;
  ids.clear();
  render_chat(request.find("messages"), ids);
  return std::int64_t(ids.size());
}

std::int64_t prompt_counter::count_openai_chat(json::value request) const {
  constexpr std::int64_t tokens_per_message = 3, tokens_per_name = 1, reply_priming = 3;
  std::int64_t n = 0;
  const json::value messages = request.find("messages");
  if (messages.valid() && messages.is_array()) {
    messages.for_each_element([&](json::value m) {
      n += tokens_per_message;
      m.for_each_member([&](std::string_view key, json::value v) {
        if (v.is_null()) return;
        if (key == "content" && v.is_array()) {
          n += count_text(message_text(v));
        } else {
          n += count_text(as_text(v));
        }
        if (key == "name") n += tokens_per_name;
      });
    });
  }
  n += reply_priming;
  if (const json::value tools = request.find("tools"); tools.valid() && tools.is_array() && tools.size() > 0) {
    n += count_openai_tools(tools, true);
  } else if (const json::value functions = request.find("functions");
             functions.valid() && functions.is_array() && functions.size() > 0) {
    n += count_openai_tools(functions, false);
  }
  return n;
}

// The cookbook's num_tokens_for_tools: per function "name:description" (final period dropped),
// per property "name:type:description", enum items, and fixed overheads that differ between the
// cl100k models (gpt-3.5-turbo, gpt-4) and the o200k ones (gpt-4o and later).
std::int64_t prompt_counter::count_openai_tools(json::value tools, bool wrapped) const {
  const bool o200k = tok_->rule() == split_rule::o200k;
  const std::int64_t func_init = o200k ? 7 : 10, prop_init = 3, prop_key = 3, enum_init = -3,
                     enum_item = 3, func_end = 12;
  std::int64_t n = 0;
  tools.for_each_element([&](json::value tool) {
    const json::value function = wrapped && tool.is_object() ? tool.find("function") : tool;
    if (!function.valid() || !function.is_object()) return;
    n += func_init;
    std::string line(string_or_empty(function.find("name")));
    line += ':';
    line += without_final_period(string_or_empty(function.find("description")));
    n += count_text(line);
    const json::value parameters = function.find("parameters");
    const json::value properties =
        parameters.valid() && parameters.is_object() ? parameters.find("properties") : json::value{};
    if (properties.valid() && properties.is_object() && properties.size() > 0) {
      n += prop_init;
      properties.for_each_member([&](std::string_view key, json::value p) {
        n += prop_key;
        if (!p.is_object()) return;
        if (const json::value e = p.find("enum"); e.valid() && e.is_array()) {
          n += enum_init;
          e.for_each_element([&](json::value item) { n += enum_item + count_text(as_text(item)); });
        }
        const json::value type = p.find("type");
        std::string prop(key);
        prop += ':';
        prop += type.valid() ? as_text(type) : std::string_view{};
        prop += ':';
        prop += without_final_period(string_or_empty(p.find("description")));
        n += count_text(prop);
      });
    }
  });
  return n + func_end;
}

void prompt_counter::count_completion_prompts(json::value request,
                                              std::vector<std::int64_t>& out) const {
  out.clear();
  const json::value prompt = request.find("prompt");
  if (!prompt.valid() || prompt.is_null()) {
    out.push_back(0);
    return;
  }
  if (prompt.is_string()) {
    out.push_back(count_text(prompt.as_string()));
    return;
  }
  if (!prompt.is_array()) return;
  bool token_ids = prompt.size() > 0;
  prompt.for_each_element([&](json::value p) { token_ids = token_ids && p.is_int64(); });
  if (token_ids) {
    out.push_back(prompt.size());
    return;
  }
  prompt.for_each_element([&](json::value p) {
    out.push_back(p.is_string() ? count_text(p.as_string()) : p.is_array() ? p.size() : 1);
  });
  if (out.empty()) out.push_back(0);
}

std::int64_t prompt_counter::count_completion(json::value request) const {
  const json::value prompt = request.find("prompt");
  if (!prompt.valid() || prompt.is_null()) return 0;
  if (prompt.is_string()) return count_text(prompt.as_string());
  std::int64_t n = 0;
  if (prompt.is_array()) {
    prompt.for_each_element([&](json::value p) {
      if (p.is_string()) {
        n += count_text(p.as_string());
      } else if (p.is_array()) {
        n += p.size();  // token ids
      } else {
        n += 1;  // one token id
      }
    });
  }
  return n;
}

}  // namespace tollgate::metering
