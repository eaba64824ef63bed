// Usage reports from the hourly aggregate (sql/025_usage_hourly.sql): for a query that groups
// and filters by no more than tenant, project, key and model, in buckets of whole hours (or
// months), the hours that lie wholly in the range and in one bucket are read from usage_hourly
// and the rest of the range (a partial hour at either end, an hour a bucket boundary cuts) from
// usage_events, with the events above the watermark, in one snapshot: the same sums as reading
// every event (docs/LEDGER.md, "The hourly aggregate"). Refusals over time read it the same way.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "billing/pg.hpp"
#include "billing/usage_queries.hpp"

namespace tollgate::billing {

// [from, to) in unix seconds.
using time_span = std::pair<std::int64_t, std::int64_t>;

// The intervals of `q`'s range read from the events (every event in them): the partial hours
// at either end and each hour that a bucket boundary cuts; nullopt when the hourly aggregate
// does not answer `q` (a dimension or filter it does not keep, buckets shorter than an hour or
// not whole hours, or so many cut hours that reading the events is as cheap).
std::optional<std::vector<time_span>> hourly_plan(const usage_query& q);

boost::asio::awaitable<pg::db_result<std::vector<usage_row>>> hourly_usage(
    pg::connection& conn, const usage_query& q, const std::vector<time_span>& raw);

// Refused requests (status 429 and 402) per bucket of `q` (a tenant filter at most), non-empty
// buckets only, in time order.
struct refusal_count {
  std::int64_t bucket_start_s = 0;
  std::int64_t refused_429 = 0, refused_402 = 0;
};
boost::asio::awaitable<pg::db_result<std::vector<refusal_count>>> hourly_refusals(
    pg::connection& conn, const usage_query& q, const std::vector<time_span>& raw);

}  // namespace tollgate::billing
