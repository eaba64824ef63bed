// The batch worker inside the gateway: runs the lines of running batches through the same
// metered path as live traffic (api_handler::run_batch_line: counting, budget holds, the
// ledger), flagged batch so they are priced with the plan's batch discount.
//
// - `batches.concurrency` runners, spread over the I/O threads, each claim one line at a time
//   from PostgreSQL under a lease (batch_store::claim_line), run it and store its output or
//   error line. Runners start no new line while `batches.yield_to_live_requests` live
//   requests are in flight: live traffic keeps its latency.
// - A coordinator on the billing thread renews this gateway's leases and moves batches along
//   their lifecycle (in_progress -> completed / expired / cancelled, output and error files).
// - Restart safety: a line's request id and usage time are fixed when it is first claimed, so
//   a line whose gateway died mid-run runs again (its lease lapses) and its usage is still
//   stored once; finished lines are never run again.
// Several gateways may run workers against one database: leases keep them off each other's
// lines.
// - Revocation: before each line the batch's key is checked again (authenticator's cache): a
//   revoked or expired key, or a disabled tenant or project, fails the line with that 401.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "billing/batch_store.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/billing_context.hpp"

namespace tollgate::gateway {

class api_handler;
class authenticator;

// The output or error file line of a finished batch line, OpenAI's shape:
// {"id":"batch_req_…","custom_id":…,"response":{"status_code":…,"request_id":…,"body":…},
//  "error":null}, newline-terminated. A body that is not JSON is kept as a JSON string.
std::string batch_result_line(const billing::claimed_batch_line& line, unsigned status,
                              const std::string& body);

class batch_worker {
 public:
  batch_worker(const batches_config& config, const billing_context& billing,
               billing::batch_store& store, api_handler& api, http::server& server, logger& log,
               metrics::registry& registry);

  // Checks each line's key through `auth` before running it (set before start()).
  void check_keys_with(authenticator* auth) { auth_ = auth; }
  // Starts the runners and the coordinator; the runners stop when the server's drain ends.
  void start();
  // Stops the coordinator and waits for it (the billing thread must still be running).
  ~batch_worker();

 private:
  boost::asio::awaitable<void> run_lines(unsigned worker,
                                         std::shared_ptr<boost::asio::steady_timer> timer);
  boost::asio::awaitable<void> coordinate();
  // Waits `ms` on the runner's timer; false once the worker is stopping.
  boost::asio::awaitable<bool> pause(boost::asio::steady_timer& timer, std::uint64_t ms);

  const batches_config& config_;
  const billing_context& billing_;
  billing::batch_store& store_;
  api_handler& api_;
  authenticator* auth_ = nullptr;
  http::server& server_;
  logger& log_;
  std::string owner_;  // this process's lease owner id
  std::atomic<bool> stopping_{false};
  std::atomic<bool> coordinator_stopping_{false};
  std::unique_ptr<boost::asio::steady_timer> coordinator_timer_;  // on the billing executor
  std::future<void> coordinating_;
  // Per I/O thread: its runners' timers (cancelled by the drain hook, on that thread).
  std::vector<std::vector<std::shared_ptr<boost::asio::steady_timer>>> timers_;
  metrics::family<metrics::counter>& lines_;
  metrics::counter& lines_ok_;
  metrics::counter& lines_failed_;
  metrics::counter& lines_retried_;
};

}  // namespace tollgate::gateway
