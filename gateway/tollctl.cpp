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
// Admin and finance commands (a table in tollctl_admin.cpp) print the API's JSON; --field NAME
// prints one top-level field.
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

#include "backends/upstream_tls.hpp"
#include "core/config.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"
#include "gateway/tollctl.hpp"
#include "metering/prompt_count.hpp"
#include "metering/tokenizer_registry.hpp"

// Everything here is internal to tollctl (tollctl.hpp declares what tollctl_admin.cpp shares).
namespace tollgate::tollctl {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

http_result http_call(bhttp::verb method, const std::string& base_url, const std::string& path,
                      const std::string& body, const std::string& token) {
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
  tollgate::json_array_writer list;
  for (const auto id : ids) list.add(id);
  const std::string line = list.finish() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// tollctl tokenize: stdin as one text (count, or --ids), or --jsonl: one JSON string per line in,
// one JSON array of ids per line out (used by the parity tests). With --chat FORMAT the input is
// a chat request body ({"messages": [...], "tools": ...}), or one per line with --jsonl: the
// count is the prompt count the gateway records; --ids lists the rendered template's ids
// (llama3, chatml).
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
               "       tollctl projects create --tenant ID --name NAME [--tags k=v,...] | list [--tenant ID]\n"
               "                        | get ID | update ID [--name NAME] [--tags k=v,...]\n"
               "                        | disable ID | enable ID\n"
               "       tollctl keys     create --tenant ID [--project ID] [--name NAME]\n"
               "                        [--expires-at UNIX] [--models a,b] [--tags k=v,...]\n"
               "                        | list [--tenant ID] | get ID\n"
               "                        | update ID [--name] [--expires-at] [--tags k=v,...] | revoke ID\n"
               "                        | rotate ID [--grace SECONDS]\n"
               "       tollctl budgets  create --tenant ID --metric tokens|requests|spend\n"
               "                        --window minute|hour|day|week|month|quarter|lifetime\n"
               "                        |DURATION (90s, 15m, 3h, 2d: 1m to 31d, sliding)\n"
               "                        --limit N [--scope tenant|project|key --scope-id ID]\n"
               "                        [--mode hard|soft] [--models a,b]\n"
               "                        [--alert-thresholds 50,80,100] [--alert-webhook-url URL]\n"
               "                        [--forecast-alerts 80,100] (tenant spend, month)\n"
               "                        | list [--tenant ID] | get ID | alerts ID | update ID\n"
               "                        [--limit N] [--mode M] [--models a,b|all]\n"
               "                        [--alert-thresholds P,...] [--alert-webhook-url URL|none]\n"
               "                        [--forecast-alerts P,...]\n"
               "                        | disable ID | enable ID\n"
               "                        | reconcile --tenant ID (rebuild Redis from the ledger)\n"
               "       tollctl price-books create --file BOOK.json | list | get ID\n"
               "                        | add-version ID --file VERSION.json\n"
               "       tollctl plans    set --tenant ID --price-book ID [--batch-discount-bp N]\n"
               "                        [--settlement-mode credit_then_invoice|credit_only]\n"
               "                        [--base-fee-micros N] [--seat-fee-micros N]\n"
               "                        [--commitment-micros N] [--included-usage-micros N]\n"
               "                        [--allowances MODEL:CLASS:TOKENS[:ROLLOVER],...|none]\n"
               "                        | get --tenant ID\n"
               "       tollctl seats    set --tenant ID --seats N [--effective-at UNIX]\n"
               "                        | get --tenant ID\n"
               "       tollctl credits  grant --tenant ID --kind purchased|promotional\n"
               "                        --amount-micros N [--price-paid-micros N]\n"
               "                        [--effective-at UNIX] [--expires-at UNIX] [--priority N]\n"
               "                        [--models a,b] [--memo TEXT] [--id cg_...]\n"
               "                        | bundle --tenant ID --model M --token-class C\n"
               "                        --tokens N --price-per-million-micros P\n"
               "                        [--effective-at UNIX] [--expires-at UNIX] [--priority N]\n"
               "                        [--memo TEXT] [--id cg_...] [--projects p1,p2]\n"
               "                        | auto-top-up --tenant ID --threshold-micros N\n"
               "                        --amount-micros N --price-paid-micros N [--webhook-url U]\n"
               "                        | balance --tenant ID | transfers --tenant ID\n"
               "                        | reconcile --tenant ID (rebuild the credit_only mirror)\n"
               "                        | expire [--at UNIX]\n"
               "       tollctl costs    preview --tenant ID [--period YYYY-MM]\n"
               "       tollctl invoices run --period YYYY-MM [--tenant ID] [--finalize]\n"
               "                        | list [--tenant ID] [--period YYYY-MM] | get ID [--csv]\n"
               "       tollctl batches  list [--tenant ID] | get ID   (any tenant's batches)\n"
               "       tollctl audit    [--tenant ID]\n"
               "       tollctl usage    --start UNIX [--end UNIX] [--bucket 1m|1h|1d|1mo]\n"
               "                        [--group-by a,b,end_user,session_id,tag:KEY]\n"
               "                        [--tenant ID] [--model M] [--end-user U] [--session S]\n"
               "                        [--tag KEY=VALUE]\n"
               "                        [--order cost_desc|tokens_desc|requests_desc]\n"
               "                        [--group-limit N] [--csv]\n"
               "       tollctl events   [--start UNIX] [--end UNIX] [--tenant ID] [--after CURSOR]\n"
               "Lists take --limit N --after ID; every admin/finance command takes --field NAME.\n"
               "URLs and tokens default to $TOLLGATE_URL, $TOLLGATE_ADMIN_URL,\n"
               "$TOLLGATE_ADMIN_TOKEN and $TOLLGATE_FINANCE_TOKEN (make up writes them to .run/env).\n");
  return 2;
}

}  // namespace tollgate::tollctl

int main(int argc, char** argv) {
  using namespace tollgate::tollctl;
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
      const tollgate::backends::upstream_tls_contexts tls(
          cfg.upstreams);  // loads CAs and certificates
      std::printf("config ok: %zu upstream(s), %zu model(s)\n", cfg.upstreams.size(),
                  cfg.models.size());
      for (const auto& m : cfg.models) {
        const auto* u = cfg.find_upstream(m.upstream);
        std::printf(
            "  model %s -> upstream %s (%s://%s:%u%s) as %s; tokenizer %s, prompt format %s\n",
            m.name.c_str(), m.upstream.c_str(), u->endpoints.front().tls ? "https" : "http",
            u->host.c_str(), u->port, u->base_path.c_str(), m.upstream_model.c_str(),
            m.tokenizer.c_str(), m.prompt_format.c_str());
        if (u->endpoints.size() > 1) {
          std::printf("    and %zu more endpoint(s)\n", u->endpoints.size() - 1);
        }
      }
      return 0;
    } catch (const tollgate::config_error& e) {
      std::fprintf(stderr, "tollctl: %s\n", e.what());
      return 1;
    }
  }
  if (command == "tokenize") return tokenize(std::move(args));
  if (is_api_command(command)) return api_command(command, std::move(args));
  return usage();
}
