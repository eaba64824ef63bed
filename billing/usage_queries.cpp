// The usage queries: see usage_queries.hpp.
#include "billing/usage_queries.hpp"

#include "core/json_text.hpp"

#include <algorithm>
#include <utility>

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

// The WHERE clause of a usage query: the time range ($1, $2 in unix seconds) and an equality
// test for each filter given, its value appended to `params`.
template <class Query>
std::string usage_where(const Query& q, std::vector<pg::param>& params) {
  std::string where =
      " WHERE occurred_at >= to_timestamp($1::bigint) AND occurred_at < to_timestamp($2::bigint)";
  const std::pair<const char*, const std::optional<std::string>*> filters[] = {
      {"tenant_id", &q.tenant_id},
      {"project_id", &q.project_id},
      {"api_key_id", &q.api_key_id},
      {"model", &q.model}};
  for (const auto& [column, value] : filters) {
    if (!*value) continue;
    params.push_back(**value);
    where += std::string(" AND ") + column + " = $" + std::to_string(params.size());
  }
  return where;
}

}  // namespace

net::awaitable<pg::db_result<std::vector<usage_row>>> usage_queries::usage(usage_query q) {
  std::vector<pg::param> params{std::to_string(q.start_s), std::to_string(q.end_s),
                                std::to_string(q.bucket_s)};
  std::string where = usage_where(q, params);
  if (q.batch) where += *q.batch ? " AND batch" : " AND NOT batch";
  auto grouped = [&](std::string_view c) {
    for (const auto& g : q.group_by) {
      if (g == c) return true;
    }
    return false;
  };
  std::string select =
      "SELECT (($1::bigint) + floor((extract(epoch from occurred_at) - $1::bigint) / "
      "$3::bigint)::bigint * $3::bigint) AS bucket";
  std::string group = " GROUP BY 1";
  int next = 2;
  for (const char* c : {"tenant_id", "project_id", "api_key_id", "model", "batch"}) {
    if (grouped(c)) {
      select += std::string(", ") + c;
      group += ", " + std::to_string(next);
    } else {
      select += ", NULL";
    }
    ++next;
  }
  select +=
      ", sum(prompt_tokens), sum(cached_prompt_tokens), sum(completion_tokens),"
      " sum(reasoning_tokens), count(*) FROM usage_events";
  const std::string sql = select + where + group + " ORDER BY" + group.substr(9);

  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  std::vector<usage_row> rows;
  rows.reserve(static_cast<std::size_t>(r->size()));
  for (int i = 0; i < r->size(); ++i) {
    usage_row u;
    u.bucket_start_s = r->int64(i, 0);
    auto opt = [&](int col) -> std::optional<std::string> {
      if (r->is_null(i, col)) return std::nullopt;
      return std::string(r->text(i, col));
    };
    u.tenant_id = opt(1);
    u.project_id = opt(2);
    u.api_key_id = opt(3);
    u.model = opt(4);
    if (!r->is_null(i, 5)) u.batch = r->boolean(i, 5);
    u.input_tokens = r->int64(i, 6);
    u.input_cached_tokens = r->int64(i, 7);
    u.output_tokens = r->int64(i, 8);
    u.output_reasoning_tokens = r->int64(i, 9);
    u.requests = r->int64(i, 10);
    rows.push_back(std::move(u));
  }
  co_return rows;
}

net::awaitable<pg::db_result<usage_queries::events_page>> usage_queries::events(events_query q) {
  std::vector<pg::param> params{std::to_string(q.start_s), std::to_string(q.end_s),
                                std::to_string(q.limit)};
  std::string where = usage_where(q, params);
  if (!q.after.empty()) {
    // Cursor: "<occurred_at in unix µs>~<tenant_id>~<request_id>".
    const auto a = q.after.find('~');
    const auto b = a == std::string::npos ? a : q.after.find('~', a + 1);
    if (b == std::string::npos) co_return pg::db_error{"bad cursor", "22023", false};
    params.push_back(q.after.substr(0, a));
    params.push_back(q.after.substr(a + 1, b - a - 1));
    params.push_back(q.after.substr(b + 1));
    const std::size_t n = params.size();
    where += " AND (occurred_at, tenant_id, request_id) > ('epoch'::timestamptz + $" +
             std::to_string(n - 2) + "::bigint * interval '1 microsecond', $" +
             std::to_string(n - 1) + ", $" + std::to_string(n) + ")";
  }
  const std::string sql =
      "SELECT json_build_object('object','usage_event','request_id',request_id,"
      "'tenant_id',tenant_id,'project_id',project_id,'api_key_id',api_key_id,"
      "'occurred_at',to_char(occurred_at,'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
      "'endpoint',endpoint,'model',model,'upstream',upstream,'stream',stream,'batch',batch,"
      "'status',status,'prompt_tokens',prompt_tokens,'cached_prompt_tokens',cached_prompt_tokens,"
      "'completion_tokens',completion_tokens,'reasoning_tokens',reasoning_tokens,"
      "'counted_prompt_tokens',counted_prompt_tokens,"
      "'counted_completion_tokens',counted_completion_tokens,'usage_reported',usage_reported,"
      "'estimated',estimated,'latency_us',latency_us,'ttft_us',ttft_us,"
      "'client_disconnected',client_disconnected,'error_code',error_code,"
      "'client_request_id',client_request_id,'cost_micros',cost_micros,"
      "'price_book_id',price_book_id,'price_book_version',price_book_version,"
      "'credit_micros',credit_micros)::text,"
      " ((extract(epoch from occurred_at) * 1000000)::bigint)::text || '~' || tenant_id || '~' ||"
      " request_id FROM usage_events" +
      where + " ORDER BY occurred_at, tenant_id, request_id LIMIT $3::int + 1";
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  events_page page;
  json_array_writer data;
  const int shown = std::min(r->size(), q.limit);
  for (int i = 0; i < shown; ++i) data.add_raw(r->text(i, 0));
  page.data_json = data.finish();
  if (r->size() > q.limit && shown > 0) page.next = std::string(r->text(shown - 1, 1));
  co_return page;
}

}  // namespace tollgate::billing
