// Usage reports: see usage_report.hpp.
#include "gateway/usage_report.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <charconv>
#include <map>

#include "core/json_text.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;

// CSV is read from the database this many buckets at a time.
constexpr std::int64_t csv_window_buckets = 1440;

std::optional<std::int64_t> parse_int(const std::string& s) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Unix seconds in [0, time_s_max]; nullopt for anything else (huge, negative, not a number).
std::optional<std::int64_t> parse_time_s(const std::string& s) {
  const auto v = parse_int(s);
  if (!v || *v < 0 || *v > time_s_max) return std::nullopt;
  return v;
}

const std::string time_range_text = "unix seconds between 0 and " + std::to_string(time_s_max);

struct width_rule {
  const char* name;
  std::int64_t seconds;
  int default_limit;
  int max_limit;
};
// OpenAI's bucket widths and their page sizes.
constexpr width_rule width_rules[] = {
    {"1m", 60, 60, 1440}, {"1h", 3600, 24, 168}, {"1d", 86400, 7, 31}};

api_error bad(std::string message, std::string param) {
  return invalid_request(std::move(message), std::move(param), "invalid_value");
}

void add_opt(json_object_writer& w, const char* key, const std::optional<std::string>& v) {
  if (v) {
    w.add(key, *v);
  } else {
    w.add_null(key);
  }
}

std::string result_json(const billing::usage_row& r, bool finance) {
  json_object_writer w;
  w.add("object", "organization.usage.completions.result")
      .add("input_tokens", r.input_tokens)
      .add("output_tokens", r.output_tokens)
      .add("input_cached_tokens", r.input_cached_tokens)
      .add("input_audio_tokens", 0)
      .add("output_audio_tokens", 0)
      .add("output_reasoning_tokens", r.output_reasoning_tokens)
      .add("num_model_requests", r.requests);
  if (finance) add_opt(w, "tenant_id", r.tenant_id);
  add_opt(w, "project_id", r.project_id);
  w.add_null("user_id");
  add_opt(w, "api_key_id", r.api_key_id);
  add_opt(w, "model", r.model);
  if (r.batch) {
    w.add("batch", *r.batch);
  } else {
    w.add_null("batch");
  }
  return w.finish();
}

void csv_field(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\n\r") == std::string_view::npos) {
    out += v;
    return;
  }
  out.push_back('"');
  for (char c : v) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

void csv_row(std::string& out, const billing::usage_row& r, std::int64_t width) {
  out += std::to_string(r.bucket_start_s) + "," + std::to_string(r.bucket_start_s + width) + ",";
  for (const auto* v : {&r.tenant_id, &r.project_id, &r.api_key_id, &r.model}) {
    if (*v) csv_field(out, **v);
    out.push_back(',');
  }
  if (r.batch) out += *r.batch ? "true" : "false";
  out += "," + std::to_string(r.input_tokens) + "," + std::to_string(r.input_cached_tokens) + "," +
         std::to_string(r.output_tokens) + "," + std::to_string(r.output_reasoning_tokens) + "," +
         std::to_string(r.requests) + "\n";
}

api_error from_db(const pg::db_error& e) {
  return service_unavailable("The usage database is unavailable: " + e.message);
}

}  // namespace

usage_limits usage_limits::from(const usage_reports_config& c) {
  usage_limits l;
  l.json_range_buckets_max = static_cast<std::int64_t>(c.json_range_buckets_max);
  l.csv_range_buckets_max = static_cast<std::int64_t>(c.csv_range_buckets_max);
  return l;
}

result<usage_request> parse_usage_request(const query_params& q, bool finance,
                                          std::int64_t now_s, const usage_limits& limits) {
  usage_request r;
  r.finance = finance;
  const auto start = q.get("start_time");
  if (!start) return bad("start_time (unix seconds) is required.", "start_time");
  const auto start_v = parse_time_s(*start);
  if (!start_v) return bad("start_time must be " + time_range_text + ".", "start_time");
  r.query.start_s = *start_v;
  r.query.end_s = std::min(now_s, time_s_max) + 1;  // through the current second
  if (const auto end = q.get("end_time")) {
    const auto v = parse_time_s(*end);
    if (!v || *v <= r.query.start_s) {
      return bad("end_time must be " + time_range_text + ", after start_time.", "end_time");
    }
    r.query.end_s = *v;
  }
  if (r.query.end_s <= r.query.start_s) {
    return bad("start_time must be in the past.", "start_time");
  }
  const width_rule* rule = &width_rules[2];
  if (const auto w = q.get("bucket_width")) {
    rule = nullptr;
    for (const auto& wr : width_rules) {
      if (*w == wr.name) rule = &wr;
    }
    if (rule == nullptr) return bad("bucket_width must be 1m, 1h or 1d.", "bucket_width");
  }
  if (const auto f = q.get("format")) {
    if (*f != "json" && *f != "csv") return bad("format must be json or csv.", "format");
    r.csv = *f == "csv";
  }
  r.query.bucket_s = rule->seconds;
  r.bucket_limit = rule->default_limit;
  if (const auto l = q.get("limit")) {
    const auto v = parse_int(*l);
    if (!v || *v < 1 || *v > rule->max_limit) {
      return bad("limit must be between 1 and " + std::to_string(rule->max_limit) +
                     " for bucket_width " + rule->name + ".",
                 "limit");
    }
    r.bucket_limit = static_cast<int>(*v);
  }
  for (const auto& g : q.list("group_by")) {
    if (g != "project_id" && g != "api_key_id" && g != "model" && g != "batch" &&
        !(finance && g == "tenant_id")) {
      return bad("group_by accepts " + std::string(finance ? "tenant_id, " : "") +
                     "project_id, api_key_id, model and batch; got `" + g + "`.",
                 "group_by");
    }
    r.query.group_by.push_back(g);
  }
  auto filter = [&](const char* name, std::optional<std::string>& into) {
    if (auto v = q.get(name)) into = std::move(*v);
  };
  if (finance) filter("tenant_id", r.query.tenant_id);
  filter("project_id", r.query.project_id);
  filter("api_key_id", r.query.api_key_id);
  filter("model", r.query.model);
  if (const auto b = q.get("batch")) {
    if (*b != "true" && *b != "false") return bad("batch must be true or false.", "batch");
    r.query.batch = *b == "true";
  }
  // The whole range, in buckets (the last one may be partial): bounded, JSON and CSV alike.
  const std::int64_t range_buckets =
      (r.query.end_s - r.query.start_s + r.query.bucket_s - 1) / r.query.bucket_s;
  const std::int64_t range_max =
      r.csv ? limits.csv_range_buckets_max : limits.json_range_buckets_max;
  if (range_buckets > range_max) {
    return bad("The range from start_time to end_time spans " + std::to_string(range_buckets) +
                   " buckets of " + rule->name + "; at most " + std::to_string(range_max) +
                   " are allowed per query" + (r.csv ? " for CSV" : "") +
                   ". Narrow the range or use a wider bucket_width.",
               "end_time");
  }
  r.page_start_s = r.query.start_s;
  if (const auto p = q.get("page")) {
    const auto v = parse_int(*p);
    if (!v || *v < r.query.start_s || *v >= r.query.end_s ||
        (*v - r.query.start_s) % r.query.bucket_s != 0) {
      return bad("page is not a cursor from this query's next_page.", "page");
    }
    r.page_start_s = *v;
  }
  return r;
}

boost::asio::awaitable<void> send_usage_report(http::exchange& ex, const billing_context& billing,
                                               usage_request request, std::string request_id) {
  const std::int64_t width = request.query.bucket_s;
  if (!request.csv) {
    billing::usage_query q = request.query;
    q.start_s = request.page_start_s;
    q.end_s = std::min(request.query.end_s, q.start_s + width * request.bucket_limit);
    auto op = billing.usage->usage(q);
    auto rows = co_await on_billing(billing, std::move(op));
    if (!rows) {
      co_await ex.send_error(from_db(rows.error()), request_id);
      co_return;
    }
    std::map<std::int64_t, json_array_writer> results;  // by bucket start
    for (const auto& row : *rows) {
      results[row.bucket_start_s].add_raw(result_json(row, request.finance));
    }
    json_array_writer data;
    for (std::int64_t b = q.start_s; b < q.end_s; b += width) {
      json_object_writer bucket;
      bucket.add("object", "bucket").add("start_time", b).add("end_time", b + width);
      const auto it = results.find(b);
      bucket.add_raw("results", it != results.end() ? it->second.finish() : "[]");
      data.add_raw(bucket.finish());
    }
    const bool more = q.end_s < request.query.end_s;
    json_object_writer page;
    page.add("object", "page").add_raw("data", data.finish()).add("has_more", more);
    if (more) {
      page.add("next_page", std::to_string(q.end_s));
    } else {
      page.add_null("next_page");
    }
    std::string body = page.finish();
    co_await ex.send_json(200, std::move(body), request_id);
    co_return;
  }

  // CSV: the header goes out first; then one window of buckets at a time. A database failure
  // midway ends the body without its terminating chunk, so the client sees a broken transfer
  // rather than a silently short file.
  bhttp::response<bhttp::empty_body> head{bhttp::status::ok, ex.req().version()};
  head.set(bhttp::field::content_type, "text/csv; charset=utf-8");
  head.set("x-request-id", request_id);
  if (!co_await ex.send_chunked_header(std::move(head))) co_return;
  std::string out =
      "start_time,end_time,tenant_id,project_id,api_key_id,model,batch,input_tokens,"
      "input_cached_tokens,output_tokens,output_reasoning_tokens,num_model_requests\n";
  for (std::int64_t at = request.page_start_s; at < request.query.end_s;) {
    billing::usage_query q = request.query;
    q.start_s = at;
    q.end_s = std::min(request.query.end_s, at + width * csv_window_buckets);
    at = q.end_s;
    auto op = billing.usage->usage(q);
    auto rows = co_await on_billing(billing, std::move(op));
    if (!rows) {
      ex.set_close_after();
      co_return;
    }
    for (const auto& row : *rows) csv_row(out, row, width);
    if (!out.empty() && !co_await ex.send_chunk(out)) co_return;
    out.clear();
  }
  co_await ex.send_last_chunk();
}

result<billing::events_query> parse_events_request(const query_params& q, std::int64_t now_s) {
  billing::events_query e;
  e.start_s = 0;
  e.end_s = std::min(now_s, time_s_max) + 1;
  if (const auto s = q.get("start_time")) {
    const auto v = parse_time_s(*s);
    if (!v) return bad("start_time must be " + time_range_text + ".", "start_time");
    e.start_s = *v;
  }
  if (const auto s = q.get("end_time")) {
    const auto v = parse_time_s(*s);
    if (!v || *v <= e.start_s) {
      return bad("end_time must be " + time_range_text + ", after start_time.", "end_time");
    }
    e.end_s = *v;
  }
  if (const auto l = q.get("limit")) {
    const auto v = parse_int(*l);
    if (!v || *v < 1 || *v > 1000) return bad("limit must be between 1 and 1000.", "limit");
    e.limit = static_cast<int>(*v);
  }
  auto filter = [&](const char* name, std::optional<std::string>& into) {
    if (auto v = q.get(name)) into = std::move(*v);
  };
  filter("tenant_id", e.tenant_id);
  filter("project_id", e.project_id);
  filter("api_key_id", e.api_key_id);
  filter("model", e.model);
  if (const auto a = q.get("after")) {
    const auto t1 = a->find('~');
    const auto t2 = t1 == std::string::npos ? t1 : a->find('~', t1 + 1);
    if (t2 == std::string::npos || !parse_int(a->substr(0, t1))) {
      return bad("after is not a cursor from a previous page.", "after");
    }
    e.after = *a;
  }
  return e;
}

}  // namespace tollgate::gateway
