// Completion text collection (see completion_text.hpp).
#include "metering/completion_text.hpp"

namespace tollgate::metering {
namespace {

void append_string(std::string& out, json::value v) {
  if (v.valid() && v.is_string()) out += v.as_string();
}

}  // namespace

void completion_text::add_stream_event(std::string_view data) {
  if (data == "[DONE]") return;
  // Payloads are single JSON documents; an embedded newline (multi-line data) is whitespace to
  // JSON but would split the record here, so it becomes a space.
  const std::size_t at = pending_.size();
  pending_.append(data);
  for (std::size_t i = at; i < pending_.size(); ++i) {
    if (pending_[i] == '\n') pending_[i] = ' ';
  }
  pending_.push_back('\n');
  if (pending_.size() > pending_limit) absorb_pending();
}

void completion_text::add_response(std::string_view body) {
  if (const auto doc = json::document::parse(body); doc && doc->root().is_object()) absorb(doc->root(), false);
}

void completion_text::absorb_pending() {
  for (std::size_t at = 0; at < pending_.size();) {
    const std::size_t nl = pending_.find('\n', at);
    const auto doc = json::document::parse(std::string_view(pending_).substr(at, nl - at));
    if (doc && doc->root().is_object()) absorb(doc->root(), true);
    at = nl + 1;
  }
  pending_.clear();
}

// Chat: choices[].message (or .delta) content, refusal, the reasoning text that servers such as
// vLLM and DeepSeek send beside it (reasoning_content, reasoning), tool call names and
// arguments, and the legacy function_call; completions: choices[].text.
void completion_text::absorb(json::value root, bool delta) {
  if (const json::value type = root.find("type"); type.valid() && type.is_string()) {
    absorb_responses_event(root);
    return;
  }
  if (const json::value object = root.find("object");
      !delta && object.valid() && object.is_string() && object.as_string() == "response") {
    absorb_responses_object(root);
    return;
  }
  const json::value choices = root.find("choices");
  if (!choices.valid() || !choices.is_array()) return;
  choices.for_each_element([&](json::value choice) {
    if (!choice.is_object()) return;
    const json::value index = choice.find("index");
    std::string& out = text_[index.valid() && index.is_int64() ? index.as_int64() : 0];
    append_string(out, choice.find("text"));
    const json::value m = choice.find(delta ? "delta" : "message");
    if (!m.valid() || !m.is_object()) return;
    append_string(out, m.find("content"));
    append_string(out, m.find("refusal"));
    append_string(out, m.find("reasoning_content"));
    append_string(out, m.find("reasoning"));
    const auto function_text = [&](json::value f) {
      if (!f.valid() || !f.is_object()) return;
      append_string(out, f.find("name"));
      append_string(out, f.find("arguments"));
    };
    function_text(m.find("function_call"));
    if (const json::value calls = m.find("tool_calls"); calls.valid() && calls.is_array()) {
      calls.for_each_element([&](json::value call) {
        if (call.is_object()) function_text(call.find("function"));
      });
    }
  });
}

// Responses API streams: the deltas of output text, refusals, function call arguments and
// reasoning text, by output item. The events that repeat finished text (*.done,
// response.completed) are not counted again.
void completion_text::absorb_responses_event(json::value event) {
  const std::string_view type = event.find("type").as_string();
  if (type != "response.output_text.delta" && type != "response.refusal.delta" &&
      type != "response.function_call_arguments.delta" &&
      type != "response.reasoning_text.delta") {
    return;
  }
  const json::value index = event.find("output_index");
  append_string(text_[index.valid() && index.is_int64() ? index.as_int64() : 0],
                event.find("delta"));
}

// A whole Responses object: each output item's text (message parts' text and refusals, a
// function call's name and arguments, reasoning text).
void completion_text::absorb_responses_object(json::value response) {
  const json::value output = response.find("output");
  if (!output.valid() || !output.is_array()) return;
  std::int64_t index = 0;
  output.for_each_element([&](json::value item) {
    std::string& out = text_[index++];
    if (!item.is_object()) return;
    append_string(out, item.find("name"));
    append_string(out, item.find("arguments"));
    const json::value content = item.find("content");
    if (!content.valid() || !content.is_array()) return;
    content.for_each_element([&](json::value part) {
      if (!part.is_object()) return;
      append_string(out, part.find("text"));
      append_string(out, part.find("refusal"));
    });
  });
}

std::int64_t completion_text::count(const prompt_counter& counter) {
  absorb_pending();
  std::int64_t n = 0;
  for (const auto& [index, text] : text_) n += counter.count_text(text);
  return n;
}

}  // namespace tollgate::metering
