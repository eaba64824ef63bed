// What the PostgreSQL stores of billing/ share: a list's page request, the outcome of an admin
// operation (the JSON text, or an error with an HTTP status), database errors mapped to those
// errors, and the helpers that run one statement for one JSON object or one page of them.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "billing/pg.hpp"
#include "core/error.hpp"

namespace tollgate::billing {

struct page_request {
  int limit = 20;     // 1..100
  std::string after;  // id cursor; "" = from the start
};

// The outcome of an admin operation: the JSON text, or an error with an HTTP status.
struct store_error {
  unsigned status = 500;  // 400, 404, 409, 503
  std::string message;
  std::string code;
};
using store_result = basic_result<std::string, store_error>;
// A database failure as the admin and API answer it: 503 when the database is away, 409 for a
// duplicate, 404 for a missing reference, 400 for a refused value, else 500.
store_error store_error_from(const pg::db_error& e);

// ---- for the stores' own use -----------------------------------------------------------------

// The 503 of a database that cannot be reached (no connection to be had).
store_error store_unavailable(const pg::db_error& e);
// The pieces of `text` between `sep`s, as array_to_string(array, sep) wrote them (no pieces for
// "").
std::vector<std::string> split_list(std::string_view text, char sep);
// Bytes as PostgreSQL's bytea input text: "\x" and two hex digits per byte.
std::string hex_bytea(std::string_view bytes);
// One page of a list, in x_id order, as {"object":"list", data, first_id, last_id, has_more}:
// `object_sql` renders a row as JSON, `from_where` is "<from item with an x_id column> WHERE
// <condition>", and the page's limit and cursor are the parameters $limit_param, $after_param.
std::string page_sql(const std::string& object_sql, const std::string& from_where,
                     int limit_param, int after_param);
// Runs `sql`, whose first row and column is the JSON text of the answer; no row, or NULL, is a
// 404 with `not_found` as its message.
boost::asio::awaitable<store_result> one_object(pg::pool& pool, std::string sql,
                                                std::vector<pg::param> params,
                                                std::string not_found);
// One page of a tenant-owned table's objects, in id order ("" tenant: every tenant's).
boost::asio::awaitable<store_result> tenant_page(pg::pool& pool, const char* object_json,
                                                 const std::string& table,
                                                 const std::string& alias, std::string tenant_id,
                                                 page_request page);

}  // namespace tollgate::billing
