// The active health check: for each upstream with a health_check_path, one loop per endpoint on
// one I/O thread that GETs the path every health_check_interval_ms. unhealthy_threshold
// failures in a row (no answer within health_check_timeout_ms, or a status other than 2xx)
// take the endpoint out of rotation; healthy_threshold passes in a row bring it back. The
// verdict is shared state (endpoint_health), so every I/O thread sees it at once.
#pragma once
#include <atomic>
#include <memory>
#include <vector>

#include "backends/upstream.hpp"
#include "core/log.hpp"

namespace tollgate::backends {

class health_checker {
 public:
  // Runs on `pool`'s I/O thread. The upstreams, groups and logger must outlive the loops.
  health_checker(std::shared_ptr<upstream_pool> pool, upstream_groups& groups,
                 const std::vector<upstream_config>& upstreams, logger& log);
  // Starts the loops (none when no upstream has a health_check_path).
  void start();
  // Ends the loops; call on the pool's thread (a drain hook).
  void stop();

 private:
  struct target;
  net::awaitable<void> run(std::shared_ptr<target> t);

  std::shared_ptr<upstream_pool> pool_;
  upstream_groups& groups_;
  const std::vector<upstream_config>& upstreams_;
  logger& log_;
  bool stopping_ = false;
  std::vector<std::shared_ptr<target>> targets_;
};

}  // namespace tollgate::backends
