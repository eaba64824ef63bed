// Aggregates for the console that no other route gives, computed in the database:
// GET /finance/v1/refusals (refused requests, 429 and 402, per hour or day).
#include <charconv>

#include "billing/refusal_report.hpp"
#include "gateway/admin_routes.hpp"

namespace tollgate::gateway::routes {
namespace {

// Buckets one refusals query may span: a month of hours, two years of days.
constexpr std::int64_t refusal_buckets_max = 24 * 31;
constexpr std::int64_t unix_s_max = 253402300799;  // the end of year 9999

std::optional<std::int64_t> unix_s_param(const query_params& q, std::string_view name,
                                         std::int64_t fallback) {
  const auto text = q.get(name);
  if (!text) return fallback;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size() || v < 0 || v > unix_s_max) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

handler_result finance_refusals(route_call& c) {
  billing::refusal_query q;
  q.tenant_id = c.query.get("tenant_id").value_or("");
  const std::string width = c.query.get("bucket_width").value_or("1h");
  if (width != "1h" && width != "1d") {
    co_return co_await c.fail(invalid_request("bucket_width must be 1h or 1d.", "bucket_width"));
  }
  q.bucket_s = width == "1h" ? 3600 : 86400;
  const auto start = unix_s_param(c.query, "start_time", -1);
  if (!start || *start < 0) {
    co_return co_await c.fail(invalid_request(
        "start_time is required: unix seconds, 0..253402300799.", "start_time"));
  }
  const auto end = unix_s_param(c.query, "end_time", c.now_s());
  if (!end || *end <= *start) {
    co_return co_await c.fail(
        invalid_request("end_time must be unix seconds after start_time.", "end_time"));
  }
  if ((*end - *start) / q.bucket_s > refusal_buckets_max) {
    co_return co_await c.fail(invalid_request(
        "The range spans more than " + std::to_string(refusal_buckets_max) + " buckets.",
        "end_time"));
  }
  q.start_s = *start;
  q.end_s = *end;
  co_await c.reply(c.billing().refusals->buckets(std::move(q)));
}

}  // namespace tollgate::gateway::routes
