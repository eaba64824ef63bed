// The query parameters of usage reports (finance API and GET /v1/usage) and of raw usage events,
// read into billing queries: every value range-checked, every mistake a 400 naming the
// parameter. Pure functions (no I/O), fuzzed by tests/fuzz/query_params_fuzz.cpp.
#pragma once
#include <cstdint>

#include "billing/usage_queries.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "gateway/query_params.hpp"

namespace tollgate::gateway {

// Times are unix seconds in [0, time_s_max] (the end of year 9999): larger or negative values
// are 400s, and no bucket arithmetic can overflow.
inline constexpr std::int64_t time_s_max = 253'402'300'799;
// At most this many groups per bucket (group_limit).
inline constexpr int usage_group_limit_max = 10'000;

// How many buckets one query's whole range may span (usage_reports in the config): a longer
// range is a 400 naming the limit. JSON is paged, CSV streamed, but either costs the database
// work in proportion to the range.
struct usage_limits {
  std::int64_t json_range_buckets_max = 100'000;
  std::int64_t csv_range_buckets_max = 527'040;  // a year of minutes
  static usage_limits from(const usage_reports_config& c);
};

struct usage_request {
  billing::usage_query query;  // start/end of the whole range, filters, grouping, order
  std::int64_t page_start_s = 0;
  int bucket_limit = 7;  // buckets per JSON page
  bool csv = false;
  bool finance = false;  // tenant_id may be filtered and grouped on
};

// Reads start_time (required, unix seconds), end_time (default now), bucket_width (1m, 1h, 1d,
// 1mo; default 1d), group_by (project_id, api_key_id, model, batch, end_user, session_id,
// tag:<key>; tenant_id for finance), the filters project_id, api_key_id, model, batch, end_user,
// session_id and tag:<key>=<value> (and tenant_id for finance), order (cost_desc, tokens_desc,
// requests_desc), group_limit, limit, page and format (json or csv). A tag key after `tag:` is
// percent-decoded once more than the query string (so that a key may hold a comma: `%2C`).
// `now_s` is the current time.
result<usage_request> parse_usage_request(const query_params& q, bool finance, std::int64_t now_s,
                                          const usage_limits& limits = usage_limits{});

// Raw usage events with keyset pagination (finance only): start_time, end_time, tenant_id,
// project_id, api_key_id, model, limit (1..1000, default 100), after (cursor).
result<billing::events_query> parse_events_request(const query_params& q, std::int64_t now_s);

}  // namespace tollgate::gateway
