// Usage report parameters: see usage_params.hpp.
#include "gateway/usage_params.hpp"

#include <algorithm>
#include <charconv>

#include "metering/attribution.hpp"

namespace tollgate::gateway {
namespace {

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
  std::int64_t seconds;  // 0: calendar months
  int default_limit;
  int max_limit;
};
// OpenAI's bucket widths and their page sizes, and UTC calendar months.
constexpr width_rule width_rules[] = {
    {"1m", 60, 60, 1440}, {"1h", 3600, 24, 168}, {"1d", 86400, 7, 31}, {"1mo", 0, 1, 12}};

api_error bad(std::string message, std::string param) {
  return invalid_request(std::move(message), std::move(param), "invalid_value");
}

// The key of a `tag:<key>` name (percent-decoded, checked), an empty optional when `name` is not
// a tag name, or the 400 naming `param`.
result<std::optional<std::string>> tag_key_of(std::string_view name, const std::string& param) {
  if (!name.starts_with(billing::usage_tag_prefix)) return std::optional<std::string>{};
  const auto key = query_params::decode(name.substr(billing::usage_tag_prefix.size()), false);
  if (!key) {
    return bad(param + " has a tag key with a bad percent-escape: `" + std::string(name) + "`.",
               param);
  }
  if (const auto why = metering::check_tag(*key, "")) {
    return bad(param + " `" + std::string(name) + "` " + *why + ".", param);
  }
  return std::optional<std::string>{*key};
}

// The range, bucket width, page size and format.
std::optional<api_error> read_range(const query_params& q, std::int64_t now_s, usage_request& r,
                                    const width_rule*& rule) {
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
  if (r.query.end_s <= r.query.start_s) return bad("start_time must be in the past.", "start_time");
  rule = &width_rules[2];
  if (const auto w = q.get("bucket_width")) {
    rule = nullptr;
    for (const auto& wr : width_rules) {
      if (*w == wr.name) rule = &wr;
    }
    if (rule == nullptr) return bad("bucket_width must be 1m, 1h, 1d or 1mo.", "bucket_width");
  }
  if (const auto f = q.get("format")) {
    if (*f != "json" && *f != "csv") return bad("format must be json or csv.", "format");
    r.csv = *f == "csv";
  }
  r.query.monthly = rule->seconds == 0;
  r.query.bucket_s = r.query.monthly ? 86400 : rule->seconds;
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
  return std::nullopt;
}

// group_by: each dimension once, in the order given.
std::optional<api_error> read_group_by(const query_params& q, bool finance, usage_request& r) {
  for (auto g : q.list("group_by")) {
    auto key = tag_key_of(g, "group_by");
    if (!key) return key.error();
    if (*key) {
      g = std::string(billing::usage_tag_prefix) + **key;
    } else if (g == "session") {
      g = "session_id";
    } else if (g != "project_id" && g != "api_key_id" && g != "model" && g != "batch" &&
               g != "end_user" && g != "session_id" && !(finance && g == "tenant_id")) {
      return bad("group_by accepts " + std::string(finance ? "tenant_id, " : "") +
                     "project_id, api_key_id, model, batch, end_user, session_id and "
                     "tag:<key>; got `" +
                     g + "`.",
                 "group_by");
    }
    auto& groups = r.query.group_by;
    if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
  }
  return std::nullopt;
}

// The filters, tag:<key>=<value> included.
std::optional<api_error> read_filters(const query_params& q, bool finance, usage_request& r) {
  auto filter = [&](const char* name, std::optional<std::string>& into) {
    if (auto v = q.get(name)) into = std::move(*v);
  };
  if (finance) filter("tenant_id", r.query.tenant_id);
  filter("project_id", r.query.project_id);
  filter("api_key_id", r.query.api_key_id);
  filter("model", r.query.model);
  filter("end_user", r.query.end_user);
  filter("session", r.query.session_id);
  filter("session_id", r.query.session_id);
  if (const auto b = q.get("batch")) {
    if (*b != "true" && *b != "false") return bad("batch must be true or false.", "batch");
    r.query.batch = *b == "true";
  }
  for (const auto& [name, value] : q.all()) {
    auto key = tag_key_of(name, name);
    if (!key) return key.error();
    if (!*key) continue;
    if (const auto why = metering::check_tag(**key, value)) {
      return bad(name + " " + *why + ".", name);
    }
    auto& tags = r.query.tag_filters;
    std::erase_if(tags, [&](const auto& t) { return t.first == **key; });  // the last one wins
    tags.emplace_back(**key, value);
  }
  return std::nullopt;
}

// order and group_limit.
std::optional<api_error> read_order(const query_params& q, usage_request& r) {
  if (const auto o = q.get("order")) {
    if (*o == "cost_desc") {
      r.query.order = billing::usage_order::cost_desc;
    } else if (*o == "tokens_desc") {
      r.query.order = billing::usage_order::tokens_desc;
    } else if (*o == "requests_desc") {
      r.query.order = billing::usage_order::requests_desc;
    } else {
      return bad("order must be cost_desc, tokens_desc or requests_desc.", "order");
    }
  }
  if (const auto l = q.get("group_limit")) {
    const auto v = parse_int(*l);
    if (!v || *v < 1 || *v > usage_group_limit_max) {
      return bad("group_limit must be between 1 and " + std::to_string(usage_group_limit_max) + ".",
                 "group_limit");
    }
    r.query.group_limit = static_cast<int>(*v);
  }
  return std::nullopt;
}

// The whole range in buckets (the last one may be partial), counted up to `max` + 1.
std::int64_t range_buckets(const billing::usage_query& q, std::int64_t max) {
  if (!q.monthly) return (q.end_s - q.start_s + q.bucket_s - 1) / q.bucket_s;
  std::int64_t n = 0;
  for (std::int64_t b = q.start_s; b < q.end_s && n <= max; b = billing::usage_next_bucket(q, b)) {
    ++n;
  }
  return n;
}

}  // namespace

result<usage_request> parse_usage_request(const query_params& q, bool finance, std::int64_t now_s,
                                          const usage_limits& limits) {
  usage_request r;
  r.finance = finance;
  const width_rule* rule = nullptr;
  if (auto e = read_range(q, now_s, r, rule)) return *e;
  if (auto e = read_group_by(q, finance, r)) return *e;
  if (auto e = read_filters(q, finance, r)) return *e;
  if (auto e = read_order(q, r)) return *e;
  const std::int64_t range_max =
      r.csv ? limits.csv_range_buckets_max : limits.json_range_buckets_max;
  const std::int64_t buckets = range_buckets(r.query, range_max);
  if (buckets > range_max) {
    return bad(
        "The range from start_time to end_time spans " +
            (r.query.monthly ? "more than " + std::to_string(range_max) : std::to_string(buckets)) +
            " buckets of " + rule->name + "; at most " + std::to_string(range_max) +
            " are allowed per query" + (r.csv ? " for CSV" : "") +
            ". Narrow the range or use a wider bucket_width.",
        "end_time");
  }
  r.page_start_s = r.query.start_s;
  if (const auto p = q.get("page")) {
    const auto v = parse_int(*p);
    if (!v || *v < r.query.start_s || *v >= r.query.end_s ||
        billing::usage_bucket_of(r.query, *v) != *v) {
      return bad("page is not a cursor from this query's next_page.", "page");
    }
    r.page_start_s = *v;
  }
  return r;
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
