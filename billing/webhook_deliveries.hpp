// Webhook deliveries kept in PostgreSQL (budget alerts in budget_alerts, auto top-ups in
// credit_top_ups): each table has status ('pending', 'delivered', 'failed'), attempts,
// next_attempt_at, last_error, delivered_at, webhook_url and payload. Claiming leases the due
// ones to one dispatcher (FOR UPDATE SKIP LOCKED, the next attempt pushed out by the lease);
// finishing records the outcome.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "billing/pg.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::billing {

// Where a table's deliveries get their signing secret: `join` (", budgets b" …, may be
// empty) and `join_condition` (" AND b.id = x.budget_id" …) extend the claim's FROM and WHERE;
// `secret` is an expression over x (the delivery) and the joined tables.
struct delivery_source {
  std::string_view table;
  std::string_view join;
  std::string_view join_condition;
  std::string_view secret;
};

// Up to `limit` deliveries due now, each leased for `lease_ms` (its attempts counted).
boost::asio::awaitable<pg::db_result<std::vector<metering::alert_delivery>>> claim_deliveries(
    pg::pool& pool, delivery_source source, int limit, std::int64_t lease_ms);

// Records a delivery's outcome: `status`, `error` ("" for none), and the next attempt
// `retry_in_ms` from now (for a pending one).
boost::asio::awaitable<pg::db_result<bool>> finish_delivery(pg::pool& pool,
                                                            std::string_view table,
                                                            std::string id, std::string status,
                                                            std::string error,
                                                            std::int64_t retry_in_ms);

}  // namespace tollgate::billing
