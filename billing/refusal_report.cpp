// Refusals per time bucket: see refusal_report.hpp.
#include "billing/refusal_report.hpp"

#include "billing/usage_hourly.hpp"

namespace tollgate::billing {

namespace {

// The answer from the hourly aggregate's counts.
std::string refusal_json(std::int64_t bucket_s, const std::vector<refusal_count>& counts) {
  std::string out =
      R"({"object":"list","bucket_width_s":)" + std::to_string(bucket_s) + R"(,"data":[)";
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += R"({"start_time":)" + std::to_string(counts[i].bucket_start_s) +
           R"(,"refused_429":)" + std::to_string(counts[i].refused_429) +
           R"(,"refused_402":)" + std::to_string(counts[i].refused_402) + "}";
  }
  return out + "]}";
}

}  // namespace

boost::asio::awaitable<store_result> refusal_report::buckets(refusal_query q) {
  usage_query u;
  u.start_s = q.start_s;
  u.end_s = q.end_s;
  u.bucket_s = q.bucket_s;
  if (!q.tenant_id.empty()) u.tenant_id = q.tenant_id;
  if (const auto raw = hourly_plan(u)) {
    auto conn = co_await pool_.acquire();
    if (!conn) co_return store_unavailable(conn.error());
    auto counts = co_await hourly_refusals(**conn, u, *raw);
    if (!counts) co_return store_error_from(counts.error());
    co_return refusal_json(q.bucket_s, *counts);
  }
  std::string sql =
      "SELECT json_build_object('object','list','bucket_width_s',$3::bigint,'data',"
      "coalesce((SELECT json_agg(json_build_object('start_time',b,'refused_429',n429,"
      "'refused_402',n402) ORDER BY b) FROM (SELECT $1::bigint + floor((extract(epoch FROM"
      " occurred_at) - $1::bigint) / $3::bigint)::bigint * $3::bigint AS b,"
      " count(*) FILTER (WHERE status = 429) AS n429, count(*) FILTER (WHERE status = 402) AS n402"
      " FROM usage_events WHERE occurred_at >= to_timestamp($1::bigint)"
      " AND occurred_at < to_timestamp($2::bigint) AND status IN (429, 402)"
      " AND ($4 = '' OR tenant_id = $4) GROUP BY 1) x), '[]'::json))::text";
  std::vector<pg::param> params;
  params.emplace_back(std::to_string(q.start_s));
  params.emplace_back(std::to_string(q.end_s));
  params.emplace_back(std::to_string(q.bucket_s));
  params.emplace_back(std::move(q.tenant_id));
  co_return co_await one_object(pool_, std::move(sql), std::move(params), "");
}

}  // namespace tollgate::billing
