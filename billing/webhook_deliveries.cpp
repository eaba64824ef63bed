// Webhook deliveries kept in PostgreSQL: see webhook_deliveries.hpp.
#include "billing/webhook_deliveries.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

net::awaitable<pg::db_result<std::vector<metering::alert_delivery>>> claim_deliveries(
    pg::pool& pool, delivery_source source, int limit, std::int64_t lease_ms) {
  auto conn = co_await pool.acquire();
  if (!conn) co_return conn.error();
  const std::string table(source.table);
  const std::string sql =
      "WITH due AS (SELECT id FROM " + table + " WHERE status = 'pending'"
      " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1::integer"
      " FOR UPDATE SKIP LOCKED)"
      " UPDATE " + table + " x SET attempts = x.attempts + 1,"
      " next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
      " FROM due" + std::string(source.join) + " WHERE x.id = due.id" +
      std::string(source.join_condition) + " RETURNING x.id, x.webhook_url, " +
      std::string(source.secret) + ", x.payload, x.attempts";
  std::vector<pg::param> params{std::to_string(limit), std::to_string(lease_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<metering::alert_delivery> out;
  for (int i = 0; i < r->size(); ++i) {
    metering::alert_delivery d;
    d.id = r->text(i, 0);
    d.url = r->text(i, 1);
    d.secret = r->text(i, 2);
    d.payload = r->text(i, 3);
    d.attempts = static_cast<int>(r->int64(i, 4));
    out.push_back(std::move(d));
  }
  co_return out;
}

net::awaitable<pg::db_result<bool>> finish_delivery(pg::pool& pool, std::string_view table,
                                                    std::string id, std::string status,
                                                    std::string error,
                                                    std::int64_t retry_in_ms) {
  auto conn = co_await pool.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "UPDATE " + std::string(table) +
      " SET status = $2, last_error = nullif($3, ''),"
      " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END,"
      " next_attempt_at = now() + $4::bigint * interval '1 millisecond' WHERE id = $1";
  std::vector<pg::param> params{std::move(id), std::move(status), std::move(error),
                                std::to_string(retry_in_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return true;
}

}  // namespace tollgate::billing
