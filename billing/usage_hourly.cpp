// Usage reports and refusals from the hourly aggregate: see usage_hourly.hpp.
#include "billing/usage_hourly.hpp"

#include <algorithm>
#include <string_view>

#include "billing/usage_sql.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

constexpr std::int64_t hour_s = 3600;
// Buckets one plan walks at most (the APIs allow far fewer); past it the events answer.
constexpr std::int64_t plan_buckets_max = 100'000;

// The dimensions (and filters) the aggregate keeps.
constexpr std::string_view kept[] = {"tenant_id", "project_id", "api_key_id", "model"};

bool is_kept(std::string_view d) {
  return std::find(std::begin(kept), std::end(kept), d) != std::end(kept);
}

// What a query adds up: its columns over the events (`e`) and over the aggregate (`h`), the
// rows each part keeps, and how the union's rows (`x`) are summed.
struct measures {
  const char* events;
  const char* events_where;
  const char* hourly;
  const char* hourly_where;
  const char* sums;
};

constexpr measures usage_measures{
    "e.prompt_tokens AS i, e.cached_prompt_tokens AS ca, e.completion_tokens AS o,"
    " e.reasoning_tokens AS re, 1 AS n, e.cost_micros AS cost, (e.cost_micros IS NULL)::int AS un",
    "",
    "h.input_tokens, h.cached_tokens, h.output_tokens, h.reasoning_tokens, h.requests,"
    " h.cost_micros, h.unrated_requests",
    "",
    "sum(i) AS s_in, sum(ca) AS s_ca, sum(o) AS s_out, sum(re) AS s_re, sum(n) AS s_n,"
    " coalesce(sum(cost), 0) AS s_cost, sum(un) AS s_un"};

constexpr measures refusal_measures{
    "(e.status = 429)::int AS r429, (e.status = 402)::int AS r402", " AND e.status IN (429, 402)",
    "h.refused_429, h.refused_402", " AND (h.refused_429 > 0 OR h.refused_402 > 0)",
    "sum(r429) AS n429, sum(r402) AS n402"};

std::string int_array(const std::vector<std::int64_t>& v) {
  std::string out = "{";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(v[i]);
  }
  return out + "}";
}

// Rows in the usage_sql layout (b, c1..c7, then m.sums): the raw intervals and the events
// above the watermark `wm` outside them from usage_events, the other whole hours of the range
// from usage_hourly.
std::string hourly_sql(const usage_query& q, const std::vector<time_span>& raw, std::int64_t wm,
                       const measures& m, usage_sql::params& p) {
  std::vector<std::int64_t> from, to;
  for (const auto& [a, z] : raw) {
    from.push_back(a);
    to.push_back(z);
  }
  const std::string u = "WITH u AS (SELECT * FROM unnest(" + p.add(int_array(from)) +
                        "::bigint[], " + p.add(int_array(to)) + "::bigint[]) AS u(a, z))";
  // The grouped dimensions (in "C" order, as the aggregate keeps them) and the filters.
  const std::pair<const char*, const std::optional<std::string>*> filters[] = {
      {"tenant_id", &q.tenant_id},
      {"project_id", &q.project_id},
      {"api_key_id", &q.api_key_id},
      {"model", &q.model}};
  std::vector<std::pair<std::string, std::string>> filter_params;
  for (const auto& [column, value] : filters) {
    if (*value) filter_params.emplace_back(column, p.add(**value));
  }
  const auto part = [&](const char* x) {
    std::string dims, where;
    int at = 1;
    for (const char* c : usage_sql::fixed_dimensions) {
      const std::string alias = " AS c" + std::to_string(at++);
      if (usage_sql::grouped(q, c)) {
        dims += std::string(", ") + x + "." + c + " COLLATE \"C\"" + alias;
      } else {
        dims += std::string(", NULL::") + (std::string_view(c) == "batch" ? "boolean" : "text") +
                alias;
      }
    }
    for (const auto& [column, placeholder] : filter_params) {
      where += std::string(" AND ") + x + "." + column + " = " + placeholder;
    }
    return std::pair{dims, where};
  };
  const auto [e_dims, e_where] = part("e");
  const auto [h_dims, h_where] = part("h");
  const std::string start = p.add(std::to_string(q.start_s)) + "::bigint";
  const std::string end = p.add(std::to_string(q.end_s)) + "::bigint";
  const std::string in_raw =
      " FROM u WHERE e.occurred_at >= to_timestamp(u.a) AND e.occurred_at < to_timestamp(u.z)";
  const std::string events =
      "SELECT " + usage_sql::bucket_expr(q, p, "e.occurred_at") + " AS b" + e_dims + ", " +
      m.events + " FROM u JOIN usage_events e ON e.occurred_at >= to_timestamp(u.a) AND" +
      " e.occurred_at < to_timestamp(u.z) WHERE true" + e_where + m.events_where +
      " UNION ALL SELECT " + usage_sql::bucket_expr(q, p, "e.occurred_at") + " AS b" + e_dims +
      ", " + m.events +
      // The events above the watermark, found by their transaction alone (its index).
      " FROM (SELECT * FROM usage_events WHERE xact_id >= " + p.add(std::to_string(wm)) +
      "::bigint OFFSET 0) e WHERE e.occurred_at >= to_timestamp(" + start +
      ") AND e.occurred_at < to_timestamp(" + end + ")" + e_where + m.events_where +
      " AND NOT EXISTS (SELECT 1" + in_raw + ")";
  const std::string hourly =
      "SELECT " + usage_sql::bucket_expr(q, p, "h.hour") + " AS b" + h_dims + ", " + m.hourly +
      " FROM usage_hourly h WHERE h.hour >= to_timestamp(" + start +
      ") AND h.hour <= to_timestamp(" + end + " - 3600)" + h_where + m.hourly_where +
      " AND NOT EXISTS (SELECT 1 FROM u WHERE h.hour >= to_timestamp(u.a)"
      " AND h.hour < to_timestamp(u.z))";
  return u + ", x AS (" + events + " UNION ALL " + hourly + ") SELECT b, c1, c2, c3, c4, c5, c6," +
         " c7, " + m.sums + " FROM x GROUP BY b, c1, c2, c3, c4, c5, c6, c7";
}

// Runs `sql` in one read-only snapshot with the watermark it is built for.
template <class Build>
net::awaitable<pg::db_result<pg::rows>> in_snapshot(pg::connection& conn, Build build) {
  auto begun = co_await conn.exec(
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_seqscan = off;"
      " SET LOCAL jit = off");
  if (!begun) co_return begun.error();
  auto fail = [&conn](pg::db_error e) -> net::awaitable<pg::db_result<pg::rows>> {
    if (conn.ok()) co_await conn.exec("ROLLBACK");
    co_return e;
  };
  auto wm = co_await conn.query("SELECT watermark FROM usage_rollup_state");
  if (!wm) co_return co_await fail(wm.error());
  usage_sql::params p;
  const std::string sql = build(wm->size() > 0 ? wm->int64(0, 0) : 0, p);
  auto r = co_await conn.query(sql, std::move(p.values));
  if (!r) co_return co_await fail(r.error());
  auto done = co_await conn.exec("COMMIT");
  if (!done) co_return done.error();
  co_return std::move(*r);
}

}  // namespace

std::optional<std::vector<time_span>> hourly_plan(const usage_query& q) {
  if (q.end_user || q.session_id || q.batch || !q.tag_filters.empty()) return std::nullopt;
  for (const auto& g : q.group_by) {
    if (!is_kept(g)) return std::nullopt;
  }
  if (!q.monthly && (q.bucket_s < hour_s || q.bucket_s % hour_s != 0)) return std::nullopt;
  if (q.end_s <= q.start_s) return std::nullopt;
  const std::int64_t first = (q.start_s + hour_s - 1) / hour_s * hour_s;  // never before 1970
  const std::int64_t last = q.end_s / hour_s * hour_s;
  std::vector<time_span> raw;
  if (first >= last) return std::vector<time_span>{{q.start_s, q.end_s}};
  if (q.start_s < first) raw.emplace_back(q.start_s, first);
  std::int64_t walked = 0;
  for (std::int64_t b = usage_next_bucket(q, q.start_s); b < q.end_s;
       b = usage_next_bucket(q, b)) {
    if (++walked > plan_buckets_max) return std::nullopt;
    const std::int64_t cut = b / hour_s * hour_s;  // the hour holding the boundary
    if (cut != b && cut >= first && cut + hour_s <= last) raw.emplace_back(cut, cut + hour_s);
  }
  if (last < q.end_s) raw.emplace_back(last, q.end_s);
  std::int64_t raw_s = 0;
  for (const auto& [a, z] : raw) raw_s += z - a;
  if (raw_s * 2 > q.end_s - q.start_s) return std::nullopt;  // mostly events: read them
  return raw;
}

net::awaitable<pg::db_result<std::vector<usage_row>>> hourly_usage(
    pg::connection& conn, const usage_query& q, const std::vector<time_span>& raw) {
  const auto build = [&](std::int64_t wm, usage_sql::params& p) {
    return usage_sql::ordered(q, hourly_sql(q, raw, wm, usage_measures, p));
  };
  auto r = co_await in_snapshot(conn, build);
  if (!r) co_return r.error();
  co_return usage_sql::read_rows(*r, 0);
}

net::awaitable<pg::db_result<std::vector<refusal_count>>> hourly_refusals(
    pg::connection& conn, const usage_query& q, const std::vector<time_span>& raw) {
  const auto build = [&](std::int64_t wm, usage_sql::params& p) {
    return "SELECT b, n429, n402 FROM (" + hourly_sql(q, raw, wm, refusal_measures, p) +
           ") r ORDER BY b";
  };
  auto r = co_await in_snapshot(conn, build);
  if (!r) co_return r.error();
  std::vector<refusal_count> out;
  for (int i = 0; i < r->size(); ++i) {
    out.push_back({r->int64(i, 0), r->int64(i, 1), r->int64(i, 2)});
  }
  co_return out;
}

}  // namespace tollgate::billing
