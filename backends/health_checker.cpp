// Active health checks of upstream endpoints: see health_checker.hpp.
#include "backends/health_checker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/json_text.hpp"

namespace tollgate::backends {

struct health_checker::target {
  target(net::io_context::executor_type ex, const upstream_config& u, upstream_group& g,
         std::size_t i)
      : timer(ex), upstream(u), group(g), endpoint(i) {}
  net::steady_timer timer;
  const upstream_config& upstream;
  upstream_group& group;
  std::size_t endpoint;
  upstream_call* current = nullptr;  // the check in progress, aborted by stop()
  std::uint64_t passes = 0;          // in a row
  std::uint64_t failures = 0;        // in a row
};

health_checker::health_checker(std::shared_ptr<upstream_pool> pool, upstream_groups& groups,
                               const std::vector<upstream_config>& upstreams, logger& log)
    : pool_(std::move(pool)), groups_(groups), upstreams_(upstreams), log_(log) {}

void health_checker::start() {
  for (const auto& u : upstreams_) {
    if (u.health_check_path.empty()) continue;
    upstream_group* g = groups_.find(u.name);
    if (g == nullptr) continue;
    for (std::size_t i = 0; i < u.endpoints.size(); ++i) {
      auto t = std::make_shared<target>(pool_->executor(), u, *g, i);
      targets_.push_back(t);
      net::co_spawn(pool_->executor(), run(t), net::detached);
    }
  }
}

void health_checker::stop() {
  stopping_ = true;
  for (auto& t : targets_) {
    t->timer.cancel();
    if (t->current != nullptr) t->current->abort();
  }
}

net::awaitable<void> health_checker::run(std::shared_ptr<target> t) {
  const upstream_config& u = t->upstream;
  endpoint_state& ep = t->group.endpoint(t->endpoint);
  while (!stopping_) {
    bool pass = false;
    {
      upstream_call call(pool_, u, t->endpoint);
      t->current = &call;
      const std::string_view path = u.health_check_path;
      auto failure = co_await call.get(path, u.health_check_timeout_ms);
      if (!failure && call.status() >= 200 && call.status() < 300) {
        std::string body;
        pass = !(co_await call.read_all(body));
      }
      t->current = nullptr;
    }
    if (stopping_) break;
    (pass ? ep.checks_passed : ep.checks_failed)->inc();
    t->passes = pass ? t->passes + 1 : 0;
    t->failures = pass ? 0 : t->failures + 1;
    const bool down = ep.health.active_down();
    if (!down && t->failures >= u.health_check_unhealthy_threshold) {
      ep.health.set_active_down(true);
      json_object_writer f;
      f.add("upstream", u.name).add("endpoint", ep.config->name);
      log_.warn("upstream endpoint failed its health checks", f);
    } else if (down && t->passes >= u.health_check_healthy_threshold) {
      ep.health.set_active_down(false);
      json_object_writer f;
      f.add("upstream", u.name).add("endpoint", ep.config->name);
      log_.info("upstream endpoint passes its health checks again", f);
    }
    t->timer.expires_after(std::chrono::milliseconds(u.health_check_interval_ms));
    co_await t->timer.async_wait(net::as_tuple(net::use_awaitable));
  }
}

}  // namespace tollgate::backends
