// tollctl's admin and finance commands as a table, like the admin API's routes: each command and
// subcommand names the HTTP method and path it calls and a small function that turns its flags
// into the request's body or query. Commands print the API's JSON (--field NAME: one field).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "gateway/tollctl.hpp"
#include "metering/attribution.hpp"

namespace tollgate::tollctl {
namespace {

namespace bhttp = boost::beast::http;

// Percent-encodes a query value.
std::string url_encode(std::string_view v) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ',') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Percent-encodes a tag key for a `tag:<key>` parameter name, commas included (the API decodes
// the key once more than the query string).
std::string tag_key_encode(std::string_view key) {
  std::string out;
  for (const char c : key) {
    if (c == ',') {
      out += "%2C";
    } else {
      out += url_encode(std::string_view(&c, 1));
    }
  }
  return out;
}

// Prints an API answer: the whole JSON, or with `field` one top-level field of it (strings
// unquoted), for scripts. Exit status 0 for 2xx, 1 otherwise (the error body goes to stderr).
int print_api(const http_result& r, const std::string& field) {
  if (!r.error.empty()) {
    std::fprintf(stderr, "tollctl: %s\n", r.error.c_str());
    return 1;
  }
  const bool ok = r.status >= 200 && r.status < 300;
  if (!ok || field.empty()) {
    std::FILE* out = ok ? stdout : stderr;
    std::fwrite(r.body.data(), 1, r.body.size(), out);
    if (r.body.empty() || r.body.back() != '\n') std::fputc('\n', out);
    return ok ? 0 : 1;
  }
  const auto doc = json::document::parse(r.body);
  const auto v = doc ? doc->root().find(field) : json::value();
  if (!v.valid()) {
    std::fprintf(stderr, "tollctl: the answer has no field %s\n", field.c_str());
    return 1;
  }
  const std::string text = v.is_string() ? std::string(v.as_string()) : std::string(v.source());
  std::printf("%s\n", text.c_str());
  return 0;
}

// "a,b" as a JSON array of strings (an empty name between two commas stays an empty string).
std::string json_string_list(std::string_view names) {
  json_array_writer list;
  std::size_t at = 0;
  for (;;) {
    const auto comma = names.find(',', at);
    list.add(names.substr(at, comma == std::string_view::npos ? comma : comma - at));
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  return list.finish();
}

// A usage error: the message on stderr, exit status 2.
int fail(const char* message) {
  std::fprintf(stderr, "tollctl: %s\n", message);
  return 2;
}

// One admin or finance command being run: the arguments not read yet, and the request it makes.
struct api_call {
  std::string verb;  // the subcommand ("" for commands without one)
  std::vector<std::string> args;
  std::string id;      // {id} in the path: the positional argument
  std::string tenant;  // {tenant} in the path: --tenant, read before the subcommand
  json_object_writer body;
  std::string file_body;                // price books: --file's content
  std::optional<std::string> raw_body;  // sent instead of `body` (a price book file)
  std::string query;                    // "?name=value&..." after the path
  bool raw_csv = false;                 // a 200's body is printed as it is (usage --csv)

  std::string opt(const char* flag) { return flag_or_env(args, flag, "TOLLCTL_UNSET", ""); }
  bool has_opt(const char* flag) const {
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == flag) return true;
    }
    return false;
  }
  // The positional argument (the object's id) into `id`; false when there is none.
  bool take_id() {
    if (args.empty() || args[0].rfind("--", 0) == 0) return false;
    id = args[0];
    args.erase(args.begin());
    return true;
  }
  // An argument nobody read is an error (reported here).
  bool leftover() const {
    if (args.empty()) return false;
    std::fprintf(stderr, "tollctl: unexpected argument: %s\n", args[0].c_str());
    return true;
  }
  // The given flags as query parameters.
  void list_query(std::initializer_list<std::pair<const char*, const char*>> filters) {
    for (const auto& [flag, param] : filters) {
      const std::string v = opt(flag);
      if (!v.empty()) query += std::string(query.empty() ? "?" : "&") + param + "=" + url_encode(v);
    }
  }
  // disable and enable set the status; update leaves it.
  void status_of_verb() {
    if (verb != "update") body.add("status", verb == "disable" ? "disabled" : "active");
  }
};

// Reads a command's flags into the call: 0, or the exit status of a usage error.
using build_fn = int (*)(api_call& c);

// ---- the flags of each command ---------------------------------------------------------------

int nothing(api_call&) {
  return 0;
}
int id_only(api_call& c) {
  return c.take_id() ? 0 : usage();
}
int list_by_tenant(api_call& c) {
  c.list_query({{"--tenant", "tenant_id"}, {"--limit", "limit"}, {"--after", "after"}});
  return 0;
}
int list_pages(api_call& c) {
  c.list_query({{"--limit", "limit"}, {"--after", "after"}});
  return 0;
}
int list_limit(api_call& c) {
  c.list_query({{"--limit", "limit"}});
  return 0;
}

int create_tenant(api_call& c) {
  const std::string name = c.opt("--name");
  if (name.empty()) return fail("--name NAME is required");
  c.body.add("name", name);
  if (const auto z = c.opt("--time-zone"); !z.empty()) c.body.add("time_zone", z);
  return 0;
}

int update_tenant(api_call& c) {
  if (!c.take_id()) return usage();
  if (const auto name = c.opt("--name"); !name.empty()) c.body.add("name", name);
  if (const auto z = c.opt("--time-zone"); !z.empty()) c.body.add("time_zone", z);
  c.status_of_verb();
  return 0;
}

// --tags key=value,... as the body's default_tags (the API checks each tag's limits; "" clears
// them). Returns false after printing what is wrong with the list.
bool add_default_tags(api_call& c) {
  if (!c.has_opt("--tags")) return true;
  const std::string list = c.opt("--tags");
  if (list.empty()) {
    c.body.add_null("default_tags");
    return true;
  }
  auto tags = metering::tags_from_header(list);
  if (!tags.error.empty()) {
    fail(("--tags " + tags.error).c_str());
    return false;
  }
  metering::attribution a;
  a.tags = std::move(tags.tags);
  c.body.add_raw("default_tags", a.tags_json());
  return true;
}

int create_project(api_call& c) {
  const std::string name = c.opt("--name");
  const std::string tenant = c.opt("--tenant");
  if (tenant.empty()) return fail("--tenant ID is required");
  c.body.add("tenant_id", tenant);
  if (name.empty()) return fail("--name NAME is required");
  c.body.add("name", name);
  return add_default_tags(c) ? 0 : 1;
}

int update_project(api_call& c) {
  if (!c.take_id()) return usage();
  if (const auto name = c.opt("--name"); !name.empty()) c.body.add("name", name);
  c.status_of_verb();
  return add_default_tags(c) ? 0 : 1;
}

int create_key(api_call& c) {
  const std::string tenant = c.opt("--tenant");
  if (tenant.empty()) return fail("--tenant ID is required");
  c.body.add("tenant_id", tenant);
  if (const auto p = c.opt("--project"); !p.empty()) c.body.add("project_id", p);
  if (const auto n = c.opt("--name"); !n.empty()) c.body.add("name", n);
  if (const auto e = c.opt("--expires-at"); !e.empty()) c.body.add_raw("expires_at", e);
  if (const auto m = c.opt("--models"); !m.empty()) {
    c.body.add_raw("allowed_models", json_string_list(m));
  }
  return add_default_tags(c) ? 0 : 1;
}

int list_keys(api_call& c) {
  c.list_query({{"--tenant", "tenant_id"},
                {"--project", "project_id"},
                {"--limit", "limit"},
                {"--after", "after"}});
  return 0;
}

int update_key(api_call& c) {
  if (!c.take_id()) return usage();
  if (const auto n = c.opt("--name"); !n.empty()) c.body.add("name", n);
  if (const auto e = c.opt("--expires-at"); !e.empty()) c.body.add_raw("expires_at", e);
  return add_default_tags(c) ? 0 : 1;
}

int rotate_key(api_call& c) {
  if (!c.take_id()) return usage();
  if (const auto g = c.opt("--grace"); !g.empty()) c.body.add_raw("grace_seconds", g);
  return 0;
}

int create_budget(api_call& c) {
  const std::string tenant = c.opt("--tenant");
  const std::string limit = c.opt("--limit");
  if (tenant.empty() || limit.empty()) return fail("--tenant ID and --limit N are required");
  c.body.add("tenant_id", tenant);
  if (const auto v = c.opt("--scope"); !v.empty()) c.body.add("scope", v);
  if (const auto v = c.opt("--scope-id"); !v.empty()) c.body.add("scope_id", v);
  c.body.add("metric", c.opt("--metric"));
  c.body.add("window", c.opt("--window"));
  c.body.add_raw("limit", limit);
  if (const auto v = c.opt("--mode"); !v.empty()) c.body.add("mode", v);
  // The percents as given ("50,80,100"): the API checks them.
  if (const auto v = c.opt("--alert-thresholds"); !v.empty()) {
    c.body.add_raw("alert_thresholds", "[" + v + "]");
  }
  if (const auto v = c.opt("--alert-webhook-url"); !v.empty()) c.body.add("alert_webhook_url", v);
  if (const auto m = c.opt("--models"); !m.empty()) c.body.add_raw("models", json_string_list(m));
  if (const auto v = c.opt("--forecast-alerts"); !v.empty()) {
    c.body.add_raw("forecast_alert_thresholds", "[" + v + "]");
  }
  return 0;
}

int update_budget(api_call& c) {
  if (!c.take_id()) return usage();
  if (const auto v = c.opt("--limit"); !v.empty()) c.body.add_raw("limit", v);
  if (const auto v = c.opt("--mode"); !v.empty()) c.body.add("mode", v);
  if (const auto m = c.opt("--models"); m == "all") {
    c.body.add_null("models");
  } else if (!m.empty()) {
    c.body.add_raw("models", json_string_list(m));
  }
  if (const auto v = c.opt("--alert-thresholds"); !v.empty()) {
    c.body.add_raw("alert_thresholds", "[" + v + "]");
  }
  if (const auto v = c.opt("--forecast-alerts"); !v.empty()) {
    c.body.add_raw("forecast_alert_thresholds", "[" + v + "]");
  }
  if (const auto v = c.opt("--alert-webhook-url"); !v.empty()) {
    if (v == "none") {
      c.body.add_null("alert_webhook_url");
    } else {
      c.body.add("alert_webhook_url", v);
    }
  }
  c.status_of_verb();
  return 0;
}

int reconcile_budgets(api_call& c) {
  const std::string tenant = c.opt("--tenant");
  if (tenant.empty()) return fail("--tenant ID is required");
  c.body.add("tenant_id", tenant);
  return 0;
}

// A book or a version is a JSON file: the admin API's body (docs/PRICING.md).
int read_price_book_file(api_call& c) {
  if (const auto file = c.opt("--file"); !file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::fprintf(stderr, "tollctl: cannot read %s\n", file.c_str()), 1;
    c.file_body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return 0;
}

int create_price_book(api_call& c) {
  if (c.file_body.empty()) return fail("--file BOOK.json is required");
  c.raw_body = std::move(c.file_body);
  return 0;
}

int add_price_book_version(api_call& c) {
  if (!c.take_id()) return usage();
  if (c.file_body.empty()) return fail("--file VERSION.json is required");
  c.raw_body = std::move(c.file_body);
  return 0;
}

// plans and credits name their tenant before the subcommand is looked up (credits expire does
// not have one).
int need_tenant(api_call& c) {
  c.tenant = c.opt("--tenant");
  return c.tenant.empty() ? fail("--tenant ID is required") : 0;
}
int need_tenant_unless_expire(api_call& c) {
  return c.verb == "expire" ? 0 : need_tenant(c);
}

int set_plan(api_call& c) {
  const std::string book = c.opt("--price-book");
  if (book.empty()) return fail("--price-book ID is required");
  c.body.add("price_book_id", book);
  if (const auto v = c.opt("--batch-discount-bp"); !v.empty()) {
    c.body.add_raw("batch_discount_bp", v);
  }
  if (const auto v = c.opt("--settlement-mode"); !v.empty()) c.body.add("settlement_mode", v);
  for (const char* fee : {"base-fee-micros", "seat-fee-micros", "commitment-micros",
                          "included-usage-micros"}) {
    const std::string flag = std::string("--") + fee;
    if (const auto v = c.opt(flag.c_str()); !v.empty()) {
      std::string key(fee);
      for (char& ch : key) ch = ch == '-' ? '_' : ch;
      c.body.add_raw(key, v);
    }
  }
  // --allowances MODEL:CLASS:TOKENS[:ROLLOVER_PERIODS],... ("none": take them away); the
  // gateway checks them.
  if (const auto v = c.opt("--allowances"); v == "none") {
    c.body.add_raw("allowances", "[]");
  } else if (!v.empty()) {
    json_array_writer list;
    std::size_t start = 0;
    while (start <= v.size()) {
      const std::size_t comma = std::min(v.find(',', start), v.size());
      const std::string item = v.substr(start, comma - start);
      const std::size_t a = item.find(':');
      const std::size_t b = a == std::string::npos ? a : item.find(':', a + 1);
      if (b == std::string::npos) {
        return fail("--allowances takes MODEL:CLASS:TOKENS[:ROLLOVER_PERIODS],...");
      }
      const std::size_t r = item.find(':', b + 1);
      json_object_writer w;
      w.add("model", item.substr(0, a)).add("token_class", item.substr(a + 1, b - a - 1));
      w.add_raw("tokens", item.substr(b + 1, r == std::string::npos ? r : r - b - 1));
      if (r != std::string::npos) w.add_raw("rollover_periods", item.substr(r + 1));
      list.add_raw(w.finish());
      start = comma + 1;
    }
    c.body.add_raw("allowances", list.finish());
  }
  return 0;
}

int set_seats(api_call& c) {
  const std::string seats = c.opt("--seats");
  if (seats.empty()) return fail("--seats N is required");
  c.body.add_raw("seats", seats);
  if (const auto v = c.opt("--effective-at"); !v.empty()) c.body.add_raw("effective_at", v);
  return 0;
}

int expire_credits(api_call& c) {
  if (const auto v = c.opt("--at"); !v.empty()) c.body.add_raw("at", v);
  return 0;
}

// The credit_only mirror in Redis is a budget: rebuilt with the tenant's budgets.
int reconcile_credits(api_call& c) {
  c.body.add("tenant_id", c.tenant);
  return 0;
}

int grant_credit(api_call& c) {
  const std::string kind = c.opt("--kind");
  const std::string amount = c.opt("--amount-micros");
  if (kind.empty() || amount.empty()) {
    return fail("--kind purchased|promotional and --amount-micros N are required");
  }
  c.body.add("kind", kind);
  c.body.add_raw("amount_micros", amount);
  if (const auto v = c.opt("--price-paid-micros"); !v.empty()) {
    c.body.add_raw("price_paid_micros", v);
  }
  if (const auto v = c.opt("--effective-at"); !v.empty()) c.body.add_raw("effective_at", v);
  if (const auto v = c.opt("--expires-at"); !v.empty()) c.body.add_raw("expires_at", v);
  if (const auto v = c.opt("--priority"); !v.empty()) c.body.add_raw("priority", v);
  if (const auto v = c.opt("--models"); !v.empty()) c.body.add_raw("models", json_string_list(v));
  if (const auto v = c.opt("--memo"); !v.empty()) c.body.add("memo", v);
  if (const auto v = c.opt("--id"); !v.empty()) c.body.add("id", v);
  return 0;
}

int grant_bundle(api_call& c) {
  const std::string model = c.opt("--model");
  const std::string token_class = c.opt("--token-class");
  const std::string tokens = c.opt("--tokens");
  const std::string price = c.opt("--price-per-million-micros");
  if (model.empty() || token_class.empty() || tokens.empty() || price.empty()) {
    return fail("--model M, --token-class C, --tokens N and --price-per-million-micros P are "
                "required");
  }
  c.body.add("model", model);
  c.body.add("token_class", token_class);
  c.body.add_raw("tokens", tokens);
  c.body.add_raw("price_per_million_micros", price);
  if (const auto v = c.opt("--effective-at"); !v.empty()) c.body.add_raw("effective_at", v);
  if (const auto v = c.opt("--expires-at"); !v.empty()) c.body.add_raw("expires_at", v);
  if (const auto v = c.opt("--priority"); !v.empty()) c.body.add_raw("priority", v);
  if (const auto v = c.opt("--memo"); !v.empty()) c.body.add("memo", v);
  if (const auto v = c.opt("--id"); !v.empty()) c.body.add("id", v);
  if (const auto v = c.opt("--projects"); !v.empty()) {
    c.body.add_raw("project_ids", json_string_list(v));
  }
  return 0;
}

int set_auto_top_up(api_call& c) {
  const std::string threshold = c.opt("--threshold-micros");
  const std::string amount = c.opt("--amount-micros");
  const std::string paid = c.opt("--price-paid-micros");
  if (threshold.empty() || amount.empty() || paid.empty()) {
    return fail("--threshold-micros N, --amount-micros N and --price-paid-micros N are required");
  }
  c.body.add_raw("threshold_micros", threshold);
  c.body.add_raw("amount_micros", amount);
  c.body.add_raw("price_paid_micros", paid);
  if (const auto v = c.opt("--webhook-url"); !v.empty()) c.body.add("webhook_url", v);
  return 0;
}

int cost_preview(api_call& c) {
  const std::string tenant = c.opt("--tenant");
  if (tenant.empty()) return fail("--tenant ID is required");
  c.query = "?tenant_id=" + tenant;
  if (const auto p = c.opt("--period"); !p.empty()) c.query += "&period=" + p;
  return 0;
}

int run_invoices(api_call& c) {
  const std::string period = c.opt("--period");
  if (period.empty()) return fail("--period YYYY-MM is required");
  c.body.add("period", period);
  if (const auto t = c.opt("--tenant"); !t.empty()) c.body.add("tenant_id", t);
  if (take_flag(c.args, "--finalize")) c.body.add("finalize", true);
  return 0;
}

int list_invoices(api_call& c) {
  c.list_query({{"--tenant", "tenant_id"},
                {"--period", "period"},
                {"--limit", "limit"},
                {"--after", "after"}});
  return 0;
}

int get_invoice(api_call& c) {
  const bool csv = take_flag(c.args, "--csv");
  if (!c.take_id()) return usage();
  if (csv) c.query = "?format=csv";
  return 0;
}

// usage and events: filters as query parameters; with --csv the CSV is printed as it comes.
// --tag KEY=VALUE (repeatable) filters on a tag.
int usage_query(api_call& c) {
  c.list_query({{"--start", "start_time"},
                {"--end", "end_time"},
                {"--bucket", "bucket_width"},
                {"--group-by", "group_by"},
                {"--tenant", "tenant_id"},
                {"--project", "project_id"},
                {"--key", "api_key_id"},
                {"--model", "model"},
                {"--end-user", "end_user"},
                {"--session", "session_id"},
                {"--order", "order"},
                {"--group-limit", "group_limit"},
                {"--limit", "limit"},
                {"--page", "page"},
                {"--after", "after"}});
  while (c.has_opt("--tag")) {
    const std::string tag = c.opt("--tag");
    const auto eq = tag.find('=');
    if (eq == std::string::npos || eq == 0) return fail("--tag takes KEY=VALUE");
    c.query += std::string(c.query.empty() ? "?" : "&") +
               url_encode("tag:" + tag_key_encode(tag.substr(0, eq))) + "=" +
               url_encode(tag.substr(eq + 1));
  }
  c.raw_csv = take_flag(c.args, "--csv");
  if (c.raw_csv) c.query += c.query.empty() ? "?format=csv" : "&format=csv";
  return 0;
}

// ---- the tables ------------------------------------------------------------------------------

// A command: which token it takes, whether a subcommand follows, and what it reads before the
// subcommand is looked up.
struct api_group {
  std::string_view command;
  bool finance;   // the finance token (the admin token when none is given)
  bool has_verb;  // the next argument is a subcommand
  build_fn prepare;
};

const api_group groups[] = {
    {"tenants", false, true, nothing},
    {"projects", false, true, nothing},
    {"keys", false, true, nothing},
    {"budgets", false, true, nothing},
    {"price-books", false, true, read_price_book_file},
    {"plans", false, true, need_tenant},
    {"seats", false, true, need_tenant},
    {"credits", false, true, need_tenant_unless_expire},
    {"costs", true, true, nothing},
    {"invoices", false, true, nothing},
    {"batches", false, true, nothing},
    {"audit", false, false, nothing},
    {"usage", true, false, nothing},
    {"events", true, false, nothing},
};

// A subcommand: the request it makes and how its flags become that request. {id} in the path is
// the positional argument, {tenant} the --tenant read by the command's `prepare`.
struct api_subcommand {
  std::string_view command;
  std::string_view verb;  // "" for commands without a subcommand
  bhttp::verb method;
  std::string_view path;
  build_fn build;
  bool bare = false;  // takes only the id: an extra argument also prints the usage
};

constexpr bhttp::verb get = bhttp::verb::get;
constexpr bhttp::verb post = bhttp::verb::post;
const api_subcommand commands[] = {
    {"tenants", "create", post, "/admin/v1/tenants", create_tenant},
    {"tenants", "list", get, "/admin/v1/tenants", list_by_tenant},
    {"tenants", "get", get, "/admin/v1/tenants/{id}", id_only, true},
    {"tenants", "update", post, "/admin/v1/tenants/{id}", update_tenant},
    {"tenants", "disable", post, "/admin/v1/tenants/{id}", update_tenant},
    {"tenants", "enable", post, "/admin/v1/tenants/{id}", update_tenant},
    {"projects", "create", post, "/admin/v1/projects", create_project},
    {"projects", "list", get, "/admin/v1/projects", list_by_tenant},
    {"projects", "get", get, "/admin/v1/projects/{id}", id_only, true},
    {"projects", "update", post, "/admin/v1/projects/{id}", update_project},
    {"projects", "disable", post, "/admin/v1/projects/{id}", update_project},
    {"projects", "enable", post, "/admin/v1/projects/{id}", update_project},
    {"keys", "create", post, "/admin/v1/keys", create_key},
    {"keys", "list", get, "/admin/v1/keys", list_keys},
    {"keys", "get", get, "/admin/v1/keys/{id}", id_only, true},
    {"keys", "revoke", post, "/admin/v1/keys/{id}/revoke", id_only, true},
    {"keys", "rotate", post, "/admin/v1/keys/{id}/rotate", rotate_key},
    {"keys", "update", post, "/admin/v1/keys/{id}", update_key},
    {"budgets", "create", post, "/admin/v1/budgets", create_budget},
    {"budgets", "list", get, "/admin/v1/budgets", list_by_tenant},
    {"budgets", "reconcile", post, "/admin/v1/budgets/reconcile", reconcile_budgets},
    {"budgets", "get", get, "/admin/v1/budgets/{id}", id_only, true},
    {"budgets", "alerts", get, "/admin/v1/budgets/{id}/alerts", id_only, true},
    {"budgets", "update", post, "/admin/v1/budgets/{id}", update_budget},
    {"budgets", "disable", post, "/admin/v1/budgets/{id}", update_budget},
    {"budgets", "enable", post, "/admin/v1/budgets/{id}", update_budget},
    {"price-books", "create", post, "/admin/v1/price_books", create_price_book},
    {"price-books", "list", get, "/admin/v1/price_books", list_pages},
    {"price-books", "get", get, "/admin/v1/price_books/{id}", id_only, true},
    {"price-books", "add-version", post, "/admin/v1/price_books/{id}/versions",
     add_price_book_version},
    {"plans", "get", get, "/admin/v1/tenants/{tenant}/plan", nothing},
    {"plans", "set", post, "/admin/v1/tenants/{tenant}/plan", set_plan},
    {"seats", "get", get, "/admin/v1/tenants/{tenant}/seats", nothing},
    {"seats", "set", post, "/admin/v1/tenants/{tenant}/seats", set_seats},
    {"credits", "expire", post, "/admin/v1/credits/expire", expire_credits},
    {"credits", "reconcile", post, "/admin/v1/budgets/reconcile", reconcile_credits},
    {"credits", "grant", post, "/admin/v1/tenants/{tenant}/credit_grants", grant_credit},
    {"credits", "bundle", post, "/admin/v1/tenants/{tenant}/token_bundles", grant_bundle},
    {"credits", "auto-top-up", post, "/admin/v1/tenants/{tenant}/auto_top_up", set_auto_top_up},
    {"credits", "balance", get, "/admin/v1/tenants/{tenant}/credits", list_limit},
    {"credits", "transfers", get, "/admin/v1/tenants/{tenant}/credit_transfers", list_limit},
    {"costs", "preview", get, "/finance/v1/cost_preview", cost_preview},
    {"invoices", "run", post, "/admin/v1/invoices/run", run_invoices},
    {"invoices", "list", get, "/finance/v1/invoices", list_invoices},
    {"invoices", "get", get, "/finance/v1/invoices/{id}", get_invoice, true},
    {"batches", "list", get, "/admin/v1/batches", list_by_tenant},
    {"batches", "get", get, "/admin/v1/batches/{id}", id_only, true},
    {"audit", "", get, "/admin/v1/audit_log", list_by_tenant},
    {"usage", "", get, "/finance/v1/usage", usage_query},
    {"events", "", get, "/finance/v1/usage_events", usage_query},
};

const api_group* find_group(std::string_view command) {
  for (const api_group& g : groups) {
    if (g.command == command) return &g;
  }
  return nullptr;
}

const api_subcommand* find_command(std::string_view command, std::string_view verb) {
  for (const api_subcommand& c : commands) {
    if (c.command == command && c.verb == verb) return &c;
  }
  return nullptr;
}

// The path with {id} and {tenant} filled in.
std::string path_of(std::string_view pattern, const api_call& c) {
  std::string path(pattern);
  for (const auto& [name, value] : {std::pair{"{id}", &c.id}, std::pair{"{tenant}", &c.tenant}}) {
    if (const auto at = path.find(name); at != std::string::npos) {
      path.replace(at, std::string_view(name).size(), *value);
    }
  }
  return path;
}

}  // namespace

bool is_api_command(std::string_view command) {
  return find_group(command) != nullptr;
}

int api_command(const std::string& command, std::vector<std::string> args) {
  const api_group& group = *find_group(command);
  const std::string url =
      flag_or_env(args, "--admin-url", "TOLLGATE_ADMIN_URL", "http://127.0.0.1:8081");
  // Finance commands take the finance token (or the admin token, which may read too).
  std::string token = flag_or_env(
      args, "--token", group.finance ? "TOLLGATE_FINANCE_TOKEN" : "TOLLGATE_ADMIN_TOKEN", "");
  if (token.empty() && group.finance) {
    token = flag_or_env(args, "--token", "TOLLGATE_ADMIN_TOKEN", "");
  }
  const std::string field = flag_or_env(args, "--field", "TOLLCTL_UNSET_FIELD", "");
  api_call call;
  call.args = std::move(args);
  if (group.has_verb && !call.args.empty()) {
    call.verb = call.args[0];
    call.args.erase(call.args.begin());
  }
  if (const int status = group.prepare(call)) return status;
  const api_subcommand* cmd = find_command(command, call.verb);
  if (cmd == nullptr) return usage();
  if (const int status = cmd->build(call)) return status;
  if (call.leftover()) return cmd->bare ? usage() : 2;
  const auto r = http_call(cmd->method, url, path_of(cmd->path, call) + call.query,
                           call.raw_body.value_or(call.body.finish()), token);
  if (call.raw_csv && r.error.empty() && r.status == 200) {
    std::fwrite(r.body.data(), 1, r.body.size(), stdout);
    return 0;
  }
  return print_api(r, field);
}

}  // namespace tollgate::tollctl
