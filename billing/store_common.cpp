// What the billing stores share: see store_common.hpp.
#include "billing/store_common.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

store_error store_unavailable(const pg::db_error& e) {
  return {503, "The ledger database is unavailable: " + e.message, "database_unavailable"};
}

store_error store_error_from(const pg::db_error& e) {
  if (e.sqlstate == "23505") return {409, "An object with that identity already exists.", "conflict"};
  if (e.sqlstate == "23503") {
    return {404, "The tenant or project named does not exist.", "not_found"};
  }
  if (e.sqlstate == "23514" || e.sqlstate == "22P02" || e.sqlstate == "22023" ||
      e.sqlstate == "22008" || e.sqlstate == "22003") {
    return {400, "Invalid value: " + e.message, "invalid_value"};
  }
  if (e.sqlstate.empty()) return store_unavailable(e);
  return {500, "database error: " + e.message, "database_error"};
}

std::vector<std::string> split_list(std::string_view text, char sep) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  for (std::size_t at = 0;;) {
    const std::size_t end = text.find(sep, at);
    out.emplace_back(text.substr(at, end == std::string_view::npos ? end : end - at));
    if (end == std::string_view::npos) return out;
    at = end + 1;
  }
}

std::string hex_bytea(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "\\x";
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string page_sql(const std::string& object_sql, const std::string& from_where,
                     int limit_param, int after_param) {
  const std::string L = "$" + std::to_string(limit_param);
  const std::string A = "$" + std::to_string(after_param);
  return "WITH page AS (SELECT " + object_sql + " AS obj, x_id FROM " + from_where + " AND (" + A +
         "::text = '' OR x_id > " + A + ") ORDER BY x_id LIMIT " + L +
         "::int + 1), numbered AS (SELECT obj, x_id, row_number() OVER (ORDER BY x_id) AS rn "
         "FROM page) SELECT json_build_object('object','list','data',coalesce((SELECT "
         "json_agg(obj ORDER BY x_id) FROM numbered WHERE rn <= " +
         L + "::int),'[]'::json),'first_id',(SELECT min(x_id) FROM numbered WHERE rn <= " + L +
         "::int),'last_id',(SELECT max(x_id) FROM numbered WHERE rn <= " + L +
         "::int),'has_more',(SELECT count(*) FROM page) > " + L + "::int)::text";
}

net::awaitable<store_result> one_object(pg::pool& pool, std::string sql,
                                        std::vector<pg::param> params, std::string not_found) {
  auto conn = co_await pool.acquire();
  if (!conn) co_return store_unavailable(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  if (r->size() == 0 || r->is_null(0, 0)) co_return store_error{404, not_found, "not_found"};
  co_return std::string(r->text(0, 0));
}

net::awaitable<store_result> tenant_page(pg::pool& pool, const char* object_json,
                                         const std::string& table, const std::string& alias,
                                         std::string tenant_id, page_request page) {
  const std::string& a = alias;
  return one_object(pool,
                    page_sql(object_json,
                             "(SELECT " + a + ".*, " + a + ".id AS x_id FROM " + table + " " + a +
                                 ") " + a + " WHERE ($3::text = '' OR " + a + ".tenant_id = $3)",
                             1, 2),
                    {std::to_string(page.limit), page.after, std::move(tenant_id)},
                    "Nothing to list.");
}

}  // namespace tollgate::billing
