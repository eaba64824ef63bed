// Usage records and the logging sink: see usage.hpp.
#include "metering/usage.hpp"

#include <nlohmann/json.hpp>

#include "core/json_text.hpp"

namespace tollgate::metering {
namespace {

void fill_writer(const usage_record& r, json_object_writer& w) {
  w.add("request_id", r.request_id)
      .add("endpoint", r.endpoint)
      .add("model", r.model)
      .add("upstream", r.upstream)
      .add("occurred_at_ms", r.occurred_at_ms)
      .add("usage_reported", r.usage_reported)
      .add("prompt_tokens", r.prompt_tokens)
      .add("completion_tokens", r.completion_tokens)
      .add("cached_tokens", r.cached_tokens)
      .add("reasoning_tokens", r.reasoning_tokens)
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

std::int64_t count_at(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return 0;
  const auto v = it->get<std::int64_t>();
  return v < 0 ? 0 : v;
}

}  // namespace

std::string usage_record::to_json() const {
  json_object_writer w;
  fill_writer(*this, w);
  return w.finish();
}

bool usage_record::set_usage(const nlohmann::json& usage) {
  if (!usage.is_object()) return false;
  usage_reported = true;
  prompt_tokens = count_at(usage, "prompt_tokens");
  completion_tokens = count_at(usage, "completion_tokens");
  if (auto d = usage.find("prompt_tokens_details"); d != usage.end() && d->is_object()) {
    cached_tokens = count_at(*d, "cached_tokens");
  }
  if (auto d = usage.find("completion_tokens_details"); d != usage.end() && d->is_object()) {
    reasoning_tokens = count_at(*d, "reasoning_tokens");
  }
  return true;
}

void log_usage_sink::record(const usage_record& r) {
  json_object_writer w;
  fill_writer(r, w);
  log_.info("usage", w);
}

}  // namespace tollgate::metering
