// Usage reports in the shape of OpenAI's organization usage API, shared by the finance API
// (any tenant) and GET /v1/usage (the caller's own tenant):
//   {"object":"page","data":[{"object":"bucket","start_time","end_time","results":[...]}],
//    "has_more","next_page"}
// and as CSV, streamed window by window so that a year of data never sits in memory.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "billing/usage_queries.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/http_server.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/query_params.hpp"

namespace tollgate::gateway {

// Times are unix seconds in [0, time_s_max] (the end of year 9999): larger or negative values
// are 400s, and no bucket arithmetic can overflow.
inline constexpr std::int64_t time_s_max = 253'402'300'799;

// How many buckets one query's whole range may span (usage_reports in the config): a longer
// range is a 400 naming the limit. JSON is paged, CSV streamed, but either costs the database
// work in proportion to the range.
struct usage_limits {
  std::int64_t json_range_buckets_max = 100'000;
  std::int64_t csv_range_buckets_max = 527'040;  // a year of minutes
  static usage_limits from(const usage_reports_config& c);
};

struct usage_request {
  billing::usage_query query;  // start/end of the whole range, filters, grouping
  std::int64_t page_start_s = 0;
  int bucket_limit = 7;  // buckets per JSON page
  bool csv = false;
  bool finance = false;  // tenant_id may be filtered and grouped on
};

// Reads start_time (required, unix seconds), end_time (default now), bucket_width (1m, 1h, 1d;
// default 1d), group_by (project_id, api_key_id, model, batch; tenant_id for finance), filters
// project_id, api_key_id, model, batch (and tenant_id for finance), limit, page and format
// (json or csv). `now_s` is the current time.
result<usage_request> parse_usage_request(const query_params& q, bool finance, std::int64_t now_s,
                                          const usage_limits& limits = usage_limits{});

// Answers the request: one JSON page, or the whole range as chunked CSV.
boost::asio::awaitable<void> send_usage_report(http::exchange& ex, const billing_context& billing,
                                               usage_request request,
                                               std::string request_id);

// Raw usage events with keyset pagination (finance only): start_time, end_time, tenant_id,
// project_id, api_key_id, model, limit (1..1000, default 100), after (cursor).
result<billing::events_query> parse_events_request(const query_params& q, std::int64_t now_s);

}  // namespace tollgate::gateway
