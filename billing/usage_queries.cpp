// The usage queries: see usage_queries.hpp. The SQL shared with the rollup is in usage_sql.hpp.
#include "billing/usage_queries.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "billing/tag_sets.hpp"
#include "billing/usage_hourly.hpp"
#include "billing/usage_rollup.hpp"
#include "billing/usage_sql.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

// The WHERE clause of a usage query: the time range and an equality test for each filter given.
template <class Query>
std::string usage_where(const Query& q, usage_sql::params& p) {
  std::string where = " WHERE occurred_at >= to_timestamp(" + p.add(std::to_string(q.start_s)) +
                      "::bigint) AND occurred_at < to_timestamp(" +
                      p.add(std::to_string(q.end_s)) + "::bigint)";
  const std::pair<const char*, const std::optional<std::string>*> filters[] = {
      {"tenant_id", &q.tenant_id},
      {"project_id", &q.project_id},
      {"api_key_id", &q.api_key_id},
      {"model", &q.model}};
  for (const auto& [column, value] : filters) {
    if (*value) where += std::string(" AND ") + column + " = " + p.add(**value);
  }
  return where;
}

// The raw query: usage_events in the range, grouped.
std::string raw_sql(const usage_query& q, usage_sql::params& p) {
  std::string where = usage_where(q, p);
  if (q.batch) where += *q.batch ? " AND batch" : " AND NOT batch";
  if (q.end_user) where += " AND end_user = " + p.add(*q.end_user);
  if (q.session_id) where += " AND session_id = " + p.add(*q.session_id);
  for (const auto& [key, value] : q.tag_filters) {
    where += " AND ts.tags ->> " + p.add(key) + "::text = " + p.add(value);
  }
  std::string select = "SELECT " + usage_sql::bucket_expr(q, p, "occurred_at") + " AS b";
  std::string group = " GROUP BY 1";
  int at = 2;
  for (const char* c : usage_sql::fixed_dimensions) {
    const std::string alias = " AS c" + std::to_string(at - 1);
    if (usage_sql::grouped(q, c)) {
      select += std::string(", ") + c + alias;
      group += ", " + std::to_string(at);
    } else {
      select += ", NULL" + std::string(std::string_view(c) == "batch" ? "::boolean" : "::text") +
                alias;
    }
    ++at;
  }
  int t = 0;
  for (const auto& key : usage_sql::grouped_tags(q)) {
    select += ", ts.tags ->> " + p.add(key) + "::text AS t" + std::to_string(t++);
    group += ", " + std::to_string(at++);
  }
  return select + ", " + usage_sql::event_sums + " FROM usage_events e" + join_tag_sets +
         where + group;
}

// Each row's currency: its tenant's, or the one currency of every tenant with a plan.
net::awaitable<pg::db_result<bool>> add_currencies(pg::connection& conn, const usage_query& q,
                                                   std::vector<usage_row>& rows) {
  if (rows.empty()) co_return true;
  std::vector<pg::param> params;
  std::string sql =
      "SELECT DISTINCT ON (p.tenant_id) p.tenant_id, b.currency FROM tenant_plans p"
      " JOIN price_books b ON b.id = p.book_id";
  if (q.tenant_id) {
    params.emplace_back(*q.tenant_id);
    sql += " WHERE p.tenant_id = $1";
  }
  sql += " ORDER BY p.tenant_id, p.from_period DESC";
  auto r = co_await conn.query(sql, std::move(params));
  if (!r) co_return r.error();
  std::map<std::string, std::string, std::less<>> by_tenant;
  std::set<std::string, std::less<>> all;
  for (int i = 0; i < r->size(); ++i) {
    by_tenant.emplace(std::string(r->text(i, 0)), std::string(r->text(i, 1)));
    all.emplace(r->text(i, 1));
  }
  const std::string only = all.size() == 1 ? *all.begin() : std::string();
  for (auto& row : rows) {
    const auto& tenant = row.tenant_id ? row.tenant_id : q.tenant_id;
    if (!tenant) {
      row.currency = only;
    } else if (const auto it = by_tenant.find(*tenant); it != by_tenant.end()) {
      row.currency = it->second;
    }
  }
  co_return true;
}

}  // namespace

namespace usage_sql {

bool grouped(const usage_query& q, std::string_view dimension) {
  return std::find(q.group_by.begin(), q.group_by.end(), dimension) != q.group_by.end();
}

std::vector<std::string> grouped_tags(const usage_query& q) {
  std::vector<std::string> keys;
  for (const auto& g : q.group_by) {
    if (g.starts_with(usage_tag_prefix)) keys.push_back(g.substr(usage_tag_prefix.size()));
  }
  return keys;
}

std::string bucket_expr(const usage_query& q, params& p, std::string_view at) {
  const std::string start = p.add(std::to_string(q.start_s)) + "::bigint";
  const std::string a(at);
  if (q.monthly) {
    return "greatest(" + start + ", extract(epoch from date_trunc('month', " + a +
           ", 'UTC'))::bigint)";
  }
  const std::string width = p.add(std::to_string(q.bucket_s)) + "::bigint";
  return "(" + start + " + floor((extract(epoch from " + a + ") - " + start + ") / " + width +
         ")::bigint * " + width + ")";
}

std::string ordered(const usage_query& q, const std::string& inner) {
  // The groups' values in byte order (the rollup keeps them in "C" collation; the events'
  // columns may have another), so that both ways of answering sort ties alike.
  std::string keys;
  for (int i = 1; i <= fixed_dimension_count; ++i) {
    keys += ", c" + std::to_string(i) + (i == 5 ? "" : " COLLATE \"C\"");  // c5: batch
  }
  for (std::size_t t = 0; t < grouped_tags(q).size(); ++t) {
    keys += ", t" + std::to_string(t) + " COLLATE \"C\"";
  }
  if (q.order == usage_order::keys && q.group_limit == 0) {
    return "SELECT * FROM (" + inner + ") q ORDER BY b" + keys;
  }
  std::string measure;
  switch (q.order) {
    case usage_order::cost_desc: measure = "s_cost DESC, "; break;
    case usage_order::tokens_desc: measure = "s_in + s_out DESC, "; break;
    case usage_order::requests_desc: measure = "s_n DESC, "; break;
    case usage_order::keys: break;
  }
  std::string sql = "SELECT * FROM (SELECT q.*, row_number() OVER (PARTITION BY b ORDER BY " +
                    measure + keys.substr(2) + ") AS rn FROM (" + inner + ") q) z";
  if (q.group_limit > 0) sql += " WHERE rn <= " + std::to_string(q.group_limit);
  return sql + " ORDER BY b, rn";
}

std::vector<usage_row> read_rows(const pg::rows& r, std::size_t tag_count) {
  std::vector<usage_row> rows;
  rows.reserve(static_cast<std::size_t>(r.size()));
  const int sums = 1 + fixed_dimension_count + static_cast<int>(tag_count);
  for (int i = 0; i < r.size(); ++i) {
    usage_row u;
    u.bucket_start_s = r.int64(i, 0);
    auto opt = [&](int col) -> std::optional<std::string> {
      if (r.is_null(i, col)) return std::nullopt;
      return std::string(r.text(i, col));
    };
    u.tenant_id = opt(1);
    u.project_id = opt(2);
    u.api_key_id = opt(3);
    u.model = opt(4);
    if (!r.is_null(i, 5)) u.batch = r.boolean(i, 5);
    u.end_user = opt(6);
    u.session_id = opt(7);
    for (std::size_t t = 0; t < tag_count; ++t) u.tags.push_back(opt(8 + static_cast<int>(t)));
    u.input_tokens = r.int64(i, sums);
    u.input_cached_tokens = r.int64(i, sums + 1);
    u.output_tokens = r.int64(i, sums + 2);
    u.output_reasoning_tokens = r.int64(i, sums + 3);
    u.requests = r.int64(i, sums + 4);
    u.cost_micros = r.int64(i, sums + 5);
    u.unrated_requests = r.int64(i, sums + 6);
    rows.push_back(std::move(u));
  }
  return rows;
}

}  // namespace usage_sql

net::awaitable<pg::db_result<std::vector<usage_row>>> usage_queries::usage(usage_query q) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::size_t tag_count = usage_sql::grouped_tags(q).size();
  std::vector<usage_row> rows;
  if (rollup_serves(q)) {
    auto r = co_await rollup_usage(**conn, q);
    if (!r) co_return r.error();
    rows = std::move(*r);
  } else if (const auto raw = hourly_plan(q)) {
    auto r = co_await hourly_usage(**conn, q, *raw);
    if (!r) co_return r.error();
    rows = std::move(*r);
  } else {
    usage_sql::params p;
    const std::string sql = usage_sql::ordered(q, raw_sql(q, p));
    auto r = co_await (*conn)->query(sql, std::move(p.values));
    if (!r) co_return r.error();
    rows = usage_sql::read_rows(*r, tag_count);
  }
  auto currencies = co_await add_currencies(**conn, q, rows);
  if (!currencies) co_return currencies.error();
  co_return rows;
}

net::awaitable<pg::db_result<usage_queries::events_page>> usage_queries::events(events_query q) {
  usage_sql::params p;
  std::string where = usage_where(q, p);
  const std::string limit = p.add(std::to_string(q.limit));
  if (!q.after.empty()) {
    // Cursor: "<occurred_at in unix µs>~<tenant_id>~<request_id>".
    const auto a = q.after.find('~');
    const auto b = a == std::string::npos ? a : q.after.find('~', a + 1);
    if (b == std::string::npos) co_return pg::db_error{"bad cursor", "22023", false};
    const std::string at = p.add(q.after.substr(0, a));
    const std::string tenant = p.add(q.after.substr(a + 1, b - a - 1));
    const std::string request = p.add(q.after.substr(b + 1));
    where += " AND (occurred_at, tenant_id, request_id) > ('epoch'::timestamptz + " + at +
             "::bigint * interval '1 microsecond', " + tenant + ", " + request + ")";
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
      "'credit_micros',credit_micros,'end_user',end_user,'tags',ts.tags,"
      "'session_id',session_id,'cache_write_tokens',cache_write_tokens,"
      "'image_prompt_tokens',image_prompt_tokens,'audio_prompt_tokens',audio_prompt_tokens,"
      "'audio_completion_tokens',audio_completion_tokens,"
      "'request_fee_micros',request_fee_micros,'context_band',context_band)::text,"
      " ((extract(epoch from occurred_at) * 1000000)::bigint)::text || '~' || tenant_id || '~' ||"
      " request_id FROM usage_events e" +
      std::string(join_tag_sets) + where + " ORDER BY occurred_at, tenant_id, request_id LIMIT " +
      limit + "::int + 1";
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  auto r = co_await (*conn)->query(sql, std::move(p.values));
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
