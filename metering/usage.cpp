// Usage records and the logging sink: see usage.hpp.
#include "metering/usage.hpp"

#include <algorithm>

#include "core/json_text.hpp"

namespace tollgate::metering {
namespace {

void fill_writer(const usage_record& r, json_object_writer& w) {
  w.add("request_id", r.request_id);
  if (!r.client_request_id.empty()) w.add("client_request_id", r.client_request_id);
  if (!r.tenant_id.empty()) {
    w.add("tenant_id", r.tenant_id);
    if (!r.project_id.empty()) w.add("project_id", r.project_id);
    w.add("api_key_id", r.api_key_id);
  }
  if (!r.attribution.end_user.empty()) w.add("end_user", r.attribution.end_user);
  if (!r.attribution.tags.empty()) w.add_raw("tags", r.attribution.tags_json());
  if (!r.attribution.session.empty()) w.add("session", r.attribution.session);
  if (!r.routing_rule.empty()) w.add("routing_rule", r.routing_rule);
  if (!r.trace_id.empty()) w.add("trace_id", r.trace_id);
  w.add("batch", r.batch)
      .add("endpoint", r.endpoint)
      .add("model", r.model)
      .add("upstream", r.upstream)
      .add("upstream_endpoint", r.upstream_endpoint)
      .add("attempts", r.attempts)
      .add("occurred_at_ms", r.occurred_at_ms)
      .add("usage_reported", r.usage_reported)
      .add("prompt_tokens", r.prompt_tokens)
      .add("completion_tokens", r.completion_tokens)
      .add("cached_tokens", r.cached_tokens)
      .add("reasoning_tokens", r.reasoning_tokens);
  // The other classes only when reported, so the line of a plain request stays as it was.
  if (r.cache_write_tokens > 0) w.add("cache_write_tokens", r.cache_write_tokens);
  if (r.image_prompt_tokens > 0) w.add("image_prompt_tokens", r.image_prompt_tokens);
  if (r.audio_prompt_tokens > 0) w.add("audio_prompt_tokens", r.audio_prompt_tokens);
  if (r.audio_completion_tokens > 0) w.add("audio_completion_tokens", r.audio_completion_tokens);
  if (r.counted_prompt_tokens >= 0) {
    w.add("counted_prompt_tokens", r.counted_prompt_tokens);
  } else {
    w.add_null("counted_prompt_tokens");
  }
  if (r.counted_completion_tokens >= 0) {
    w.add("counted_completion_tokens", r.counted_completion_tokens);
  } else {
    w.add_null("counted_completion_tokens");
  }
  w.add("estimated", r.estimated)
      .add("stream", r.stream)
      .add("status", r.status)
      .add("latency_us", r.latency_us);
  if (r.ttft_us >= 0) {
    w.add("ttft_us", r.ttft_us);
  } else {
    w.add_null("ttft_us");
  }
  w.add("client_disconnected", r.client_disconnected);
  if (r.error_code.empty()) {
    w.add_null("error_code");
  } else {
    w.add("error_code", r.error_code);
  }
}

std::int64_t count_at(json::value obj, std::string_view key) {
  const json::value v = obj.find(key);
  if (!v.valid() || !v.is_int64()) return 0;
  return std::max<std::int64_t>(0, v.as_int64());
}

// The count at `path` ("member" or "parent.member") of a usage object; 0 when absent.
std::int64_t count_at_path(json::value usage, std::string_view path) {
  if (path.empty()) return 0;
  const std::size_t dot = path.find('.');
  if (dot == std::string_view::npos) return count_at(usage, path);
  const json::value parent = usage.find(path.substr(0, dot));
  if (!parent.valid() || !parent.is_object()) return 0;
  return count_at(parent, path.substr(dot + 1));
}

}  // namespace

std::string usage_record::to_json() const {
  json_object_writer w;
  fill_writer(*this, w);
  return w.finish();
}

bool usage_record::set_usage(json::value usage, std::string_view cache_write_field) {
  if (!usage.valid() || !usage.is_object()) return false;
  usage_reported = true;
  // Chat, completions and embeddings report prompt_tokens / completion_tokens; the Responses
  // API reports input_tokens / output_tokens with the same details under other names.
  const bool responses =
      !usage.find("prompt_tokens").valid() &&
      (usage.find("input_tokens").valid() || usage.find("output_tokens").valid());
  prompt_tokens = count_at(usage, responses ? "input_tokens" : "prompt_tokens");
  completion_tokens = count_at(usage, responses ? "output_tokens" : "completion_tokens");
  if (const auto d = usage.find(responses ? "input_tokens_details" : "prompt_tokens_details");
      d.valid() && d.is_object()) {
    cached_tokens = count_at(d, "cached_tokens");
    image_prompt_tokens = count_at(d, "image_tokens");
    audio_prompt_tokens = count_at(d, "audio_tokens");
  }
  cache_write_tokens = count_at_path(usage, cache_write_field);
  if (const auto d =
          usage.find(responses ? "output_tokens_details" : "completion_tokens_details");
      d.valid() && d.is_object()) {
    reasoning_tokens = count_at(d, "reasoning_tokens");
    audio_completion_tokens = count_at(d, "audio_tokens");
  }
  return true;
}

bool usage_record::set_usage_from_response(std::string_view body,
                                           std::string_view cache_write_field) {
  // Fast path for servers that put usage last (vLLM, and most that serialize keys in order):
  // take the text between the last `"usage":` and the closing brace of the body and parse just
  // that. It is accepted only if it is exactly one object, which a nested or quoted occurrence
  // can never be; anything else falls back to parsing the whole body.
  if (const auto key = body.rfind("\"usage\""); key != std::string_view::npos) {
    auto colon = body.find_first_not_of(" \t\r\n", key + 7);
    auto close = body.find_last_not_of(" \t\r\n");
    if (colon != std::string_view::npos && body[colon] == ':' && close != std::string_view::npos &&
        body[close] == '}' && close > colon) {
      const auto usage = json::document::parse(body.substr(colon + 1, close - colon - 1));
      if (usage && usage->root().is_object()) {
        return set_usage(usage->root(), cache_write_field);
      }
    }
  }
  const auto doc = json::document::parse(body);
  return doc && doc->root().is_object() && set_usage(doc->root().find("usage"), cache_write_field);
}

void log_usage_sink::record(const usage_record& r) {
  json_object_writer w;
  fill_writer(r, w);
  log_.info("usage", w);
}

}  // namespace tollgate::metering
