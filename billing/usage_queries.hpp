// The usage queries behind the finance API and GET /v1/usage: usage_events summed per time
// bucket and the groupings asked for, and raw events page by page. Read-only; every method is
// a coroutine on the billing executor using the shared connection pool.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/pg.hpp"

namespace tollgate::billing {

// A usage query (finance API and GET /v1/usage).
struct usage_query {
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::int64_t bucket_s = 86400;
  std::vector<std::string> group_by;  // of tenant_id, project_id, api_key_id, model, batch
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::optional<bool> batch;
};

struct usage_row {
  std::int64_t bucket_start_s = 0;
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::optional<bool> batch;
  std::int64_t input_tokens = 0, input_cached_tokens = 0, output_tokens = 0,
               output_reasoning_tokens = 0, requests = 0;
};

struct events_query {
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::optional<std::string> tenant_id, project_id, api_key_id, model;
  std::string after;  // cursor from the previous page
  int limit = 100;    // 1..1000
};

class usage_queries {
 public:
  explicit usage_queries(pg::pool& pool) : pool_(pool) {}

  boost::asio::awaitable<pg::db_result<std::vector<usage_row>>> usage(usage_query q);
  // One page of raw events as JSON objects, and the cursor of the next page ("" = last page).
  struct events_page {
    std::string data_json;  // a JSON array
    std::string next;
  };
  boost::asio::awaitable<pg::db_result<events_page>> events(events_query q);

 private:
  pg::pool& pool_;
};

}  // namespace tollgate::billing
