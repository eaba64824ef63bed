// Usage reports from the usage rollup: see usage_rollup.hpp.
#include "billing/usage_rollup.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "billing/tag_sets.hpp"
#include "billing/usage_sql.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

namespace {

constexpr std::int64_t day_s = 86400;
constexpr std::int64_t us_per_s = 1'000'000;

// The one dimension a rollup query reads ("" for the totals alone), with its filter value.
struct rollup_dimension {
  std::string name;  // "", "end_user" or "tag:<key>"
  std::optional<std::string> value;
  bool grouped = false;
};

// The query's dimension, or nullopt when it has several or one the rollup does not keep.
std::optional<rollup_dimension> dimension_of(const usage_query& q) {
  std::set<std::string> names;
  rollup_dimension d;
  for (const auto& g : q.group_by) {
    if (g == "tenant_id") continue;
    if (g != "end_user" && !g.starts_with(usage_tag_prefix)) return std::nullopt;
    names.insert(g);
    d.grouped = true;
  }
  if (q.end_user) {
    names.insert("end_user");
    d.value = q.end_user;
  }
  if (q.tag_filters.size() > 1) return std::nullopt;
  for (const auto& [key, value] : q.tag_filters) {
    names.insert(std::string(usage_tag_prefix) + key);
    d.value = value;
  }
  if (names.size() > 1) return std::nullopt;
  if (!names.empty()) d.name = *names.begin();
  return d;
}

std::string int_array(const std::vector<std::int64_t>& v) {
  std::string out = "{";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(v[i]);
  }
  return out + "}";
}

// The events' measures, as the raw part selects them for `v`.
std::string raw_columns(const usage_query& q, usage_sql::params& p, const std::string& v) {
  return "SELECT " + usage_sql::bucket_expr(q, p, "e.occurred_at") + " AS b, " + v +
         " AS v, e.prompt_tokens AS i, e.cached_prompt_tokens AS ca, e.completion_tokens AS o,"
         " e.reasoning_tokens AS re, e.cost_micros AS cost";
}

// A rollup row's sums, subtracted where its period is (a day taken out of its month).
constexpr const char* rollup_sums =
    "r.input_tokens * c.sign AS s_in, r.cached_tokens * c.sign AS s_ca,"
    " r.output_tokens * c.sign AS s_out, r.reasoning_tokens * c.sign AS s_re,"
    " r.requests * c.sign AS s_n, r.cost_micros * c.sign AS s_cost,"
    " r.unrated_requests * c.sign AS s_un";
constexpr const char* summed =
    "sum(s_in) AS s_in, sum(s_ca) AS s_ca, sum(s_out) AS s_out, sum(s_re) AS s_re,"
    " sum(s_n) AS s_n, sum(s_cost) AS s_cost, sum(s_un) AS s_un";

// The main query: rows in the usage_sql layout, from the plan's rollup periods, its raw
// intervals and the events at or above the watermark `wm` outside those intervals.
std::string rollup_sql(const usage_query& q, const rollup_dimension& d, const rollup_plan& plan,
                       std::int64_t wm, usage_sql::params& p) {
  const std::string tenant = p.add(*q.tenant_id);
  std::vector<std::int64_t> days, buckets, signs, from, to;
  std::string grains = "{";
  for (const auto& c : plan.periods) {
    if (grains.size() > 1) grains.push_back(',');
    grains.push_back(c.grain);
    days.push_back(c.day);
    buckets.push_back(c.bucket_s);
    signs.push_back(c.sign);
  }
  grains.push_back('}');
  for (const auto& [a, z] : plan.raw) {
    from.push_back(a);
    to.push_back(z);
  }
  std::string v = "NULL::text";
  if (d.name == "end_user") v = "e.end_user";
  if (d.name.starts_with(usage_tag_prefix)) {
    v = "ts.tags ->> " + p.add(d.name.substr(usage_tag_prefix.size())) + "::text";
  }
  std::string filter;
  std::string roll_filter;
  if (d.value) {
    const std::string fv = p.add(*d.value);
    filter = " AND " + v + " = " + fv;
    roll_filter = " AND r.value = " + fv;
  }
  const std::string dim = p.add(d.name);
  const std::string in_range = "e.occurred_at >= to_timestamp(" + p.add(std::to_string(q.start_s)) +
                               "::bigint) AND e.occurred_at < to_timestamp(" +
                               p.add(std::to_string(q.end_s)) + "::bigint)";
  const std::string in_raw =
      "e.occurred_at >= to_timestamp(u.a) AND e.occurred_at < to_timestamp(u.z)";
  std::string sql =
      "WITH c AS (SELECT * FROM unnest(" + p.add(grains) + "::\"char\"[], " +
      p.add(int_array(days)) + "::int[], " + p.add(int_array(buckets)) + "::bigint[], " +
      p.add(int_array(signs)) + "::int[]) AS c(grain, d, b, sign)), u AS (SELECT * FROM unnest(" +
      p.add(int_array(from)) + "::bigint[], " + p.add(int_array(to)) +
      "::bigint[]) AS u(a, z)),"
      " raw AS MATERIALIZED (" +
      raw_columns(q, p, v) + " FROM u JOIN usage_events e ON" + " e.tenant_id = " + tenant +
      " AND " + in_raw + join_tag_sets + " WHERE true" + filter + " UNION ALL " +
      raw_columns(q, p, v) +
      // The events above the watermark, found by their transaction alone (its index).
      " FROM (SELECT * FROM usage_events WHERE xact_id >= " + p.add(std::to_string(wm)) +
      "::bigint OFFSET 0) e" + join_tag_sets + " WHERE e.tenant_id = " + tenant +
      " AND " + in_range + filter +
      " AND NOT EXISTS (SELECT 1 FROM u WHERE " + in_raw +
      ")),"
      " raw_sums AS (SELECT b, v, sum(i) AS s_in, sum(ca) AS s_ca, sum(o) AS s_out,"
      " sum(re) AS s_re, count(*) AS s_n, coalesce(sum(cost), 0) AS s_cost,"
      " count(*) - count(cost) AS s_un FROM raw GROUP BY b, v),"
      " roll AS (SELECT c.b, r.value AS v, " +
      rollup_sums +
      " FROM c JOIN usage_rollup r ON"
      " r.tenant_id = " +
      tenant + " AND r.dimension = " + dim +
      " AND r.grain = c.grain AND r.period = DATE '1970-01-01' + c.d" + roll_filter +
      "),"
      " vals AS (SELECT b, v, " +
      summed + " FROM (SELECT * FROM roll UNION ALL SELECT * FROM raw_sums) x GROUP BY b, v)";
  std::string out;
  if (d.name.empty() || d.value) {
    out = "SELECT b, v, s_in, s_ca, s_out, s_re, s_n, s_cost, s_un FROM vals";
  } else {
    // The events without a value: the totals less the values.
    sql += ", tot AS (SELECT b, " + std::string(summed) + " FROM (SELECT c.b, " + rollup_sums +
           " FROM c JOIN usage_rollup r ON r.tenant_id = " + tenant +
           " AND r.dimension = '' AND r.grain = c.grain AND r.period = DATE '1970-01-01' + c.d"
           " UNION ALL SELECT b, s_in, s_ca, s_out, s_re, s_n, s_cost, s_un FROM raw_sums) x"
           " GROUP BY b), known AS (SELECT b, " +
           summed + " FROM vals WHERE v IS NOT NULL GROUP BY b)";
    out =
        "SELECT b, v, s_in, s_ca, s_out, s_re, s_n, s_cost, s_un FROM vals WHERE v IS NOT NULL"
        " UNION ALL SELECT t.b, NULL, t.s_in - coalesce(k.s_in, 0), t.s_ca - coalesce(k.s_ca, 0),"
        " t.s_out - coalesce(k.s_out, 0), t.s_re - coalesce(k.s_re, 0),"
        " t.s_n - coalesce(k.s_n, 0), t.s_cost - coalesce(k.s_cost, 0),"
        " t.s_un - coalesce(k.s_un, 0) FROM tot t LEFT JOIN known k USING (b)"
        " WHERE t.s_n > coalesce(k.s_n, 0)";
  }
  // Into the layout: the grouped dimension's values in its column.
  const bool by_user = d.grouped && d.name == "end_user";
  const bool by_tag = d.grouped && d.name.starts_with(usage_tag_prefix);
  std::string layout =
      "SELECT b, " + (usage_sql::grouped(q, "tenant_id") ? tenant + "::text" : "NULL::text") +
      " AS c1, NULL::text AS c2, NULL::text AS c3, NULL::text AS c4,"
      " NULL::boolean AS c5, " +
      (by_user ? "v" : "NULL::text") + " AS c6, NULL::text AS c7, " + (by_tag ? "v AS t0, " : "") +
      usage_sql::sum_columns + " FROM (" + out + ") o";
  return sql + " " + usage_sql::ordered(q, layout);
}

}  // namespace

bool rollup_serves(const usage_query& q) {
  if (!q.tenant_id || q.project_id || q.api_key_id || q.model || q.batch || q.session_id) {
    return false;
  }
  if (!q.monthly && q.bucket_s < day_s) return false;
  return dimension_of(q).has_value();
}

rollup_plan plan_rollup(const usage_query& q, const std::vector<rollup_period>& periods) {
  rollup_plan plan;
  // A period whose events all lie in the range and in one bucket: that bucket.
  const auto bucket_of = [&q](const rollup_period& p) -> std::optional<std::int64_t> {
    if (p.first_us < q.start_s * us_per_s || p.last_us >= q.end_s * us_per_s) return std::nullopt;
    const std::int64_t b = usage_bucket_of(q, p.first_us / us_per_s);  // never before 1970
    if (usage_bucket_of(q, p.last_us / us_per_s) != b) return std::nullopt;
    return b;
  };
  std::map<std::int64_t, std::vector<const rollup_period*>> days_of_month;
  std::set<std::int64_t> months;
  for (const auto& p : periods) {
    if (p.grain == 'm') months.insert(p.day);
  }
  for (const auto& p : periods) {
    if (p.grain != 'd') continue;
    const auto m = months.upper_bound(p.day);
    const std::int64_t month = m == months.begin() ? p.day : *std::prev(m);
    if (p.day >= usage_sql::next_month_day(month)) {
      // A day without its month row cannot happen (both are written together); read it alone.
      days_of_month[p.day].push_back(&p);
    } else {
      days_of_month[month].push_back(&p);
    }
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> covered;  // [from, to) in days
  for (const auto& [month, days] : days_of_month) {
    // The bucket most of the month's usable days fall in; those days are "good".
    std::map<std::int64_t, std::size_t> per_bucket;
    for (const auto* d : days) {
      if (const auto b = bucket_of(*d)) ++per_bucket[*b];
    }
    std::int64_t best = 0;
    std::size_t good = 0;
    for (const auto& [b, n] : per_bucket) {
      if (n > good) std::tie(best, good) = std::pair{b, n};
    }
    const bool whole_month = months.count(month) > 0 && days.size() - good < good;
    if (whole_month) {
      // The month less its other days: fewer rows to read than its good days.
      plan.periods.push_back({'m', month, best, 1});
      std::int64_t at = month;
      for (const auto* d : days) {
        const auto b = bucket_of(*d);
        if (b && *b == best) continue;
        plan.periods.push_back({'d', d->day, best, -1});
        if (d->day > at) covered.emplace_back(at, d->day);
        at = d->day + 1;
      }
      covered.emplace_back(at, usage_sql::next_month_day(month));
      continue;
    }
    for (const auto* d : days) {
      if (const auto b = bucket_of(*d)) {
        plan.periods.push_back({'d', d->day, *b, 1});
        covered.emplace_back(d->day, d->day + 1);
      }
    }
  }
  std::sort(covered.begin(), covered.end());
  std::int64_t at = q.start_s;
  for (const auto& [from, to] : covered) {
    const std::int64_t a = std::max(q.start_s, from * day_s);
    if (a > at) plan.raw.emplace_back(at, a);
    at = std::max(at, std::min(q.end_s, to * day_s));
  }
  if (at < q.end_s) plan.raw.emplace_back(at, q.end_s);
  return plan;
}

net::awaitable<pg::db_result<std::vector<usage_row>>> rollup_usage(pg::connection& conn,
                                                                   const usage_query& q) {
  const rollup_dimension d = *dimension_of(q);
  // One snapshot for the watermark, the rollup and the events: exact at that moment.
  auto begun = co_await conn.exec(
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_seqscan = off;"
      " SET LOCAL jit = off");
  if (!begun) co_return begun.error();
  auto fail = [&conn](pg::db_error e) -> net::awaitable<pg::db_result<std::vector<usage_row>>> {
    if (conn.ok()) co_await conn.exec("ROLLBACK");
    co_return e;
  };
  auto wm = co_await conn.query("SELECT watermark FROM usage_rollup_state");
  if (!wm) co_return co_await fail(wm.error());
  // Months that start up to 31 days before the range can still reach into it; and a month
  // read whole, less its other days, needs all of those, also the ones after the range (up to
  // 31 days after its end).
  std::vector<pg::param> params{*q.tenant_id, std::to_string(q.start_s / day_s - 31),
                                std::to_string(q.end_s / day_s + 32)};
  auto totals = co_await conn.query(
      "SELECT grain, period - DATE '1970-01-01', (extract(epoch from first_at) * 1000000)::bigint,"
      " (extract(epoch from last_at) * 1000000)::bigint FROM usage_rollup"
      " WHERE tenant_id = $1 AND dimension = '' AND grain IN ('d', 'm')"
      " AND period >= DATE '1970-01-01' + $2::int AND period < DATE '1970-01-01' + $3::int",
      std::move(params));
  if (!totals) co_return co_await fail(totals.error());
  std::vector<rollup_period> periods;
  for (int i = 0; i < totals->size(); ++i) {
    periods.push_back({totals->text(i, 0).empty() ? 'd' : totals->text(i, 0)[0],
                       totals->int64(i, 1), totals->int64(i, 2), totals->int64(i, 3)});
  }
  usage_sql::params p;
  const std::string sql =
      rollup_sql(q, d, plan_rollup(q, periods), wm->size() > 0 ? wm->int64(0, 0) : 0, p);
  auto r = co_await conn.query(sql, std::move(p.values));
  if (!r) co_return co_await fail(r.error());
  auto done = co_await conn.exec("COMMIT");
  if (!done) co_return done.error();
  co_return usage_sql::read_rows(*r, d.grouped && d.name.starts_with(usage_tag_prefix) ? 1 : 0);
}

}  // namespace tollgate::billing
