// Usage reports from the usage rollup (sql/015_usage_rollup.sql): for a one-tenant query that
// groups or filters by at most one of end user or tag, the periods (UTC months, else UTC days)
// whose events all fall in one bucket of the range are read from the rollup, the rest of the
// range from usage_events, and the events above the watermark from usage_events too, all in one
// snapshot: the same sums as reading every event (docs/LEDGER.md, "The usage rollup").
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <utility>
#include <vector>

#include "billing/pg.hpp"
#include "billing/usage_queries.hpp"

namespace tollgate::billing {

// Whether rollup_usage answers `q`: one tenant, buckets of a day or more, no filter but on the
// one dimension (end_user or a tag) it may group by.
bool rollup_serves(const usage_query& q);

boost::asio::awaitable<pg::db_result<std::vector<usage_row>>> rollup_usage(pg::connection& conn,
                                                                           const usage_query& q);

// A rollup period of the tenant (its total row): grain 'd' or 'm', its first day (days since
// 1970-01-01), and the first and last occurred_at of its events (unix microseconds).
struct rollup_period {
  char grain = 'd';
  std::int64_t day = 0;
  std::int64_t first_us = 0, last_us = 0;
};
struct rollup_plan {
  struct chosen {
    char grain;
    std::int64_t day;
    std::int64_t bucket_s;  // the bucket its events are counted in
    int sign;               // -1: a day taken out of its month
  };
  std::vector<chosen> periods;  // read from the rollup (events below the watermark)
  std::vector<std::pair<std::int64_t, std::int64_t>> raw;  // [from, to) unix s: every event
};
// The periods a query reads from the rollup: the days whose events lie within the range and
// within one bucket; where a month has fewer other days than such days (a month, or 30 days
// across a month's end), its month row less those other days instead. The rest of the range
// is read from the events.
rollup_plan plan_rollup(const usage_query& q, const std::vector<rollup_period>& periods);

}  // namespace tollgate::billing
