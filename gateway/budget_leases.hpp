// The gateway's budget leases (docs/BUDGETS.md, "Leases"): the open lease of each budget
// counter, shared by the I/O threads, serves requests from memory; a counter without one (or
// whose lease cannot take the request) gets a new lease in ONE Redis script call for all of
// the request's missing counters. A lease in use that runs low or nears the end of its serving
// time is renewed ahead of need, in the background (a request never waits for that call). A
// flush loop on I/O thread 0 sends every lease's settled usage (and the unused part of closed
// leases) to Redis, one script call per tenant, every budgets.lease_flush_ms while a lease is
// near its limit and every lease_flush_far_ms otherwise, and closes leases that are past their
// serving time or that Redis recalled. An acquire that Redis refuses while closed leases of
// the tenant still hold unused capacity gives that back first and asks once more.
// gateway/budget_guard decides which requests are served this way and calls in here.
#pragma once
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "metering/budgets/lease_engine.hpp"
#include "metering/redis_client.hpp"

namespace tollgate::gateway {

// A request served from leases: one lease per charge, and what it took of each.
struct leased_request {
  bool granted = false;
  std::vector<std::shared_ptr<metering::budget_lease>> leases;
  std::vector<std::int64_t> remaining;  // per charge: what this gateway can still use
  // Refused: as metering::reservation.
  int refused_index = -1;
  std::int64_t refused_remaining = 0;
  std::int64_t refused_reset_ms = 0;
};

class lease_table {
 public:
  // `redis[i]` is I/O thread i's connection (owned by the caller, outliving this table).
  lease_table(const budgets_config& config, std::vector<boost::asio::any_io_executor> executors,
              std::vector<redis::client*> redis, const clock_source& clock,
              metrics::registry& registry, logger& log);

  // Serves the charges (rule ids are counter ids; amounts the worst case) from leases, taking
  // new ones for the counters whose lease cannot: all or nothing. An error: Redis failed.
  // Runs on I/O thread `worker`.
  boost::asio::awaitable<basic_result<leased_request, redis::redis_error>> reserve(
      unsigned worker, const std::string& tenant_id,
      const std::vector<metering::limit_charge>& charges, std::int64_t now_ms);

  // Closes the open leases of a tenant ("": of every tenant), whose budgets changed: their
  // unused capacity goes back at the next flush, or at once when an acquire of the tenant is
  // refused meanwhile (give_back_stranded). Safe from any thread.
  void close_tenant(const std::string& tenant_id);

  // Starts the flush loop on I/O thread 0.
  void start();
  // At shutdown, on I/O thread 0 once no request is left: closes every lease, flushes them
  // (their unused capacity goes back), then calls `done`.
  void drain(std::function<void()> done);

 private:
  struct live_lease {
    std::string tenant_id;
    std::shared_ptr<metering::budget_lease> lease;
  };
  // The charges of a request whose open leases are due for renewal (indexes into its keys and
  // charges), and closes_ when the first was found due.
  struct renewal {
    std::vector<std::size_t> due;
    std::uint64_t closes = 0;
  };
  // Takes each charge not yet served in `out` from its open lease; returns those it could not.
  // Adds to `renew` those whose lease is due for renewal (and marks them renewing_).
  std::vector<std::size_t> take_open(const std::vector<std::string>& keys,
                                     const std::vector<metering::limit_charge>& charges,
                                     std::int64_t now_ms, leased_request& out, renewal& renew);
  // Renews the open leases of `renew` on I/O thread `worker`, in the background.
  void start_renewal(unsigned worker, const std::string& tenant_id,
                     const std::vector<std::string>& keys,
                     const std::vector<metering::limit_charge>& charges, const renewal& renew,
                     std::int64_t now_ms);
  boost::asio::awaitable<void> renew_leases(unsigned worker, std::string tenant_id,
                                            std::vector<std::string> keys,
                                            std::vector<metering::limit_charge> charges,
                                            std::uint64_t closes_before, std::int64_t now_ms);
  // Whether the flush loop flushes now: some lease is near its limit (or its budgets changed)
  // and lease_flush_ms passed, or lease_flush_far_ms passed.
  bool flush_due(std::int64_t since_last_ms);
  boost::asio::awaitable<void> flush_loop();
  // One flush of every live lease; true if Redis recalled one (flush again at once).
  boost::asio::awaitable<bool> flush_once();
  // A lease and what take_flush() took out of it, to be sent.
  struct taken_part {
    std::shared_ptr<metering::budget_lease> lease;
    metering::budget_lease::flush_part part;
  };
  // One script call's parts for one tenant, numbered (lease_engine::flush). A batch whose
  // answer was lost keeps its number and its parts and is sent again before anything new of
  // the tenant: Redis applies each batch once.
  struct flush_batch {
    std::uint64_t sequence = 0;
    std::vector<taken_part> parts;
    std::uint32_t failures = 0;  // sends that failed so far
  };
  // A tenant's flushes: one at a time, on whichever thread sends it.
  struct tenant_flushes {
    bool sending = false;
    std::optional<flush_batch> unanswered;  // failed or timed out: to be sent again
  };
  struct flush_outcome {
    bool sent = false;      // (one batch) Redis answered; else the batch waits to be sent again
    bool recalled = false;  // Redis recalled one of the leases, which is now closed
    bool returned = false;  // some unused capacity went back
  };
  // Takes what each lease has to flush (with `returnable_only`, only closed leases with
  // unused capacity). Under mu_.
  static std::vector<taken_part> take_parts(
      const std::vector<std::shared_ptr<metering::budget_lease>>& leases, bool returnable_only);
  // Flushes the tenant's leases in one script call: first, if there is one, the tenant's
  // unanswered batch, then what the leases have now. Nothing if a flush of the tenant is
  // under way.
  boost::asio::awaitable<flush_outcome> flush_tenant(
      redis::client& redis, const std::string& tenant_id,
      const std::vector<std::shared_ptr<metering::budget_lease>>& leases, bool returnable_only);
  // Sends one batch in one flush script call.
  boost::asio::awaitable<flush_outcome> send_flush(redis::client& redis,
                                                   const std::string& tenant_id,
                                                   const flush_batch& batch);
  // Flushes now, on I/O thread `worker`, the tenant's closed leases that hold capacity they
  // will not use (after the tenant's unanswered batch, if any); with none here, waits for the
  // flushes under way elsewhere (they may carry it). True if an acquire refused before may fit now.
  // Forgets no lease: only flush_once() does.
  boost::asio::awaitable<bool> give_back_stranded(unsigned worker, const std::string& tenant_id);
  // Waits, on I/O thread `worker`, until no flush is under way (at most lease_flush_ms);
  // false at once if none was.
  boost::asio::awaitable<bool> wait_for_flushes(unsigned worker);
  // Forgets the leases that are done, and closed ones in open_. Called by flush_once() only.
  void forget_done();
  boost::asio::awaitable<void> final_flush(std::function<void()> done);
  static std::string open_key(const std::string& tenant_id, const std::string& counter_id);

  const budgets_config& config_;
  std::vector<boost::asio::any_io_executor> executors_;
  std::vector<redis::client*> redis_;
  const clock_source& clock_;
  logger& log_;
  metering::lease_engine engine_;

  std::mutex mu_;  // guards open_, live_, closes_, flushes_ and flush_sequence_
  // How many times close_tenant ran: a lease acquired across one was sized under the budgets
  // as they were before the change, so it serves only the request that took it.
  std::uint64_t closes_ = 0;
  std::unordered_map<std::string, std::shared_ptr<metering::budget_lease>> open_;
  std::vector<live_lease> live_;
  std::unordered_set<std::string> renewing_;  // open_ keys whose renewal is under way
  std::unordered_map<std::string, tenant_flushes> flushes_;  // by tenant id
  std::uint64_t flush_sequence_ = 0;          // the last flush batch's number, over all tenants
  bool draining_ = false;                     // drain() ran: no more renewals
  // Per I/O thread (touched on that thread only): the counters it is taking a lease on, each
  // with a timer cancelled once the lease is in open_; the thread's requests missing one of
  // them meanwhile wait for it instead of taking a second slice.
  std::vector<std::unordered_map<std::string, std::shared_ptr<boost::asio::steady_timer>>>
      acquiring_;

  boost::asio::steady_timer timer_;  // the flush loop's, on I/O thread 0
  bool stopping_ = false;            // I/O thread 0 only
  std::atomic<int> flushing_{0};     // flush_once() under way (on I/O thread 0)
  std::atomic<int> renewals_{0};     // renewals under way, on any I/O thread
  std::atomic<int> stranded_flushes_{0};  // give_back_stranded() calls with parts out
  std::atomic<bool> flush_soon_{false};  // a tenant's budgets changed: flush at the short interval

  struct {
    metrics::counter *leased, *exact, *recalled, *flush_failed, *flush_repeated, *renewed;
  } events_;
};

}  // namespace tollgate::gateway
