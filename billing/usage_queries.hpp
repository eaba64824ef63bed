// The usage queries behind the finance API and GET /v1/usage: usage_events summed per time
// bucket and the groupings asked for (ids, model, batch, end user, session, any tag), with their
// cost, optionally ordered and cut to the top N groups per bucket; and raw events page by page.
// Read-only; every method is a coroutine on the billing executor using the shared connection
// pool. A one-tenant query grouped or filtered by at most one of end user or tag reads the
// usage rollup (sql/015_usage_rollup.sql, billing/usage_rollup.hpp) where it can; one grouped
// and filtered by no more than tenant, project, key and model, in buckets of whole hours, the
// hourly aggregate (sql/025_usage_hourly.sql, billing/usage_hourly.hpp): same answer.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "billing/pg.hpp"

namespace tollgate::billing {

// How the groups of each bucket are sorted: by their key (the default), or by a measure,
// largest first (the key breaks ties).
enum class usage_order { keys, cost_desc, tokens_desc, requests_desc };

// The prefix of a tag grouping in usage_query::group_by: "tag:" + the key (decoded).
inline constexpr std::string_view usage_tag_prefix = "tag:";

// A usage query (finance API and GET /v1/usage).
struct usage_query {
  std::int64_t start_s = 0;
  std::int64_t end_s = 0;
  std::int64_t bucket_s = 86400;  // ignored when `monthly`
  bool monthly = false;  // buckets are UTC calendar months (the first starts at start_s)
  // Of tenant_id, project_id, api_key_id, model, batch, end_user, session_id, "tag:<key>";
  // each at most once.
  std::vector<std::string> group_by;
  std::optional<std::string> tenant_id, project_id, api_key_id, model, end_user, session_id;
  std::optional<bool> batch;
  std::vector<std::pair<std::string, std::string>> tag_filters;  // key = value, all must hold
  usage_order order = usage_order::keys;
  int group_limit = 0;  // groups kept per bucket after ordering; 0: all
};

// The start of the bucket holding unix second `t` (start_s <= t < end_s), and of the next one.
std::int64_t usage_bucket_of(const usage_query& q, std::int64_t t);
std::int64_t usage_next_bucket(const usage_query& q, std::int64_t bucket_start);

struct usage_row {
  std::int64_t bucket_start_s = 0;
  std::optional<std::string> tenant_id, project_id, api_key_id, model, end_user, session_id;
  std::optional<bool> batch;
  // The value of each grouped tag, in the order of the "tag:" entries of group_by (nullopt:
  // events without that tag).
  std::vector<std::optional<std::string>> tags;
  std::int64_t input_tokens = 0, input_cached_tokens = 0, output_tokens = 0,
               output_reasoning_tokens = 0, requests = 0;
  std::int64_t cost_micros = 0;       // of the rated events
  std::int64_t unrated_requests = 0;  // events without a cost (no plan, model not in the book)
  // The currency of the cost: the tenant's plan's (a tenant keeps one); "" when the row's
  // tenants have none or several.
  std::string currency;
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
