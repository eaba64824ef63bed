// tollgate: the gateway process. Loads the configuration, starts the OpenAI API listener and the
// operator listener on a pool of I/O threads, and runs until SIGTERM/SIGINT (graceful drain).
//   tollgate [--config FILE]        serve (without --config: the embedded default)
//   tollgate --check-config [FILE]  validate a configuration and exit
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/upstream.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/admin_handler.hpp"
#include "gateway/api_handler.hpp"
#include "metering/prompt_count.hpp"
#include "metering/tokenizer_registry.hpp"
#include "metering/usage.hpp"

namespace {

constexpr const char* version = "0.1.0";

int usage_error(const char* msg) {
  std::fprintf(stderr,
               "tollgate: %s\nusage: tollgate [--config FILE]\n"
               "       tollgate --check-config [FILE]\n",
               msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tollgate;
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--check-config") {
      check_only = true;
      if (i + 1 < argc) config_path = argv[++i];
    } else if (arg == "--version") {
      std::printf("tollgate %s\n", version);
      return 0;
    } else {
      return usage_error(("unknown argument: " + arg).c_str());
    }
  }

  gateway_config config;
  try {
    config = config_path.empty() ? parse_config(embedded_default_config(), process_env())
                                 : load_config_file(config_path, process_env());
  } catch (const config_error& e) {
    std::fprintf(stderr, "tollgate: %s\n", e.what());
    return 2;
  }
  // Each model's prompt counter: its tokenizer (loaded once, shared) and prompt format.
  std::unordered_map<std::string, metering::prompt_counter> counters;
  {
    metering::tokenizer_registry tokenizers(config.metering.tokenizer_dir.empty()
                                                ? metering::default_tokenizer_dir()
                                                : config.metering.tokenizer_dir);
    for (const auto& m : config.models) {
      auto tok = tokenizers.get(m.tokenizer);
      auto counter = tok ? metering::prompt_counter::make(*tok, *metering::parse_prompt_format(m.prompt_format))
                         : result<metering::prompt_counter>(tok.error());
      if (!counter) {
        std::fprintf(stderr, "tollgate: config /models/%s: %s\n", m.name.c_str(),
                     counter.error().message.c_str());
        return 2;
      }
      counters.emplace(m.name, std::move(*counter));
    }
  }
  if (check_only) {
    std::printf("config ok: %zu upstream(s), %zu model(s), listen %s, admin %s\n",
                config.upstreams.size(), config.models.size(),
                config.server.listen.to_string().c_str(),
                config.server.admin_listen.to_string().c_str());
    return 0;
  }

  std::signal(SIGPIPE, SIG_IGN);
  // Keep freed heap memory instead of returning it to the kernel after every burst: the request
  // path allocates and frees the same small sizes all the time, and trimming/regrowing the heap
  // top cost a brk system call and page faults every few requests under load.
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  logger log{stderr, config.logging.level};
  std::FILE* usage_file = stderr;
  if (config.logging.usage_log != "stderr") {
    usage_file = std::fopen(config.logging.usage_log.c_str(), "a");
    if (usage_file == nullptr) {
      std::fprintf(stderr, "tollgate: cannot open usage log %s: %s\n",
                   config.logging.usage_log.c_str(), std::strerror(errno));
      return 1;
    }
  }
  logger usage_log{usage_file, log_level::info};
  metering::log_usage_sink usage_sink{usage_log};

  metrics::registry registry;
  usage_log.count_write_failures(
      &registry
           .add_counter("tollgate_usage_log_write_failures_total",
                        "Usage records that could not be written to the usage log.")
           .get());
  registry
      .add_gauge("tollgate_build_info", "Build information; the value is always 1.", {"version"})
      .with({version})
      .set(1);
  system_clock_source clock;

  try {
    http::server server{http::server_limits::from(config.server), config.server.threads, log,
                        registry};
    std::vector<std::shared_ptr<backends::upstream_pool>> pools;
    for (unsigned i = 0; i < server.thread_count(); ++i) {
      pools.push_back(std::make_shared<backends::upstream_pool>(server.io(i).get_executor()));
    }
    gateway::api_handler api{config, std::move(pools), std::move(counters), usage_sink, registry, log, clock};
    gateway::admin_handler admin{server, registry};
    server.add_listener(
        {"api", config.server.listen, [&api](http::exchange& ex) { return api.handle(ex); }});
    server.add_listener({"admin", config.server.admin_listen,
                         [&admin](http::exchange& ex) { return admin.handle(ex); },
                         /*serve_while_draining=*/true});
    json_object_writer f;
    f.add("version", version)
        .add("threads", server.thread_count())
        .add("models", static_cast<std::int64_t>(config.models.size()))
        .add("config", config_path.empty() ? "embedded default" : config_path);
    log.info("tollgate started", f);
    server.run();
  } catch (const std::exception& e) {
    json_object_writer f;
    f.add("error", e.what());
    log.error("fatal", f);
    return 1;
  }
  if (usage_file != stderr) std::fclose(usage_file);
  return 0;
}
