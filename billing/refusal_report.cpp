// Refusals per time bucket: see refusal_report.hpp.
#include "billing/refusal_report.hpp"

namespace tollgate::billing {

boost::asio::awaitable<store_result> refusal_report::buckets(refusal_query q) {
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
