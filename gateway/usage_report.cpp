// Usage reports: see usage_report.hpp.
#include "gateway/usage_report.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <charconv>
#include <map>

#include "billing/period_pricing.hpp"
#include "core/csv.hpp"
#include "core/json_text.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;

// CSV is read from the database this many buckets at a time.
constexpr std::int64_t csv_window_buckets = 1440;

void add_opt(json_object_writer& w, const char* key, const std::optional<std::string>& v) {
  if (v) {
    w.add(key, *v);
  } else {
    w.add_null(key);
  }
}

// What shapes every result of a report.
struct report_view {
  bool finance = false;               // tenant_id is shown
  std::vector<std::string> tag_keys;  // the grouped tags, in group_by order
};

std::vector<std::string> grouped_tag_keys(const billing::usage_query& q) {
  std::vector<std::string> keys;
  for (const auto& g : q.group_by) {
    if (g.starts_with(billing::usage_tag_prefix)) {
      keys.push_back(g.substr(billing::usage_tag_prefix.size()));
    }
  }
  return keys;
}

// One result: OpenAI's fields, then the attribution groupings and the cost.
std::string result_json(const report_view& v, const billing::usage_row& r,
                        std::optional<std::int64_t> cost_minor) {
  json_object_writer w;
  w.add("object", "organization.usage.completions.result")
      .add("input_tokens", r.input_tokens)
      .add("output_tokens", r.output_tokens)
      .add("input_cached_tokens", r.input_cached_tokens)
      .add("input_audio_tokens", 0)
      .add("output_audio_tokens", 0)
      .add("output_reasoning_tokens", r.output_reasoning_tokens)
      .add("num_model_requests", r.requests);
  if (v.finance) add_opt(w, "tenant_id", r.tenant_id);
  add_opt(w, "project_id", r.project_id);
  w.add_null("user_id");
  add_opt(w, "api_key_id", r.api_key_id);
  add_opt(w, "model", r.model);
  if (r.batch) {
    w.add("batch", *r.batch);
  } else {
    w.add_null("batch");
  }
  add_opt(w, "end_user", r.end_user);
  add_opt(w, "session_id", r.session_id);
  if (v.tag_keys.empty()) {
    w.add_null("tags");
  } else {
    // Tag keys are any text: escaped here (json_object_writer takes its keys as they are).
    std::string tags = "{";
    for (std::size_t i = 0; i < v.tag_keys.size(); ++i) {
      if (i > 0) tags.push_back(',');
      append_json_string(tags, v.tag_keys[i]);
      tags.push_back(':');
      if (i < r.tags.size() && r.tags[i]) {
        append_json_string(tags, *r.tags[i]);
      } else {
        tags += "null";
      }
    }
    tags.push_back('}');
    w.add_raw("tags", tags);
  }
  w.add("cost_micros", r.cost_micros);
  if (cost_minor) {
    w.add("cost_minor", *cost_minor);
  } else {
    w.add_null("cost_minor");
  }
  add_opt(w, "currency", r.currency.empty() ? std::nullopt : std::optional(r.currency));
  w.add("unrated_requests", r.unrated_requests);
  return w.finish();
}

void csv_field(std::string& out, std::string_view v) { append_csv_field(out, v); }

std::string csv_header(const std::vector<std::string>& tag_keys) {
  std::string out =
      "start_time,end_time,tenant_id,project_id,api_key_id,model,batch,input_tokens,"
      "input_cached_tokens,output_tokens,output_reasoning_tokens,num_model_requests,end_user,"
      "session_id,cost_micros,cost_minor,currency,unrated_requests";
  for (const auto& k : tag_keys) {
    out.push_back(',');
    csv_field(out, std::string(billing::usage_tag_prefix) + k);
  }
  out.push_back('\n');
  return out;
}

void csv_row(std::string& out, const billing::usage_query& q, const billing::usage_row& r,
             std::optional<std::int64_t> cost_minor) {
  out += std::to_string(r.bucket_start_s) + "," +
         std::to_string(billing::usage_next_bucket(q, r.bucket_start_s)) + ",";
  for (const auto* v : {&r.tenant_id, &r.project_id, &r.api_key_id, &r.model}) {
    if (*v) csv_field(out, **v);
    out.push_back(',');
  }
  if (r.batch) out += *r.batch ? "true" : "false";
  out += "," + std::to_string(r.input_tokens) + "," + std::to_string(r.input_cached_tokens) + "," +
         std::to_string(r.output_tokens) + "," + std::to_string(r.output_reasoning_tokens) + "," +
         std::to_string(r.requests) + ",";
  for (const auto* v : {&r.end_user, &r.session_id}) {
    if (*v) csv_field(out, **v);
    out.push_back(',');
  }
  out += std::to_string(r.cost_micros) + ",";
  if (cost_minor) out += std::to_string(*cost_minor);
  out += "," + r.currency + "," + std::to_string(r.unrated_requests);
  for (const auto& t : r.tags) {
    out.push_back(',');
    if (t) csv_field(out, *t);
  }
  out.push_back('\n');
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

std::vector<std::optional<std::int64_t>> usage_cost_minor(
    const std::vector<billing::usage_row>& rows) {
  std::vector<std::optional<std::int64_t>> out(rows.size());
  // The rows of one bucket and currency, by index.
  std::map<std::pair<std::int64_t, std::string>, std::vector<std::size_t>> sets;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].currency.empty()) sets[{rows[i].bucket_start_s, rows[i].currency}].push_back(i);
  }
  for (const auto& [key, members] : sets) {
    std::vector<std::int64_t> micros;
    for (const std::size_t i : members) micros.push_back(rows[i].cost_micros);
    const auto minor = billing::to_minor_units(micros, billing::currency_minor_digits(key.second));
    for (std::size_t k = 0; k < members.size(); ++k) out[members[k]] = minor.amounts[k];
  }
  return out;
}

boost::asio::awaitable<void> send_usage_report(http::exchange& ex, const billing_context& billing,
                                               usage_request request, std::string request_id) {
  const report_view view{request.finance, grouped_tag_keys(request.query)};
  // The end of `n` buckets from `from`, within the range.
  const auto buckets_end = [&request](std::int64_t from, std::int64_t n) {
    std::int64_t at = from;
    for (std::int64_t i = 0; i < n && at < request.query.end_s; ++i) {
      at = billing::usage_next_bucket(request.query, at);
    }
    return std::min(at, request.query.end_s);
  };
  if (!request.csv) {
    billing::usage_query q = request.query;
    q.start_s = request.page_start_s;
    q.end_s = buckets_end(q.start_s, request.bucket_limit);
    auto op = billing.usage->usage(q);
    auto rows = co_await on_billing(billing, std::move(op));
    if (!rows) {
      co_await ex.send_error(from_db(rows.error()), request_id);
      co_return;
    }
    const auto minor = usage_cost_minor(*rows);
    std::map<std::int64_t, json_array_writer> results;  // by bucket start
    for (std::size_t i = 0; i < rows->size(); ++i) {
      results[(*rows)[i].bucket_start_s].add_raw(result_json(view, (*rows)[i], minor[i]));
    }
    json_array_writer data;
    for (std::int64_t b = q.start_s; b < q.end_s;) {
      const std::int64_t next = billing::usage_next_bucket(q, b);
      json_object_writer bucket;
      bucket.add("object", "bucket").add("start_time", b).add("end_time", next);
      const auto it = results.find(b);
      bucket.add_raw("results", it != results.end() ? it->second.finish() : "[]");
      data.add_raw(bucket.finish());
      b = next;
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
  std::string out = csv_header(view.tag_keys);
  for (std::int64_t at = request.page_start_s; at < request.query.end_s;) {
    billing::usage_query q = request.query;
    q.start_s = at;
    q.end_s = buckets_end(at, csv_window_buckets);
    at = q.end_s;
    auto op = billing.usage->usage(q);
    auto rows = co_await on_billing(billing, std::move(op));
    if (!rows) {
      ex.set_close_after();
      co_return;
    }
    const auto minor = usage_cost_minor(*rows);
    for (std::size_t i = 0; i < rows->size(); ++i) csv_row(out, q, (*rows)[i], minor[i]);
    if (!out.empty() && !co_await ex.send_chunk(out)) co_return;
    out.clear();
  }
  co_await ex.send_last_chunk();
}

}  // namespace tollgate::gateway
