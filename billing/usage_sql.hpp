// The SQL pieces that the usage queries share (billing/usage_queries.cpp reads usage_events,
// billing/usage_rollup.cpp the rollup with usage_events): parameters, the column layout every
// usage query answers with, the bucket expression, ordering and top-N, reading the rows back.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "billing/pg.hpp"
#include "billing/usage_queries.hpp"

namespace tollgate::billing::usage_sql {

// Query parameters, numbered as they are added.
struct params {
  std::vector<pg::param> values;
  // Adds a value; returns its placeholder ("$3").
  std::string add(std::string v) {
    values.emplace_back(std::move(v));
    return "$" + std::to_string(values.size());
  }
};

// The layout of every usage query's rows: b (bucket start), c1..c7 (tenant_id, project_id,
// api_key_id, model, batch, end_user, session_id; NULL when not grouped), t0.. (the grouped
// tags' values), then the sums s_in, s_ca, s_out, s_re, s_n, s_cost, s_un.
inline constexpr const char* fixed_dimensions[] = {"tenant_id", "project_id", "api_key_id", "model",
                                                   "batch",     "end_user",   "session_id"};
inline constexpr int fixed_dimension_count = 7;
inline constexpr const char* sum_columns = "s_in, s_ca, s_out, s_re, s_n, s_cost, s_un";

bool grouped(const usage_query& q, std::string_view dimension);
// The keys of the grouped tags, in group_by order.
std::vector<std::string> grouped_tags(const usage_query& q);

// The first day of the month after the one holding `day` (both in days since 1970-01-01).
std::int64_t next_month_day(std::int64_t day);

// The bucket start (unix seconds) of the timestamptz expression `at`.
std::string bucket_expr(const usage_query& q, params& p, std::string_view at);

// The sums over usage_events rows, as the layout names them.
inline constexpr const char* event_sums =
    "sum(prompt_tokens) AS s_in, sum(cached_prompt_tokens) AS s_ca,"
    " sum(completion_tokens) AS s_out, sum(reasoning_tokens) AS s_re, count(*) AS s_n,"
    " coalesce(sum(cost_micros), 0) AS s_cost, count(*) - count(cost_micros) AS s_un";

// `inner` (rows in the layout, one per bucket and group) ordered by bucket, then by the order
// asked for, and cut to the first group_limit groups of each bucket.
std::string ordered(const usage_query& q, const std::string& inner);

// The rows of a query in the layout.
std::vector<usage_row> read_rows(const pg::rows& r, std::size_t tag_count);

}  // namespace tollgate::billing::usage_sql
