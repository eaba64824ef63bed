// Refused requests over time, aggregated in PostgreSQL: the usage rows whose status is 429 (a
// budget or rate limit) or 402 (credits) counted per time bucket, for the console's overview
// (GET /finance/v1/refusals). The browser never sums raw events.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>

#include "billing/pg.hpp"
#include "billing/store_common.hpp"

namespace tollgate::billing {

struct refusal_query {
  std::string tenant_id;  // "" = every tenant
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::int64_t bucket_s = 3600;  // buckets start at start_s
};

class refusal_report {
 public:
  explicit refusal_report(pg::pool& pool) : pool_(pool) {}
  // {"object":"list","bucket_width_s","data":[{"start_time","refused_429","refused_402"}]}:
  // non-empty buckets only, in time order.
  boost::asio::awaitable<store_result> buckets(refusal_query q);

 private:
  pg::pool& pool_;
};

}  // namespace tollgate::billing
