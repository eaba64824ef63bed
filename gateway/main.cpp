// tollgate: the gateway process. Loads the configuration, starts the OpenAI API listener and the
// operator listener on a pool of I/O threads and, with a database, the billing thread (the
// stores, ledger writer); runs until SIGTERM/SIGINT (graceful drain, then a last ledger flush).
//   tollgate [--config FILE]          serve (without --config: the embedded default)
//   tollgate --check-config [FILE]    validate a configuration and exit
//   tollgate migrate [--config FILE]  apply the database migrations (database.url) and exit
//   tollgate --help | --version
#include <dlfcn.h>
#include <malloc.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <thread>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/health_checker.hpp"
#include "backends/upstream.hpp"
#include "billing/batch_store.hpp"
#include "billing/budget_store.hpp"
#include "billing/credit_store.hpp"
#include "billing/invoice_store.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/migrations.hpp"
#include "billing/pg.hpp"
#include "billing/plan_store.hpp"
#include "billing/tenant_store.hpp"
#include "billing/usage_queries.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "billing/refusal_report.hpp"
#include "gateway/admin_router.hpp"
#include "gateway/api_handler.hpp"
#include "gateway/console_server.hpp"
#include "gateway/batch_api.hpp"
#include "gateway/batch_worker.hpp"
#include "gateway/auth.hpp"
#include "gateway/budget_guard.hpp"
#include "gateway/operator_listener.hpp"
#include "metering/prompt_count.hpp"
#include "metering/tokenizer_registry.hpp"
#include "metering/usage.hpp"

namespace {

constexpr const char* version = "0.1.0";

constexpr const char* usage_text =
    "usage: tollgate [--config FILE]          serve (without --config: the embedded default)\n"
    "       tollgate --check-config [FILE]    validate a configuration and exit\n"
    "       tollgate migrate [--config FILE]  apply the database migrations and exit\n"
    "       tollgate --version | --help\n"
    "Settings: deploy/tollgate.example.json and docs/CONFIG.md; any of them can be overridden\n"
    "from the environment, e.g. TOLLGATE_DATABASE__URL.\n";

int usage_error(const char* msg) {
  std::fprintf(stderr, "tollgate: %s\n%s", msg, usage_text);
  return 2;
}

struct command_line {
  std::string config_path;
  bool check_only = false;
  bool migrate_only = false;
};

// Reads the arguments into `cl`; an exit code when the process ends here (help, version, an
// unknown argument).
std::optional<int> parse_command_line(int argc, char** argv, command_line& cl) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "migrate" && i == 1) {
      cl.migrate_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      cl.config_path = argv[++i];
    } else if (arg == "--check-config") {
      cl.check_only = true;
      if (i + 1 < argc) cl.config_path = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(usage_text, stdout);
      return 0;
    } else if (arg == "--version") {
      std::printf("tollgate %s\n", version);
      return 0;
    } else {
      return usage_error(("unknown argument: " + arg).c_str());
    }
  }
  return std::nullopt;
}

// `tollgate migrate`, or database.migrate_on_start: applies the migrations. An exit code when
// the process ends here.
std::optional<int> migrate_if_asked(const tollgate::gateway_config& config,
                                    const command_line& cl) {
  if (!cl.migrate_only && !(config.database.migrate_on_start && !cl.check_only)) {
    return std::nullopt;
  }
  if (config.database.url.empty()) {
    std::fprintf(stderr, "tollgate: migrate needs database.url (or TOLLGATE_DATABASE__URL)\n");
    return 2;
  }
  auto report = tollgate::billing::migrate(config.database.url);
  if (!report) {
    std::fprintf(stderr, "tollgate: migrate: %s\n", report.error().c_str());
    return 1;
  }
  std::fprintf(stderr, "tollgate: schema at version %d (was %d; applied %zu migration(s))\n",
               report->to_version, report->from_version, report->applied.size());
  if (cl.migrate_only) return 0;
  return std::nullopt;
}

// Each model's prompt counter: its tokenizer (loaded once, shared) and prompt format. False
// (with the reason on stderr) when a model's tokenizer cannot be loaded.
bool load_prompt_counters(
    const tollgate::gateway_config& config,
    std::unordered_map<std::string, tollgate::metering::prompt_counter>& counters) {
  using namespace tollgate;
  metering::tokenizer_registry tokenizers(config.metering.tokenizer_dir.empty()
                                              ? metering::default_tokenizer_dir()
                                              : config.metering.tokenizer_dir);
  for (const auto& m : config.models) {
    auto tok = tokenizers.get(m.tokenizer);
    auto counter =
        tok ? metering::prompt_counter::make(*tok, *metering::parse_prompt_format(m.prompt_format))
            : result<metering::prompt_counter>(tok.error());
    if (!counter) {
      std::fprintf(stderr, "tollgate: config /models/%s: %s\n", m.name.c_str(),
                   counter.error().message.c_str());
      return false;
    }
    counters.emplace(m.name, std::move(*counter));
  }
  return true;
}

// Authorization before resources: a request that needs a key is checked before its body is
// read (or 100 Continue sent), and look-ups of unknown keys are limited per address.
// A console session (cookie, no Authorization) is checked by the handler instead.
void add_key_check(tollgate::http::listener_spec& listener, tollgate::gateway::authenticator* auth,
                   const tollgate::gateway::console_gate* console) {
  using namespace tollgate;
  listener.before_body = [auth, console](const http::request& header,
                                         const boost::asio::ip::address& peer)
      -> boost::asio::awaitable<http::pre_body_verdict> {
    const std::string_view target = header.target();
    if (!gateway::api_request_needs_key(header.method(), target.substr(0, target.find('?'))) ||
        (console != nullptr && console->presents_session(header))) {
      co_return http::pre_body_verdict{};
    }
    auto who = co_await auth->authenticate(header[boost::beast::http::field::authorization], peer);
    if (!who) co_return http::pre_body_verdict{who.error(), nullptr};
    // The handler takes the caller from here instead of authenticating the key again.
    co_return http::pre_body_verdict{std::nullopt, gateway::checked_caller(std::move(*who))};
  };
}

// The usage log's file: stderr, or the configured path opened for appending (null, with the
// reason on stderr, when it cannot be opened).
std::FILE* open_usage_log(const tollgate::gateway_config& config) {
  if (config.logging.usage_log == "stderr" || config.logging.usage_log == "off") return stderr;
  std::FILE* f = std::fopen(config.logging.usage_log.c_str(), "a");
  if (f == nullptr) {
    std::fprintf(stderr, "tollgate: cannot open usage log %s: %s\n",
                 config.logging.usage_log.c_str(), std::strerror(errno));
  }
  return f;
}

// Which allocator serves malloc in this process: tcmalloc where gateway/CMakeLists.txt linked
// it, the sanitizer's in an ASan build, else glibc's.
const char* allocator_name() {
  if (dlsym(RTLD_DEFAULT, "tc_malloc") != nullptr) return "tcmalloc";
  if (dlsym(RTLD_DEFAULT, "__asan_init") != nullptr) return "sanitizer";
  return "glibc";
}

void register_process_metrics(tollgate::metrics::registry& registry, tollgate::logger& usage_log) {
  usage_log.count_write_failures(
      &registry
           .add_counter("tollgate_usage_log_write_failures_total",
                        "Usage records that could not be written to the usage log.")
           .get());
  registry
      .add_gauge("tollgate_build_info", "Build information; the value is always 1.",
                 {"version", "allocator"})
      .with({version, allocator_name()})
      .set(1);
}

struct billing_parts {
  std::unique_ptr<tollgate::pg::pool> db_pool;
  std::unique_ptr<tollgate::billing::tenant_store> tenants;
  std::unique_ptr<tollgate::billing::budget_store> budgets;
  std::unique_ptr<tollgate::billing::usage_queries> usage;
  std::unique_ptr<tollgate::billing::plan_store> plans;
  std::unique_ptr<tollgate::billing::credit_store> credits;
  std::unique_ptr<tollgate::billing::invoice_store> invoices;  // uses plans and credits
  std::unique_ptr<tollgate::billing::batch_store> batch_store;
  std::unique_ptr<tollgate::billing::refusal_report> refusals;
  std::unique_ptr<tollgate::billing::ledger_writer> ledger;
  std::unique_ptr<tollgate::gateway::billing_context> context;
  std::unique_ptr<tollgate::gateway::authenticator> auth;
  std::unique_ptr<tollgate::gateway::admin_router> admin_router;
};

// The billing side, with a database: the PostgreSQL pool and stores, the ledger writer
// (started), the authenticator and the admin router, all on the billing thread's executor.
bool start_billing(const tollgate::gateway_config& config, boost::asio::any_io_executor executor,
                   tollgate::metrics::registry& registry, tollgate::logger& log,
                   const tollgate::clock_source& clock, billing_parts& out) {
  using namespace tollgate;
  pg::connection_settings db;
  db.conninfo = config.database.url;
  db.connect_timeout = std::chrono::milliseconds(config.database.connect_timeout_ms);
  db.statement_timeout = std::chrono::milliseconds(config.database.statement_timeout_ms);
  billing::ledger_settings ls;
  ls.flush_interval = std::chrono::milliseconds(config.ledger.flush_interval_ms);
  ls.flush_events_max = config.ledger.flush_events_max;
  ls.queue_events_max = config.ledger.queue_events_max;
  ls.spool_dir = config.ledger.spool_dir;
  ls.spool_bytes_max = config.ledger.spool_bytes_max;
  // A journal lane per I/O thread (server.threads, 0: one per core, as the server counts them)
  // and two for the billing and batch threads; at least four.
  const unsigned io_threads = config.server.threads != 0
                                  ? config.server.threads
                                  : std::max(1u, std::thread::hardware_concurrency());
  ls.journal_lanes = std::max<std::size_t>(4, io_threads + 2);
  ls.rate_events = config.ledger.rate_events;
  try {
    out.db_pool = std::make_unique<pg::pool>(executor, db, config.database.pool_size);
    out.tenants = std::make_unique<billing::tenant_store>(*out.db_pool);
    out.budgets = std::make_unique<billing::budget_store>(*out.db_pool);
    out.usage = std::make_unique<billing::usage_queries>(*out.db_pool);
    out.plans = std::make_unique<billing::plan_store>(*out.db_pool);
    out.credits = std::make_unique<billing::credit_store>(*out.db_pool);
    out.invoices =
        std::make_unique<billing::invoice_store>(*out.db_pool, *out.plans, *out.credits);
    out.batch_store = std::make_unique<billing::batch_store>(*out.db_pool);
    out.refusals = std::make_unique<billing::refusal_report>(*out.db_pool);
    out.ledger = std::make_unique<billing::ledger_writer>(executor, db, ls, registry, log);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return false;
  }
  out.context = std::make_unique<gateway::billing_context>(gateway::billing_context{
      .executor = executor,
      .tenants = out.tenants.get(),
      .budgets = out.budgets.get(),
      .usage = out.usage.get(),
      .plans = out.plans.get(),
      .invoices = out.invoices.get(),
      .credits = out.credits.get(),
      .ledger = out.ledger.get(),
      .batches = out.batch_store.get(),
      .refusals = out.refusals.get()});
  out.auth = std::make_unique<gateway::authenticator>(*out.context, config.auth, clock, registry);
  out.admin_router =
      std::make_unique<gateway::admin_router>(*out.context, config.auth, config.invoices, clock);
  out.admin_router->set_usage_limits(gateway::usage_limits::from(config.usage_reports));
  out.ledger->start();
  return true;
}

// One TLS context per https upstream, loaded at start-up so that a bad CA, certificate or key
// stops start-up (and --check-config) with the setting's name; null after saying so.
std::shared_ptr<const tollgate::backends::upstream_tls_contexts> load_upstream_tls(
    const tollgate::gateway_config& config) {
  try {
    return std::make_shared<const tollgate::backends::upstream_tls_contexts>(config.upstreams);
  } catch (const tollgate::config_error& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return nullptr;
  }
}

// The upstreams' side: each endpoint's shared state (health, TLS contexts, metrics), one
// connection pool per I/O thread, and the active health checks on I/O thread 0 (ended by its
// drain).
struct upstream_side {
  std::shared_ptr<tollgate::backends::upstream_groups> groups;
  std::vector<std::shared_ptr<tollgate::backends::upstream_pool>> pools;
  std::unique_ptr<tollgate::backends::health_checker> health_checks;
};

upstream_side start_upstreams(
    tollgate::http::server& server, const tollgate::gateway_config& config,
    const std::shared_ptr<const tollgate::backends::upstream_tls_contexts>& upstream_tls,
    tollgate::metrics::registry& registry, tollgate::logger& log) {
  namespace backends = tollgate::backends;
  upstream_side out;
  out.groups = std::make_shared<backends::upstream_groups>(config.upstreams, upstream_tls, registry);
  registry.add_collector([groups = std::weak_ptr(out.groups)] {
    if (const auto g = groups.lock()) g->refresh_gauges();
  });
  for (unsigned i = 0; i < server.thread_count(); ++i) {
    out.pools.push_back(
        std::make_shared<backends::upstream_pool>(server.io(i).get_executor(), out.groups));
  }
  out.health_checks = std::make_unique<backends::health_checker>(out.pools[0], *out.groups,
                                                                 config.upstreams, log);
  out.health_checks->start();
  server.add_drain_hook([checks = out.health_checks.get()](unsigned worker) {
    if (worker == 0) checks->stop();
  });
  return out;
}

// With a database: the Batch API on the public listener (its upload body limit), and its
// worker unless batches.enabled is off.
struct batch_parts {
  std::unique_ptr<tollgate::gateway::batch_api> api;
  std::unique_ptr<tollgate::gateway::batch_worker> worker;
};
batch_parts start_batches(const tollgate::gateway_config& config, billing_parts& parts,
                          tollgate::gateway::api_handler& api, tollgate::http::server& server,
                          tollgate::http::listener_spec& api_listener, tollgate::metrics::registry& registry,
                          tollgate::logger& log) {
  batch_parts out;
  out.api = std::make_unique<tollgate::gateway::batch_api>(config, *parts.context, *parts.batch_store, api);
  api.set_batch_api(out.api.get());
  api_listener.body_limit_max = out.api->upload_body_limit();
  api_listener.body_limit_for = [limit = out.api->upload_body_limit()](
                                    boost::beast::http::verb method, std::string_view target) {
    return tollgate::gateway::batch_api::is_upload(target, method == boost::beast::http::verb::post)
               ? limit
               : std::uint64_t{0};
  };
  if (config.batches.enabled) {
    out.worker = std::make_unique<tollgate::gateway::batch_worker>(
        config.batches, *parts.context, *parts.batch_store, api, server, log, registry);
    out.worker->check_keys_with(parts.auth.get());
    out.worker->start();
  }
  return out;
}

void log_started(tollgate::logger& log, const tollgate::gateway_config& config, const std::string& config_path,
                 unsigned threads) {
  tollgate::json_object_writer f;
  f.add("version", version)
      .add("threads", threads)
      .add("models", static_cast<std::int64_t>(config.models.size()))
      .add("config", config_path.empty() ? "embedded default" : config_path)
      .add("database", !config.database.url.empty())
      .add("budgets", !config.budgets.redis.empty());
  log.info("tollgate started", f);
}

// The wall clock, shifted by TOLLGATE_TEST_CLOCK_OFFSET_S seconds: tests run a month of usage
// in minutes by restarting the gateway further into the month (usage is stamped, seats and
// grants take effect, invoices are run at the shifted time). Honoured only with
// TOLLGATE_TEST_MODE=1; without it the offset is refused at start-up, so a production gateway
// never stamps usage with a time other than the real one.
class shifted_clock_source final : public tollgate::clock_source {
 public:
  explicit shifted_clock_source(std::int64_t offset_s) : offset_(offset_s) {}
  std::chrono::system_clock::time_point wall_now() const override {
    return std::chrono::system_clock::now() + offset_;
  }
  std::chrono::steady_clock::time_point mono_now() const override {
    return std::chrono::steady_clock::now();
  }

 private:
  std::chrono::seconds offset_;
};

// The test clock offset in seconds (0: none), or nullopt after printing why it is refused.
std::optional<std::int64_t> test_clock_offset_s() {
  const char* offset = std::getenv("TOLLGATE_TEST_CLOCK_OFFSET_S");
  if (offset == nullptr || *offset == '\0') return 0;
  const char* test_mode = std::getenv("TOLLGATE_TEST_MODE");
  if (test_mode == nullptr || std::string_view(test_mode) != "1") {
    std::fprintf(stderr,
                 "tollgate: TOLLGATE_TEST_CLOCK_OFFSET_S is for tests only and is refused "
                 "unless TOLLGATE_TEST_MODE=1 is set\n");
    return std::nullopt;
  }
  constexpr std::int64_t offset_s_max = 100LL * 365 * 86'400;  // a century either way
  std::int64_t value = 0;
  const std::string_view text(offset);
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < -offset_s_max ||
      value > offset_s_max) {
    std::fprintf(stderr,
                 "tollgate: TOLLGATE_TEST_CLOCK_OFFSET_S must be an integer number of seconds "
                 "within a century\n");
    return std::nullopt;
  }
  std::fprintf(stderr, "tollgate: test mode: the wall clock is shifted by %lld s\n",
               static_cast<long long>(value));
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tollgate;
  command_line cl;
  if (const auto exit_code = parse_command_line(argc, argv, cl)) return *exit_code;
  const std::string& config_path = cl.config_path;
  const bool check_only = cl.check_only;

  gateway_config config;
  try {
    config = config_path.empty() ? parse_config(embedded_default_config(), process_env())
                                 : load_config_file(config_path, process_env());
  } catch (const config_error& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return 2;
  }
  const auto clock_offset_s = test_clock_offset_s();
  if (!clock_offset_s) return 2;
  const auto upstream_tls = load_upstream_tls(config);
  if (!upstream_tls) return 2;
  if (const auto exit_code = migrate_if_asked(config, cl)) return *exit_code;
  // Each model's prompt counter: its tokenizer (loaded once, shared) and prompt format.
  std::unordered_map<std::string, metering::prompt_counter> counters;
  if (!load_prompt_counters(config, counters)) return 2;
  if (check_only) {
    std::printf("config ok: %zu upstream(s), %zu model(s), listen %s, admin %s\n",
                config.upstreams.size(), config.models.size(),
                config.server.listen.to_string().c_str(),
                config.server.admin_listen.to_string().c_str());
    return 0;
  }

  std::signal(SIGPIPE, SIG_IGN);
  // On glibc's allocator (a build without tcmalloc, gateway/CMakeLists.txt; tcmalloc ignores
  // these): keep freed heap memory instead of returning it to the kernel after every burst. The
  // request path allocates and frees the same small sizes all the time, and trimming/regrowing
  // the heap top cost a brk system call and page faults every few requests under load.
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  logger log{stderr, config.logging.level};
  std::FILE* usage_file = open_usage_log(config);
  if (usage_file == nullptr) return 1;
  // Declared before the usage log, which counts its failed writes in it until its last flush.
  metrics::registry registry;
  logger usage_log{usage_file, log_level::info};
  register_process_metrics(registry, usage_log);
  if (config.logging.usage_log != "off" && config.logging.usage_log_flush_ms > 0) {
    usage_log.buffer_for(std::chrono::milliseconds(config.logging.usage_log_flush_ms));
  }
  metering::log_usage_sink log_sink{usage_log};
  shifted_clock_source clock{*clock_offset_s};

  // With a database: the billing thread runs every PostgreSQL coroutine (key lookups, the
  // admin and finance APIs, the ledger writer) on its own io_context.
  const bool with_db = !config.database.url.empty();
  boost::asio::io_context billing_io{1};
  auto billing_guard = boost::asio::make_work_guard(billing_io);
  billing_parts parts;
  // "off": the ledger alone records usage (a database is required, checked at start-up).
  std::vector<metering::usage_sink*> sinks;
  if (config.logging.usage_log != "off") sinks.push_back(&log_sink);
  if (with_db) {
    if (!start_billing(config, billing_io.get_executor(), registry, log, clock, parts)) return 1;
    sinks.push_back(parts.ledger.get());
  }
  auto& ledger = parts.ledger;
  auto& billing_ctx = parts.context;
  auto& auth = parts.auth;
  auto& admin_router = parts.admin_router;
  metering::fanout_usage_sink usage_sink{sinks};
  std::thread billing_thread([&billing_io] { billing_io.run(); });
  auto stop_billing = [&] {
    if (ledger) {
      // A last flush of what the drained requests recorded; whatever it cannot write stays
      // in the spool for the next start.
      auto done = boost::asio::co_spawn(billing_io, ledger->stop(), boost::asio::use_future);
      done.wait_for(std::chrono::seconds(10));
    }
    billing_guard.reset();
    billing_io.stop();
    billing_thread.join();
  };

  try {
    http::server server{http::server_limits::from(config.server), config.server.threads, log,
                        registry};
    auto upstreams = start_upstreams(server, config, upstream_tls, registry, log);
    std::unique_ptr<gateway::budget_guard> budgets;
    if (!config.budgets.redis.empty()) {
      std::vector<boost::asio::any_io_executor> executors;
      for (unsigned i = 0; i < server.thread_count(); ++i) {
        executors.push_back(server.io(i).get_executor());
      }
      budgets = std::make_unique<gateway::budget_guard>(config.budgets, config.models,
                                                        *billing_ctx, std::move(executors), clock,
                                                        registry, log);
      server.add_drain_hook([guard = budgets.get()](unsigned worker) { guard->close(worker); });
      admin_router->attach_budgets(budgets.get());
    }
    gateway::api_handler api{config,     std::move(upstreams.pools),
                             std::move(counters), usage_sink,
                             registry,   log,
                             clock,      billing_ctx.get(),
                             auth.get(), budgets.get()};
    // The web console: admins and finance on the operator listener, key holders (with a
    // database) on the public one, each with its own sessions and cookie.
    gateway::console_gate operator_gate{"tollgate_console", config.console};
    gateway::console_gate key_holder_gate{"tollgate_console_key", config.console};
    std::optional<gateway::console_server> operator_console;
    std::optional<gateway::console_server> key_holder_console;
    if (config.console.enabled) {
      operator_console.emplace(operator_gate, config.auth, clock);
      if (admin_router) admin_router->attach_console(&operator_gate);
      if (auth) {
        key_holder_console.emplace(key_holder_gate, *auth, *billing_ctx, clock);
        api.set_console(&*key_holder_console, &key_holder_gate);
      }
    }
    gateway::operator_listener operator_api{
        server, registry, admin_router.get(), operator_console ? &*operator_console : nullptr};
    server.add_drain_timeout_hook([&api](unsigned worker) { api.record_in_flight(worker); });
    http::listener_spec api_listener{"api", config.server.listen,
                                     [&api](http::exchange& ex) { return api.handle(ex); }};
    batch_parts batches;
    if (with_db) {
      batches = start_batches(config, parts, api, server, api_listener, registry, log);
    }
    if (auth) {
      add_key_check(api_listener, auth.get(), key_holder_console ? &key_holder_gate : nullptr);
    }
    server.add_listener(std::move(api_listener));
    http::listener_spec admin_listener{"admin", config.server.admin_listen,
                                       [&operator_api](http::exchange& ex) {
                                         return operator_api.handle(ex);
                                       },
                                       /*serve_while_draining=*/true};
    admin_listener.max_connections = config.server.admin_max_connections;
    server.add_listener(std::move(admin_listener));
    log_started(log, config, config_path, server.thread_count());
    server.run();
  } catch (const std::exception& e) {
    json_object_writer f;
    f.add("error", e.what());
    log.error("fatal", f);
    stop_billing();
    return 1;
  }
  stop_billing();
  usage_log.finish_buffering();  // the servers are stopped: no usage line comes after this
  if (usage_file != stderr) std::fclose(usage_file);
  return 0;
}
