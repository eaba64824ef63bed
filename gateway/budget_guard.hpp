// Budget enforcement on the request path, the I/O side of the budget module
// (metering/budgets/): before forwarding, ONE Redis script reserves the request's worst case
// against every active budget of its tenant, project and key (the policy decides which apply,
// what each is charged, the refusal and the x-ratelimit-* headers); after the response, ONE
// script settles the hold to the actual usage (in the background, never delaying the client,
// batched per I/O thread). A settlement that crosses an alert threshold records the alert for
// the alert dispatcher (webhooks).
// This class owns the per-tenant budget cache, the per-thread Redis connections and the
// settlement batches. Budgets are read from PostgreSQL per tenant and cached. A change made
// through the admin API is published on the Redis channel tg:budgets:changed; every gateway
// subscribes and drops that tenant's cached list at once. The cache also expires after
// budgets.cache_ttl_ms (1 s), which covers changes made while a gateway's subscription was down.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "billing/ledger_writer.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/alert_dispatcher.hpp"
#include "gateway/auth.hpp"
#include "gateway/budget_leases.hpp"
#include "gateway/billing_context.hpp"
#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/cover.hpp"
#include "metering/budgets/policy.hpp"
#include "metering/redis_client.hpp"
#include "metering/usage.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {

// What a granted request carries until it is settled.
struct budget_hold {
  metering::hold_ticket ticket;
  std::vector<metering::budget_metric> metrics;  // per charge
  unsigned worker = 0;               // whose Redis connection settles it
  // How its spend and credit charges are priced: with a plan, the model's worst-case rate
  // under its price book; without, the model's estimate prices.
  metering::spend_pricing pricing;
  std::vector<std::string> budget_ids;  // per charge, for alerts
  std::vector<std::int64_t> limits;     // per charge
  metering::header_list headers;        // x-ratelimit-*
  // Served from leases (gateway/budget_leases): one lease per charge and the worst case it
  // took of each; settled and released in memory. Empty: a hold of its own in Redis.
  std::vector<std::shared_ptr<metering::budget_lease>> leases;
  std::vector<std::int64_t> amounts;
  // Its credit hold covered by token bundles (metering/budgets/cover.hpp): the ticket's last
  // two counters are then the coverage pools.
  std::optional<metering::cover_hold> cover;
};

// One model's share of a batch's worst case (for admitting the batch).
struct batch_demand {
  const model_config* model = nullptr;
  std::int64_t lines = 0;
  std::int64_t prompt_tokens = 0;  // summed over its lines
  std::int64_t max_tokens = 0;     // summed over its lines
};

class budget_guard {
 public:
  // `executors` holds one executor per I/O thread (one Redis connection each).
  budget_guard(const budgets_config& config, const std::vector<model_config>& models,
               const billing_context& billing,
               std::vector<boost::asio::any_io_executor> executors, const clock_source& clock,
               metrics::registry& registry, logger& log);
  ~budget_guard();

  // Reserves for a request. nullopt inside the result: no budget applies, or Redis is away
  // with failure_mode open (counted as unenforced). An error: 429 or 503 to answer with.
  // `worst` is the request's worst case (metering/worst_case.hpp): every prompt and copy.
  // `attributed`: the request's end user, tags and session, for the budgets on those.
  // `batch`: a batch line (token bundles do not pay for it, so they do not cover its hold).
  boost::asio::awaitable<result<std::optional<budget_hold>>> reserve(
      unsigned worker, const caller& who, const metering::attribution& attributed,
      const model_config& model, std::string request_id, metering::worst_case_tokens worst,
      bool batch);

  // Whether a batch's worst case (every line's prompt + max_tokens, one request each, and
  // their spend) fits what each hard budget of the caller has left now; per-minute windows are
  // left out (they pace the batch's lines). A 429 insufficient_quota (402 for credit) names the
  // budget that cannot take it. Nothing is held: each line reserves when it runs.
  boost::asio::awaitable<result<bool>> admit_batch(unsigned worker, const caller& who,
                                                   std::vector<batch_demand> demand);

  // Settles in the background to the usage the ledger bills: its tokens, one request, and
  // their estimated spend. Called on the hold's I/O thread. Settlements wait up to
  // budgets.settle_batch_ms so that those of one thread go to Redis together: one write for
  // the batch and one read of the answers, on either side, instead of one of each per request.
  void settle(budget_hold hold, std::int64_t prompt_tokens, std::int64_t completion_tokens);

  // Gives a hold back without counting anything against its budgets, not even the request: a
  // request moving to a fallback model, whose own hold then counts it. ONE Redis script,
  // awaited, so that a reservation made next sees the budgets without this hold. A failure
  // leaves the hold to expire. Called on the hold's I/O thread.
  boost::asio::awaitable<void> release(budget_hold hold);
  // As release(), then forgets the request, so that its id may hold again: a batch line that
  // the upstream's concurrency cap turned away goes back to wait and runs later under the same
  // request id (otherwise the reservation would find the request settled and hold nothing).
  boost::asio::awaitable<void> release_for_rerun(budget_hold hold);

  // Writes into `rec` (before it is recorded) the spend its settlement counts and on which
  // counters, so that the ledger writer can correct them to what it bills.
  // A covered hold also notes the tokens of classes its pools do not pay (for its settlement).
  void describe_settlement(budget_hold& hold, metering::usage_record& rec) const;

  // The ledger writer rated and committed events: adds billed minus settled to their spend
  // counters (only those that still exist), one script per tenant on I/O thread 0. Called on
  // the billing thread.
  void apply_spend_corrections(std::vector<billing::spend_correction> corrections);

  // A tenant's budgets changed (called by the admin API): drop them from this gateway's cache
  // and tell every other gateway through Redis pub/sub.
  void budgets_changed(const std::string& tenant_id);

  // The budgets that cover a caller (its tenant's, its project's and its key's, whatever their
  // models) with what each counts now, as GET /v1/budgets answers them:
  // {"object":"list","data":[…]} (metering::budget_status_object). One Redis script call; a
  // 503 when budgets or their counters cannot be read. Runs on I/O thread `worker`.
  // With `attributed` (an end user, tags or a session named by the caller), also the budgets on
  // those that would count a request of the caller's with that attribution, with that value's
  // counter.
  boost::asio::awaitable<result<std::string>> list_for(unsigned worker, const caller& who,
                                                       metering::attribution attributed);

  // What each of one tenant's budgets counts now, for the admin API's budget objects; nullopt
  // when Redis cannot be read. Runs on I/O thread `worker`.
  // `attributed` (null: none; it must outlive the call): whose counter a budget on an
  // attribution dimension reads. (No default argument made of a temporary: GCC 12 mishandles
  // temporaries made inside a co_await expression.)
  boost::asio::awaitable<std::optional<std::vector<metering::window_usage>>> usage_of(
      unsigned worker, std::string tenant_id, std::vector<metering::budget_info> budgets,
      const metering::attribution* attributed = nullptr);

  // Rebuilds the Redis counters of the tenant's active budgets, for their current windows (and
  // every bucket of sliding ones), from the PostgreSQL ledger: after Redis lost data.
  // Holds in flight are kept. Returns a JSON list saying, per counter, what the ledger holds,
  // what Redis said before and the difference. Runs on I/O thread `worker`.
  boost::asio::awaitable<result<std::string>> reconcile(unsigned worker, std::string tenant_id);

  // Ends the pub/sub subscription (before the billing thread stops); the destructor calls it.
  void stop();

  // Closes the Redis connection of one I/O thread for good (at shutdown, on that thread), once
  // the settlements already started or waiting for their batch have their answers; settlements
  // after it are skipped (their holds expire), so the thread can end.
  void close(unsigned worker);

 private:
  // Shared, never modified once cached: requests read it without copying.
  using budget_list = std::shared_ptr<const std::vector<metering::budget_info>>;
  struct cached {
    budget_list budgets;
    std::chrono::steady_clock::time_point fetched;  // {}: to be fetched again before any use
    bool refreshing = false;  // a request is fetching it again; the others use it meanwhile
  };
  // The per-tenant budget cache, shared with the pub/sub watcher on the billing thread.
  struct budget_cache {
    std::mutex mu;
    std::unordered_map<std::string, cached> by_tenant;
    std::uint64_t changes = 0;  // bumped by every invalidation: a fetch that raced one is not kept
  };
  // The pub/sub side, on the billing thread: one subscribed connection and one for PUBLISH.
  struct change_feed;

  boost::asio::awaitable<budget_list> budgets_of(
      const std::string& tenant_id);
  static boost::asio::awaitable<void> watch_changes(std::shared_ptr<change_feed> feed);
  static boost::asio::awaitable<void> publish_change(std::shared_ptr<change_feed> feed,
                                                     std::string tenant_id);
  result<std::optional<budget_hold>> redis_unavailable(const std::string& tenant_id,
                                                       const redis::redis_error& e);
  // A request served from leases: its worst case back to them, less what it counts.
  void settle_leased(const budget_hold& hold, std::int64_t prompt_tokens,
                     std::int64_t completion_tokens, bool release);
  // `release`: count nothing (every charge's actual usage 0).
  boost::asio::awaitable<void> settle_now(budget_hold hold, std::int64_t prompt_tokens,
                                          std::int64_t completion_tokens, bool release);
  boost::asio::awaitable<void> correct_tenant(std::string tenant_id,
                                              std::vector<std::string> counters,
                                              std::vector<std::int64_t> deltas);
  void flush_settlements(unsigned worker);
  void settlement_answered(unsigned worker);

  struct settle_queue;  // the settlements of one I/O thread waiting for their batch to go

  const budgets_config& config_;
  const std::vector<model_config>& models_;
  const billing_context& billing_;
  std::vector<boost::asio::any_io_executor> executors_;
  std::vector<std::unique_ptr<redis::client>> redis_;  // one per I/O thread
  std::vector<char> closed_;  // per I/O thread, touched only on that thread
  std::vector<std::unique_ptr<settle_queue>> settle_queues_;  // likewise
  std::unique_ptr<lease_table> leases_;  // null: budgets.leases off
  metering::budget_engine engine_;
  const clock_source& clock_;
  logger& log_;

  std::unique_ptr<alert_dispatcher> alerts_;
  std::shared_ptr<budget_cache> cache_;
  std::shared_ptr<change_feed> feed_;
  std::future<void> watching_;

  metrics::family<metrics::counter>& outcomes_;
  metrics::family<metrics::counter>& settles_;
  // Their children, looked up once: no family mutex on the request path.
  struct {
    metrics::counter *granted, *refused, *no_budget, *unenforced, *unavailable;
  } reserved_;
  struct {
    metrics::counter *settled, *repeated, *failed;
  } settled_;
  // What the ledger's correction listener calls through (null once this guard is destroyed).
  struct correction_target {
    explicit correction_target(budget_guard* g) : guard(g) {}
    std::mutex mu;
    budget_guard* guard;
  };
  std::shared_ptr<correction_target> correction_target_;
  metrics::family<metrics::counter>& corrections_;
};

// Answers GET /v1/budgets for an authenticated caller (budget_guard::list_for); a 404 when
// budgets are off on this gateway (`budgets` null) or the caller has no tenant. The query may
// name an attribution: `end_user`, `session`, `tags` (key=value,...), merged over the key's
// default tags as a request's would be; a bad value is a 400 naming it.
boost::asio::awaitable<void> send_budget_list(http::exchange& ex, budget_guard* budgets,
                                              const caller& who, const std::string& request_id);

}  // namespace tollgate::gateway
