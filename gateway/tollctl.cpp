// tollctl: the operator CLI. Talks to a running gateway over HTTP (URLs from flags or the
// environment that `make up` writes to .run/env) and checks configuration files offline.
//   tollctl health   [--admin-url URL]   liveness and readiness
//   tollctl metrics  [--admin-url URL]   the Prometheus metrics text
//   tollctl models   [--url URL]         the models the gateway serves
//   tollctl config check [FILE]          validate a configuration (env overrides applied)
//   tollctl tokenize (--encoding NAME | --tokenizer FILE) [--chat FORMAT] [--ids | --jsonl]
//                                        count (or list) the tokens of stdin, offline; with
//                                        --chat, stdin is a chat request body
//   tollctl tenants|projects|keys|budgets|audit ...   the admin API (admin token)
//   tollctl usage|events ...                  the finance API (finance or admin token)
// Admin and finance commands print the API's JSON; --field NAME prints one top-level field.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "metering/prompt_count.hpp"
#include "metering/tokenizer_registry.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

struct http_result {
  unsigned status = 0;
  std::string body;
  std::string error;  // transport error, empty on success
};

// One HTTP request to base_url + path, synchronously, with a 10 s timeout.
http_result http_call(bhttp::verb method, const std::string& base_url, const std::string& path,
                      const std::string& body = {}, const std::string& token = {}) {
  http_result r;
  constexpr std::string_view scheme = "http://";
  if (base_url.rfind(scheme, 0) != 0) {
    r.error = "URL must start with http://: " + base_url;
    return r;
  }
  std::string rest = base_url.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  const std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  tollgate::listen_address addr;
  if (!tollgate::parse_listen_address(authority, addr)) {
    addr.host = authority;
    addr.port = 80;
  }
  try {
    net::io_context ioc;
    net::ip::tcp::resolver resolver{ioc};
    beast::tcp_stream stream{ioc};
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(resolver.resolve(addr.host, std::to_string(addr.port)));
    bhttp::request<bhttp::string_body> req{method, prefix + path, 11};
    req.set(bhttp::field::host, authority);
    req.set(bhttp::field::user_agent, "tollctl");
    if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
    if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') {
      req.set("x-tollgate-actor", std::string("tollctl.") + user);
    }
    if (method == bhttp::verb::post) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);
    r.status = res.result_int();
    r.body = std::move(res.body());
  } catch (const std::exception& e) {
    r.error = std::string("cannot reach ") + base_url + ": " + e.what();
  }
  return r;
}

http_result http_get(const std::string& base_url, const std::string& path) {
  return http_call(bhttp::verb::get, base_url, path);
}

std::string flag_or_env(std::vector<std::string>& args, const char* flag, const char* env,
                        const char* fallback) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) {
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return v;
    }
  }
  const char* e = std::getenv(env);
  return e != nullptr && *e != '\0' ? e : fallback;
}

int print_result(const http_result& r) {
  if (!r.error.empty()) {
    std::fprintf(stderr, "tollctl: %s\n", r.error.c_str());
    return 1;
  }
  std::fwrite(r.body.data(), 1, r.body.size(), stdout);
  if (r.body.empty() || r.body.back() != '\n') std::fputc('\n', stdout);
  return r.status >= 200 && r.status < 300 ? 0 : 1;
}

bool take_flag(std::vector<std::string>& args, const char* flag) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == flag) {
      args.erase(it);
      return true;
    }
  }
  return false;
}

void print_ids(const std::vector<tollgate::metering::token_id>& ids) {
  std::string line = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ',';
    line += std::to_string(ids[i]);
  }
  line += "]\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// tollctl tokenize: stdin as one text (count, or --ids), or --jsonl: one JSON string per line in,
// one JSON array of ids per line out (used by the parity tests). With --chat FORMAT the input is
// a chat request body ({"messages": [...], "tools": ...}), or one per line with --jsonl: the
// count is the prompt count the gateway records; --ids lists the rendered template's ids
// (llama3, chatml).
int usage();

int tokenize(std::vector<std::string> args) {
  using namespace tollgate::metering;
  const bool ids = take_flag(args, "--ids");
  const bool jsonl = take_flag(args, "--jsonl");
  const std::string chat = flag_or_env(args, "--chat", "TOLLCTL_UNSET_CHAT", "");
  const std::string encoding = flag_or_env(args, "--encoding", "TOLLCTL_UNSET_ENCODING", "");
  const std::string file = flag_or_env(args, "--tokenizer", "TOLLCTL_UNSET_TOKENIZER", "");
  const std::string dir = flag_or_env(args, "--data-dir", "TOLLGATE_TOKENIZER_DIR",
                                      tollgate::metering::default_tokenizer_dir().c_str());
  if (encoding.empty() == file.empty() || !args.empty()) {
    std::fprintf(stderr, "tollctl: tokenize needs exactly one of --encoding NAME or --tokenizer FILE\n");
    return 2;
  }
  tollgate::metering::tokenizer_registry registry(dir);
  const auto tok = registry.get(encoding.empty() ? file : encoding);
  if (!tok) {
    std::fprintf(stderr, "tollctl: %s\n", tok.error().message.c_str());
    return 1;
  }
  std::optional<prompt_counter> counter;
  if (!chat.empty()) {
    const auto format = parse_prompt_format(chat);
    auto made = format ? prompt_counter::make(*tok, *format)
                       : tollgate::result<prompt_counter>(tollgate::internal_error(
                             "unknown chat format '" + chat + "' (openai, llama3, chatml)"));
    if (!made) {
      std::fprintf(stderr, "tollctl: %s\n", made.error().message.c_str());
      return 1;
    }
    if (ids && *format == prompt_format::openai) {
      std::fprintf(stderr, "tollctl: the openai format has a count but no published rendering\n");
      return 2;
    }
    counter.emplace(std::move(*made));
  }
  // One chat request: the count, or the rendered ids.
  const auto chat_request = [&](std::string_view body, bool as_list) {
    const auto doc = tollgate::json::document::parse(body);
    if (!doc || !doc->root().is_object() || !doc->root().find("messages").valid() ||
        !doc->root().find("messages").is_array()) {
      std::fprintf(stderr, "tollctl: the input is not a chat request body with \"messages\"\n");
      return false;
    }
    if (as_list) {
      std::vector<token_id> rendered;
      counter->render_chat(doc->root().find("messages"), rendered);
      print_ids(rendered);
    } else {
      std::printf("%lld\n", static_cast<long long>(counter->count_chat(doc->root())));
    }
    return true;
  };

  std::string input;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, stdin)) > 0;) input.append(buf, n);
  if (counter && !jsonl) return chat_request(input, ids) ? 0 : 1;
  if (!jsonl) {
    if (ids) {
      print_ids((*tok)->encode(input));
    } else {
      std::printf("%zu\n", (*tok)->count(input));
    }
    return 0;
  }
  std::size_t line_no = 0;
  for (std::size_t at = 0; at < input.size();) {
    std::size_t nl = input.find('\n', at);
    if (nl == std::string::npos) nl = input.size();
    const std::string_view line(input.data() + at, nl - at);
    at = nl + 1;
    ++line_no;
    if (line.empty()) continue;
    if (counter) {
      if (!chat_request(line, ids)) return 1;
      continue;
    }
    const auto doc = tollgate::json::document::parse(line);
    if (!doc || !doc->root().is_string()) {
      std::fprintf(stderr, "tollctl: stdin line %zu is not a JSON string\n", line_no);
      return 1;
    }
    print_ids((*tok)->encode(doc->root().as_string()));
  }
  return 0;
}

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
  const auto doc = tollgate::json::document::parse(r.body);
  const auto v = doc ? doc->root().find(field) : tollgate::json::value();
  if (!v.valid()) {
    std::fprintf(stderr, "tollctl: the answer has no field %s\n", field.c_str());
    return 1;
  }
  const std::string text = v.is_string() ? std::string(v.as_string()) : std::string(v.source());
  std::printf("%s\n", text.c_str());
  return 0;
}

// tollctl tenants|projects|keys|budgets|price-books|plans|credits|batches|audit|usage|events|costs:
// the admin and finance APIs.
int admin_command(const std::string& command, std::vector<std::string> args) {
  const std::string url =
      flag_or_env(args, "--admin-url", "TOLLGATE_ADMIN_URL", "http://127.0.0.1:8081");
  // Finance commands take the finance token (or the admin token, which may read too).
  const bool finance = command == "usage" || command == "events" || command == "costs";
  std::string token = flag_or_env(args, "--token", finance ? "TOLLGATE_FINANCE_TOKEN"
                                                           : "TOLLGATE_ADMIN_TOKEN", "");
  if (token.empty() && finance) token = flag_or_env(args, "--token", "TOLLGATE_ADMIN_TOKEN", "");
  const std::string field = flag_or_env(args, "--field", "TOLLCTL_UNSET_FIELD", "");
  const std::string verb = args.empty() ? "" : args[0];
  if (!args.empty() && ((!finance && command != "audit") || command == "costs")) {
    args.erase(args.begin());
  }
  auto opt = [&](const char* flag) { return flag_or_env(args, flag, "TOLLCTL_UNSET", ""); };
  auto positional = [&]() -> std::string {
    if (args.empty() || args[0].rfind("--", 0) == 0) return "";
    std::string v = args[0];
    args.erase(args.begin());
    return v;
  };
  auto leftover = [&]() {
    if (args.empty()) return false;
    std::fprintf(stderr, "tollctl: unexpected argument: %s\n", args[0].c_str());
    return true;
  };
  auto list_query = [&](std::initializer_list<std::pair<const char*, const char*>> filters) {
    std::string q;
    for (const auto& [flag, param] : filters) {
      const std::string v = opt(flag);
      if (!v.empty()) q += std::string(q.empty() ? "?" : "&") + param + "=" + url_encode(v);
    }
    return q;
  };
  using bhttp::verb;
  tollgate::json_object_writer body;

  if (command == "tenants" || command == "projects") {
    const std::string base = "/admin/v1/" + command;
    if (verb == "create") {
      const std::string name = opt("--name");
      std::string path = base;
      if (command == "projects") {
        const std::string tenant = opt("--tenant");
        if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
        body.add("tenant_id", tenant);
      }
      if (name.empty()) return std::fprintf(stderr, "tollctl: --name NAME is required\n"), 2;
      body.add("name", name);
      if (command == "tenants") {
        if (const auto z = opt("--time-zone"); !z.empty()) body.add("time_zone", z);
      }
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, path, body.finish(), token), field);
    }
    if (verb == "list") {
      const std::string q = list_query({{"--tenant", "tenant_id"}, {"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, base + q, {}, token), field);
    }
    const std::string id = positional();
    if (verb == "get" && !id.empty() && !leftover()) {
      return print_api(http_call(verb::get, url, base + "/" + id, {}, token), field);
    }
    if ((verb == "update" || verb == "disable" || verb == "enable") && !id.empty()) {
      const std::string name = opt("--name");
      if (!name.empty()) body.add("name", name);
      if (command == "tenants") {
        if (const auto z = opt("--time-zone"); !z.empty()) body.add("time_zone", z);
      }
      if (verb != "update") body.add("status", verb == "disable" ? "disabled" : "active");
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, base + "/" + id, body.finish(), token), field);
    }
    return usage();
  }
  if (command == "keys") {
    if (verb == "create") {
      const std::string tenant = opt("--tenant");
      if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
      body.add("tenant_id", tenant);
      if (const auto p = opt("--project"); !p.empty()) body.add("project_id", p);
      if (const auto n = opt("--name"); !n.empty()) body.add("name", n);
      if (const auto e = opt("--expires-at"); !e.empty()) body.add_raw("expires_at", e);
      if (const auto m = opt("--models"); !m.empty()) {
        std::string list = "[";
        std::size_t at = 0;
        while (at <= m.size()) {
          const auto comma = m.find(',', at);
          tollgate::json_object_writer one;
          one.add("m", m.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
          const std::string obj = one.finish();  // {"m":"..."}: take the quoted string out
          if (list.size() > 1) list += ',';
          list += obj.substr(5, obj.size() - 6);
          if (comma == std::string::npos) break;
          at = comma + 1;
        }
        body.add_raw("allowed_models", list + "]");
      }
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/keys", body.finish(), token), field);
    }
    if (verb == "list") {
      const std::string q = list_query({{"--tenant", "tenant_id"}, {"--project", "project_id"},
                                        {"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/admin/v1/keys" + q, {}, token), field);
    }
    const std::string id = positional();
    if (id.empty()) return usage();
    if (verb == "get" && !leftover()) {
      return print_api(http_call(verb::get, url, "/admin/v1/keys/" + id, {}, token), field);
    }
    if (verb == "revoke" && !leftover()) {
      return print_api(http_call(verb::post, url, "/admin/v1/keys/" + id + "/revoke", "{}", token),
                       field);
    }
    if (verb == "rotate") {
      if (const auto g = opt("--grace"); !g.empty()) body.add_raw("grace_seconds", g);
      if (leftover()) return 2;
      return print_api(
          http_call(verb::post, url, "/admin/v1/keys/" + id + "/rotate", body.finish(), token),
          field);
    }
    if (verb == "update") {
      if (const auto n = opt("--name"); !n.empty()) body.add("name", n);
      if (const auto e = opt("--expires-at"); !e.empty()) body.add_raw("expires_at", e);
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/keys/" + id, body.finish(), token),
                       field);
    }
    return usage();
  }
  if (command == "price-books") {
    // A book or a version is a JSON file: the admin API's body (docs/PRICING.md).
    std::string file_body;
    if (const auto file = opt("--file"); !file.empty()) {
      std::ifstream in(file, std::ios::binary);
      if (!in) return std::fprintf(stderr, "tollctl: cannot read %s\n", file.c_str()), 1;
      file_body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (verb == "create") {
      if (file_body.empty()) return std::fprintf(stderr, "tollctl: --file BOOK.json is required\n"), 2;
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/price_books", file_body, token), field);
    }
    if (verb == "list") {
      const std::string q = list_query({{"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/admin/v1/price_books" + q, {}, token), field);
    }
    const std::string id = positional();
    if (id.empty()) return usage();
    if (verb == "get" && !leftover()) {
      return print_api(http_call(verb::get, url, "/admin/v1/price_books/" + id, {}, token), field);
    }
    if (verb == "add-version") {
      if (file_body.empty()) return std::fprintf(stderr, "tollctl: --file VERSION.json is required\n"), 2;
      if (leftover()) return 2;
      return print_api(
          http_call(verb::post, url, "/admin/v1/price_books/" + id + "/versions", file_body, token),
          field);
    }
    return usage();
  }
  if (command == "invoices") {
    if (verb == "run") {
      const std::string period = opt("--period");
      if (period.empty()) return std::fprintf(stderr, "tollctl: --period YYYY-MM is required\n"), 2;
      body.add("period", period);
      if (const auto t = opt("--tenant"); !t.empty()) body.add("tenant_id", t);
      if (take_flag(args, "--finalize")) body.add("finalize", true);
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/invoices/run", body.finish(), token),
                       field);
    }
    if (verb == "list") {
      const std::string q = list_query({{"--tenant", "tenant_id"}, {"--period", "period"},
                                        {"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/finance/v1/invoices" + q, {}, token), field);
    }
    if (verb == "get") {
      const bool csv = take_flag(args, "--csv");
      const std::string id = positional();
      if (id.empty() || leftover()) return usage();
      return print_api(
          http_call(verb::get, url, "/finance/v1/invoices/" + id + (csv ? "?format=csv" : ""), {},
                    token),
          field);
    }
    return usage();
  }
  if (command == "costs") {
    if (verb != "preview") return usage();
    const std::string tenant = opt("--tenant");
    if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
    std::string q = "?tenant_id=" + tenant;
    if (const auto p = opt("--period"); !p.empty()) q += "&period=" + p;
    if (leftover()) return 2;
    return print_api(http_call(verb::get, url, "/finance/v1/cost_preview" + q, {}, token), field);
  }
  if (command == "credits") {
    if (verb == "expire") {
      if (const auto v = opt("--at"); !v.empty()) body.add_raw("at", v);
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/credits/expire", body.finish(), token),
                       field);
    }
    const std::string tenant = opt("--tenant");
    if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
    if (verb == "reconcile") {
      // The credit_only mirror in Redis is a budget: rebuilt with the tenant's budgets.
      body.add("tenant_id", tenant);
      if (leftover()) return 2;
      return print_api(
          http_call(verb::post, url, "/admin/v1/budgets/reconcile", body.finish(), token), field);
    }
    if (verb == "grant") {
      const std::string kind = opt("--kind");
      const std::string amount = opt("--amount-micros");
      if (kind.empty() || amount.empty()) {
        return std::fprintf(stderr,
                            "tollctl: --kind purchased|promotional and --amount-micros N are "
                            "required\n"),
               2;
      }
      body.add("kind", kind);
      body.add_raw("amount_micros", amount);
      if (const auto v = opt("--price-paid-micros"); !v.empty()) body.add_raw("price_paid_micros", v);
      if (const auto v = opt("--effective-at"); !v.empty()) body.add_raw("effective_at", v);
      if (const auto v = opt("--expires-at"); !v.empty()) body.add_raw("expires_at", v);
      if (const auto v = opt("--priority"); !v.empty()) body.add_raw("priority", v);
      if (const auto v = opt("--models"); !v.empty()) {
        std::string list = "[";
        std::size_t start = 0;
        for (;;) {
          const std::size_t comma = v.find(',', start);
          if (list.size() > 1) list.push_back(',');
          tollgate::append_json_string(
              list, v.substr(start, comma == std::string::npos ? comma : comma - start));
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        body.add_raw("models", list + "]");
      }
      if (const auto v = opt("--memo"); !v.empty()) body.add("memo", v);
      if (const auto v = opt("--id"); !v.empty()) body.add("id", v);
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/tenants/" + tenant + "/credit_grants",
                                 body.finish(), token),
                       field);
    }
    if (verb == "balance" || verb == "transfers") {
      const std::string q = list_query({{"--limit", "limit"}});
      if (leftover()) return 2;
      return print_api(
          http_call(verb::get, url,
                    "/admin/v1/tenants/" + tenant +
                        (verb == "balance" ? "/credits" : "/credit_transfers") + q,
                    {}, token),
          field);
    }
    return usage();
  }
  if (command == "plans") {
    const std::string tenant = opt("--tenant");
    if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
    if (verb == "get") {
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/admin/v1/tenants/" + tenant + "/plan", {}, token),
                       field);
    }
    if (verb == "set") {
      const std::string book = opt("--price-book");
      if (book.empty()) return std::fprintf(stderr, "tollctl: --price-book ID is required\n"), 2;
      body.add("price_book_id", book);
      if (const auto v = opt("--batch-discount-bp"); !v.empty()) body.add_raw("batch_discount_bp", v);
      if (const auto v = opt("--settlement-mode"); !v.empty()) body.add("settlement_mode", v);
      if (leftover()) return 2;
      return print_api(
          http_call(verb::post, url, "/admin/v1/tenants/" + tenant + "/plan", body.finish(), token),
          field);
    }
    return usage();
  }
  if (command == "budgets") {
    if (verb == "create") {
      const std::string tenant = opt("--tenant");
      const std::string limit = opt("--limit");
      if (tenant.empty() || limit.empty()) {
        return std::fprintf(stderr, "tollctl: --tenant ID and --limit N are required\n"), 2;
      }
      body.add("tenant_id", tenant);
      if (const auto v = opt("--scope"); !v.empty()) body.add("scope", v);
      if (const auto v = opt("--scope-id"); !v.empty()) body.add("scope_id", v);
      body.add("metric", opt("--metric"));
      body.add("window", opt("--window"));
      body.add_raw("limit", limit);
      if (const auto v = opt("--mode"); !v.empty()) body.add("mode", v);
      if (const auto v = opt("--alert-thresholds"); !v.empty()) {
        body.add_raw("alert_thresholds", "[" + v + "]");
      }
      if (const auto v = opt("--alert-webhook-url"); !v.empty()) body.add("alert_webhook_url", v);
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/budgets", body.finish(), token), field);
    }
    if (verb == "list") {
      const std::string q = list_query({{"--tenant", "tenant_id"}, {"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/admin/v1/budgets" + q, {}, token), field);
    }
    if (verb == "reconcile") {
      const std::string tenant = opt("--tenant");
      if (tenant.empty()) return std::fprintf(stderr, "tollctl: --tenant ID is required\n"), 2;
      body.add("tenant_id", tenant);
      if (leftover()) return 2;
      return print_api(
          http_call(verb::post, url, "/admin/v1/budgets/reconcile", body.finish(), token), field);
    }
    const std::string id = positional();
    if (id.empty()) return usage();
    if (verb == "get" && !leftover()) {
      return print_api(http_call(verb::get, url, "/admin/v1/budgets/" + id, {}, token), field);
    }
    if (verb == "alerts" && !leftover()) {
      return print_api(http_call(verb::get, url, "/admin/v1/budgets/" + id + "/alerts", {}, token),
                       field);
    }
    if (verb == "update" || verb == "disable" || verb == "enable") {
      if (const auto v = opt("--limit"); !v.empty()) body.add_raw("limit", v);
      if (const auto v = opt("--mode"); !v.empty()) body.add("mode", v);
      if (const auto v = opt("--alert-thresholds"); !v.empty()) {
        body.add_raw("alert_thresholds", "[" + v + "]");
      }
      if (const auto v = opt("--alert-webhook-url"); !v.empty()) {
        if (v == "none") {
          body.add_raw("alert_webhook_url", "null");
        } else {
          body.add("alert_webhook_url", v);
        }
      }
      if (verb != "update") body.add("status", verb == "disable" ? "disabled" : "active");
      if (leftover()) return 2;
      return print_api(http_call(verb::post, url, "/admin/v1/budgets/" + id, body.finish(), token),
                       field);
    }
    return usage();
  }
  if (command == "batches") {
    if (verb == "list") {
      const std::string q = list_query({{"--tenant", "tenant_id"}, {"--limit", "limit"}, {"--after", "after"}});
      if (leftover()) return 2;
      return print_api(http_call(verb::get, url, "/admin/v1/batches" + q, {}, token), field);
    }
    if (verb == "get") {
      const std::string id = positional();
      if (id.empty() || leftover()) return usage();
      return print_api(http_call(verb::get, url, "/admin/v1/batches/" + id, {}, token), field);
    }
    return usage();
  }
  if (command == "audit") {
    const std::string q = list_query({{"--tenant", "tenant_id"}, {"--limit", "limit"}, {"--after", "after"}});
    if (leftover()) return 2;
    return print_api(http_call(verb::get, url, "/admin/v1/audit_log" + q, {}, token), field);
  }
  if (command == "usage" || command == "events") {
    std::string q = list_query({{"--start", "start_time"}, {"--end", "end_time"},
                                {"--bucket", "bucket_width"}, {"--group-by", "group_by"},
                                {"--tenant", "tenant_id"}, {"--project", "project_id"},
                                {"--key", "api_key_id"}, {"--model", "model"},
                                {"--limit", "limit"}, {"--page", "page"}, {"--after", "after"}});
    const bool csv = take_flag(args, "--csv");
    if (csv) q += q.empty() ? "?format=csv" : "&format=csv";
    if (leftover()) return 2;
    const std::string path = command == "usage" ? "/finance/v1/usage" : "/finance/v1/usage_events";
    const auto r = http_call(verb::get, url, path + q, {}, token);
    if (csv && r.error.empty() && r.status == 200) {
      std::fwrite(r.body.data(), 1, r.body.size(), stdout);
      return 0;
    }
    return print_api(r, field);
  }
  return usage();
}

int usage() {
  std::fprintf(stderr,
               "usage: tollctl health  [--admin-url URL]\n"
               "       tollctl metrics [--admin-url URL]\n"
               "       tollctl models  [--url URL]\n"
               "       tollctl config check [FILE]\n"
               "       tollctl tokenize (--encoding NAME | --tokenizer FILE) [--chat FORMAT]\n"
               "                        [--ids | --jsonl]\n"
               "                        [--data-dir DIR]   (reads stdin)\n"
               "       tollctl tenants  create --name NAME [--time-zone ZONE] | list | get ID\n"
               "                        | update ID [--name NAME] [--time-zone ZONE]\n"
               "                        | disable ID | enable ID\n"
               "       tollctl projects create --tenant ID --name NAME | list [--tenant ID] | get ID\n"
               "                        | update ID --name NAME | disable ID | enable ID\n"
               "       tollctl keys     create --tenant ID [--project ID] [--name NAME]\n"
               "                        [--expires-at UNIX] [--models a,b] | list [--tenant ID]\n"
               "                        | get ID | update ID [--name] [--expires-at] | revoke ID\n"
               "                        | rotate ID [--grace SECONDS]\n"
               "       tollctl budgets  create --tenant ID --metric tokens|requests|spend\n"
               "                        --window minute|hour|day|month|lifetime --limit N\n"
               "                        [--scope tenant|project|key --scope-id ID] [--mode hard|soft]\n"
               "                        [--alert-thresholds 50,80,100] [--alert-webhook-url URL]\n"
               "                        | list [--tenant ID] | get ID | alerts ID | update ID\n"
               "                        [--limit N] [--mode M] [--alert-thresholds P,...]\n"
               "                        [--alert-webhook-url URL|none] | disable ID | enable ID\n"
               "                        | reconcile --tenant ID (rebuild Redis from the ledger)\n"
               "       tollctl price-books create --file BOOK.json | list | get ID\n"
               "                        | add-version ID --file VERSION.json\n"
               "       tollctl plans    set --tenant ID --price-book ID [--batch-discount-bp N]\n"
               "                        [--settlement-mode credit_then_invoice|credit_only]\n"
               "                        | get --tenant ID\n"
               "       tollctl credits  grant --tenant ID --kind purchased|promotional\n"
               "                        --amount-micros N [--price-paid-micros N]\n"
               "                        [--effective-at UNIX] [--expires-at UNIX] [--priority N]\n"
               "                        [--models a,b] [--memo TEXT] [--id cg_...]\n"
               "                        | balance --tenant ID | transfers --tenant ID\n"
               "                        | reconcile --tenant ID (rebuild the credit_only mirror)\n"
               "                        | expire [--at UNIX]\n"
               "       tollctl costs    preview --tenant ID [--period YYYY-MM]\n"
               "       tollctl invoices run --period YYYY-MM [--tenant ID] [--finalize]\n"
               "                        | list [--tenant ID] [--period YYYY-MM] | get ID [--csv]\n"
               "       tollctl batches  list [--tenant ID] | get ID   (any tenant's batches)\n"
               "       tollctl audit    [--tenant ID]\n"
               "       tollctl usage    --start UNIX [--end UNIX] [--bucket 1m|1h|1d]\n"
               "                        [--group-by a,b] [--tenant ID] [--model M] [--csv]\n"
               "       tollctl events   [--start UNIX] [--end UNIX] [--tenant ID] [--after CURSOR]\n"
               "Lists take --limit N --after ID; every admin/finance command takes --field NAME.\n"
               "URLs and tokens default to $TOLLGATE_URL, $TOLLGATE_ADMIN_URL,\n"
               "$TOLLGATE_ADMIN_TOKEN and $TOLLGATE_FINANCE_TOKEN (make up writes them to .run/env).\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string command = args[0];
  args.erase(args.begin());

  if (command == "health") {
    const auto url =
        flag_or_env(args, "--admin-url", "TOLLGATE_ADMIN_URL", "http://127.0.0.1:8081");
    const auto live = http_get(url, "/healthz");
    const auto ready = http_get(url, "/readyz");
    if (!live.error.empty()) {
      std::fprintf(stderr, "tollctl: %s\n", live.error.c_str());
      return 1;
    }
    std::printf("healthz: %u %s\nreadyz:  %u %s\n", live.status, live.body.c_str(), ready.status,
                ready.body.c_str());
    return live.status == 200 && ready.status == 200 ? 0 : 1;
  }
  if (command == "metrics") {
    const auto url =
        flag_or_env(args, "--admin-url", "TOLLGATE_ADMIN_URL", "http://127.0.0.1:8081");
    return print_result(http_get(url, "/metrics"));
  }
  if (command == "models") {
    const auto url = flag_or_env(args, "--url", "TOLLGATE_URL", "http://127.0.0.1:8080");
    return print_result(http_get(url, "/v1/models"));
  }
  if (command == "config" && !args.empty() && args[0] == "check") {
    try {
      const auto cfg = args.size() > 1
                           ? tollgate::load_config_file(args[1], tollgate::process_env())
                           : tollgate::parse_config(tollgate::embedded_default_config(),
                                                    tollgate::process_env());
      std::printf("config ok: %zu upstream(s), %zu model(s)\n", cfg.upstreams.size(),
                  cfg.models.size());
      for (const auto& m : cfg.models) {
        const auto* u = cfg.find_upstream(m.upstream);
        std::printf("  model %s -> upstream %s (http://%s:%u%s) as %s; tokenizer %s, prompt format %s\n",
                    m.name.c_str(), m.upstream.c_str(), u->host.c_str(), u->port,
                    u->base_path.c_str(), m.upstream_model.c_str(), m.tokenizer.c_str(),
                    m.prompt_format.c_str());
      }
      return 0;
    } catch (const tollgate::config_error& e) {
      std::fprintf(stderr, "tollctl: %s\n", e.what());
      return 1;
    }
  }
  if (command == "tokenize") return tokenize(std::move(args));
  if (command == "tenants" || command == "projects" || command == "keys" || command == "audit" ||
      command == "budgets" || command == "usage" || command == "events" ||
      command == "price-books" || command == "plans" || command == "costs" ||
      command == "invoices" || command == "credits" || command == "batches") {
    return admin_command(command, std::move(args));
  }
  return usage();
}
