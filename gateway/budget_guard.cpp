// Budget enforcement: see budget_guard.hpp.
#include "gateway/budget_guard.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include "billing/budget_store.hpp"
#include "core/json_text.hpp"
#include "metering/budgets/alerts.hpp"
#include "gateway/query_params.hpp"
#include "metering/budgets/reconcile.hpp"

#include <functional>
#include <map>

namespace tollgate::gateway {

namespace net = boost::asio;

namespace {

const char* const changes_channel = "tg:budgets:changed";
constexpr auto feed_check_interval = std::chrono::seconds(2);

}  // namespace

struct budget_guard::change_feed {
  change_feed(net::any_io_executor ex, const redis::settings& rs, std::shared_ptr<budget_cache> c,
              logger& l)
      : subscriber(ex, rs), publisher(ex, rs), timer(ex), cache(std::move(c)), log(l) {}
  redis::client subscriber;
  redis::client publisher;
  net::steady_timer timer;
  std::shared_ptr<budget_cache> cache;
  logger& log;
  bool stopping = false;  // touched on the billing thread only
  // Called with a changed tenant ("" for every tenant): closes its budget leases.
  std::function<void(const std::string&)> on_change;
};

struct budget_guard::settle_queue {
  struct entry {
    budget_hold hold;
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
  };
  explicit settle_queue(const net::any_io_executor& ex) : timer(ex) {}
  std::vector<entry> waiting;
  net::steady_timer timer;
  int started = 0;  // settlements started and not answered yet
};

budget_guard::budget_guard(const budgets_config& config, const std::vector<model_config>& models,
                           const billing_context& billing,
                           std::vector<net::any_io_executor> executors, const clock_source& clock,
                           metrics::registry& registry, logger& log)
    : config_(config),
      models_(models),
      billing_(billing),
      executors_(std::move(executors)),
      engine_(std::chrono::milliseconds(config.hold_ttl_ms)),
      clock_(clock),
      log_(log),
      outcomes_(registry.add_counter("tollgate_budget_reservations_total",
                                     "Budget reservations by outcome (granted, refused, "
                                     "no_budget, unenforced, unavailable).",
                                     {"outcome"})),
      settles_(registry.add_counter("tollgate_budget_settlements_total",
                                    "Budget settlements by outcome (settled, repeated, failed).",
                                    {"outcome"})),
      reserved_{&outcomes_.with({"granted"}), &outcomes_.with({"refused"}),
                &outcomes_.with({"no_budget"}), &outcomes_.with({"unenforced"}),
                &outcomes_.with({"unavailable"})},
      settled_{&settles_.with({"settled"}), &settles_.with({"repeated"}),
               &settles_.with({"failed"})},
      correction_target_(std::make_shared<correction_target>(this)),
      corrections_(registry.add_counter(
          "tollgate_budget_spend_corrections_total",
          "Spend counters corrected to what the ledger billed, by outcome (applied, missing: "
          "the counter had expired, failed).",
          {"outcome"})) {
  redis::settings rs;
  rs.host = config.redis_nodes.at(0).host;
  rs.port = config.redis_nodes.at(0).port;
  rs.cluster = config.redis_cluster;
  rs.tls.enabled = config.redis_tls;
  rs.tls.ca_file = config.redis_tls_ca_file;
  rs.tls.cert_file = config.redis_tls_cert_file;
  rs.tls.key_file = config.redis_tls_key_file;
  rs.tls.server_name = config.redis_tls_server_name;
  for (std::size_t i = 1; i < config.redis_nodes.size(); ++i) {
    rs.more_seeds.push_back({config.redis_nodes[i].host, config.redis_nodes[i].port});
  }
  rs.password = config.redis_password;
  rs.command_timeout = std::chrono::milliseconds(config.command_timeout_ms);
  for (const auto& ex : executors_) redis_.push_back(std::make_unique<redis::client>(ex, rs));
  closed_.assign(executors_.size(), 0);
  for (const auto& ex : executors_) settle_queues_.push_back(std::make_unique<settle_queue>(ex));
  if (config.leases) {
    std::vector<redis::client*> conns;
    for (auto& c : redis_) conns.push_back(c.get());
    leases_ = std::make_unique<lease_table>(config, executors_, std::move(conns), clock, registry,
                                            log_);
    leases_->start();
  }
  alerts_ = std::make_unique<alert_dispatcher>(
      billing_, static_cast<int>(config.alert_max_attempts), config.alert_webhook_ca_file, registry,
      log_, config.alert_webhook_allow_private,
      std::chrono::milliseconds(config.forecast_alert_interval_ms));
  cache_ = std::make_shared<budget_cache>();
  feed_ = std::make_shared<change_feed>(billing_.executor, rs, cache_, log_);
  if (leases_ != nullptr) {
    // A lease was sized under the budgets as they were: a change ends it (what it did not use
    // goes back at the next flush) and the next request leases under the new budgets.
    feed_->on_change = [leases = leases_.get()](const std::string& t) { leases->close_tenant(t); };
  }
  watching_ = net::co_spawn(billing_.executor, watch_changes(feed_), net::use_future);
  if (billing_.ledger != nullptr) {
    // The listener reaches this guard through a pointer the destructor clears under a lock, so
    // a commit on the billing thread never calls into a guard that is gone.
    net::post(billing_.executor, [target = correction_target_, ledger = billing_.ledger] {
      ledger->on_spend_corrections([target](std::vector<billing::spend_correction> c) {
        std::lock_guard lock(target->mu);
        if (target->guard != nullptr) target->guard->apply_spend_corrections(std::move(c));
      });
    });
  }
}

budget_guard::~budget_guard() {
  {
    std::lock_guard lock(correction_target_->mu);
    correction_target_->guard = nullptr;
  }
  stop();
}

void budget_guard::stop() {
  alerts_->stop();
  if (!watching_.valid()) return;
  net::post(billing_.executor, [feed = feed_] {
    feed->stopping = true;
    feed->subscriber.shutdown();
    feed->publisher.shutdown();
    feed->timer.cancel();
  });
  watching_.wait_for(std::chrono::seconds(5));
  watching_ = {};
}

void budget_guard::budgets_changed(const std::string& tenant_id) {
  {
    std::lock_guard lock(cache_->mu);
    cache_->by_tenant.erase(tenant_id);
    ++cache_->changes;
  }
  if (leases_ != nullptr) leases_->close_tenant(tenant_id);
  net::co_spawn(billing_.executor, publish_change(feed_, tenant_id), net::detached);
}

net::awaitable<void> budget_guard::publish_change(std::shared_ptr<change_feed> feed,
                                                  std::string tenant_id) {
  if (feed->stopping) co_return;
  std::vector<std::string> cmd{"PUBLISH", changes_channel, tenant_id};
  auto r = co_await feed->publisher.command(std::move(cmd));
  if (!r || r->is_error()) {
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", r ? r->str : r.error().message);
    feed->log.warn("budgets: could not announce a budget change; other gateways see it "
                   "when their cache expires",
                   f);
  }
}

// Keeps the subscription up: (re)subscribes when the connection is down, PINGs it every few
// seconds so that a dead connection is noticed, and drops the whole cache after every
// (re)subscription, since changes published while it was down were missed.
net::awaitable<void> budget_guard::watch_changes(std::shared_ptr<change_feed> feed) {
  feed->subscriber.on_message([cache = feed->cache, changed = feed->on_change](
                                  const std::string&, const std::string& tenant) {
    {
      std::lock_guard lock(cache->mu);
      cache->by_tenant.erase(tenant);
      ++cache->changes;
    }
    if (changed && !tenant.empty()) changed(tenant);
  });
  while (!feed->stopping) {
    if (!feed->subscriber.connected()) {
      std::vector<std::string> cmd{"SUBSCRIBE", changes_channel};
      auto r = co_await feed->subscriber.command(std::move(cmd));
      if (r && !r->is_error()) {
        {
          std::lock_guard lock(feed->cache->mu);
          feed->cache->by_tenant.clear();
          ++feed->cache->changes;
        }
        if (feed->on_change) feed->on_change("");
      }
    } else {
      std::vector<std::string> cmd{"PING"};
      co_await feed->subscriber.command(std::move(cmd));  // a failure closes the connection
    }
    if (feed->stopping) break;
    feed->timer.expires_after(feed_check_interval);
    co_await feed->timer.async_wait(net::as_tuple(net::use_awaitable));
  }
}

// The tenant's active budgets (null: unknown, the database being away and nothing cached).
net::awaitable<budget_guard::budget_list> budget_guard::budgets_of(
    const std::string& tenant_id) {
  const auto now = clock_.mono_now();
  const std::int64_t now_ms = unix_ms(clock_.wall_now());
  const auto ttl = std::chrono::milliseconds(config_.cache_ttl_ms);
  std::uint64_t changes_before = 0;
  {
    std::lock_guard lock(cache_->mu);
    if (auto it = cache_->by_tenant.find(tenant_id); it != cache_->by_tenant.end()) {
      auto& entry = it->second;
      // Usable unless a time-zone window it carries has ended, or the month its plan was
      // read in (a new month may bring another book, and the ledger rates by the month's
      // plan).
      bool current = true;
      for (const auto& b : *entry.budgets) {
        if (b.zone_end_ms > 0 && now_ms >= b.zone_end_ms) current = false;
        if (b.plan_until_ms > 0 && now_ms >= b.plan_until_ms) current = false;
      }
      if (current && now - entry.fetched < ttl) co_return entry.budgets;
      // Expired by time only (a change announced over pub/sub removes the entry): one request
      // fetches it again and the tenant's other requests use it meanwhile, instead of every
      // request waiting for the database at every expiry. Never for more than another ttl.
      if (current && entry.fetched != std::chrono::steady_clock::time_point{} &&
          now - entry.fetched < 2 * ttl) {
        if (entry.refreshing) co_return entry.budgets;
        entry.refreshing = true;
      }
    }
    changes_before = cache_->changes;
  }
  auto op = billing_.budgets->active_budgets(tenant_id, now_ms);
  auto fetched = co_await on_billing(billing_, std::move(op));
  std::lock_guard lock(cache_->mu);
  if (!fetched) {
    // The database is away: keep enforcing what we knew.
    if (auto it = cache_->by_tenant.find(tenant_id); it != cache_->by_tenant.end()) {
      it->second.refreshing = false;
      co_return it->second.budgets;
    }
    co_return nullptr;
  }
  // A change announced while this fetch ran may not be in it: use it once, keep it expired.
  const auto fetched_at =
      cache_->changes == changes_before ? now : std::chrono::steady_clock::time_point{};
  auto list = std::make_shared<const std::vector<metering::budget_info>>(std::move(*fetched));
  cache_->by_tenant[tenant_id] = cached{list, fetched_at, false};
  co_return list;
}

// Redis could not be asked: serve unenforced (failure_mode open) or answer 503.
result<std::optional<budget_hold>> budget_guard::redis_unavailable(const std::string& tenant_id,
                                                                   const redis::redis_error& e) {
  if (config_.failure_mode == "open") {
    reserved_.unenforced->inc();
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", e.message);
    log_.warn("budgets: Redis unreachable; serving unenforced (failure_mode open)", f);
    return std::optional<budget_hold>{};
  }
  reserved_.unavailable->inc();
  return service_unavailable(
      "Budgets cannot be checked right now (Redis is unreachable); please retry shortly.",
      "service_unavailable", 1);
}

net::awaitable<result<std::optional<budget_hold>>> budget_guard::reserve(
    unsigned worker, const caller& who, const metering::attribution& attributed,
    const model_config& model, std::string request_id, metering::worst_case_tokens worst,
    bool batch) {
  auto all = co_await budgets_of(who.tenant_id);
  if (!all) {
    reserved_.unavailable->inc();
    co_return service_unavailable("Budgets cannot be checked right now; please retry shortly.",
                                  "service_unavailable", 1);
  }
  // Pointers into *all, which stays alive here.
  const auto applying =
      metering::applying_budgets(*all, who.project_id, who.key_id, model.name, attributed);
  if (applying.empty()) {
    reserved_.no_budget->inc();
    co_return std::optional<budget_hold>{};
  }
  const std::int64_t now_ms = unix_ms(clock_.wall_now());
  budget_hold hold;
  // A tenant with a plan: spend and credit at the worst case under its price book (the
  // model's rates, or the book's "*" rates; none: a model the book does not price costs 0).
  hold.pricing = metering::spend_pricing_for(applying, model.name, model.estimate_input_price,
                                             model.estimate_output_price);
  const metering::request_amounts asked = metering::worst_case_amounts(worst, hold.pricing);
  std::vector<metering::limit_charge> charges;
  std::vector<std::int64_t> amounts;
  charges.reserve(applying.size());
  amounts.reserve(applying.size());
  hold.metrics.reserve(applying.size());
  hold.budget_ids.reserve(applying.size());
  hold.limits.reserve(applying.size());
  for (const auto* b : applying) {
    metering::limit_charge c;
    c.rule = metering::rule_of(*b, now_ms);
    c.rule.id = metering::counter_id_for(*b, attributed);
    c.amount = metering::charge_of(b->metric, asked);
    amounts.push_back(c.amount);
    charges.push_back(std::move(c));
    hold.metrics.push_back(b->metric);
    hold.budget_ids.push_back(b->id);
    hold.limits.push_back(b->limit);
  }
  if (leases_ != nullptr && metering::leasable(applying)) {
    auto leased = co_await leases_->reserve(worker, who.tenant_id, charges, now_ms);
    if (!leased) co_return redis_unavailable(who.tenant_id, leased.error());
    if (!leased->granted) {
      reserved_.refused->inc();
      const auto i = static_cast<std::size_t>(leased->refused_index);
      co_return metering::budget_refusal(*applying[i], leased->refused_remaining, amounts[i],
                                         leased->refused_reset_ms);
    }
    reserved_.granted->inc();
    hold.worker = worker;
    hold.ticket.tenant_id = who.tenant_id;
    hold.ticket.request_id = std::move(request_id);
    hold.ticket.counter_keys.reserve(leased->leases.size());
    for (const auto& l : leased->leases) hold.ticket.counter_keys.push_back(l->grant().counter_key);
    hold.headers = metering::ratelimit_headers(applying, leased->remaining, now_ms);
    hold.leases = std::move(leased->leases);
    hold.amounts = std::move(amounts);
    co_return std::optional<budget_hold>{std::move(hold)};
  }
  // A credit_only tenant's token bundles of the model cover its credit hold (the script
  // computes the credit charge); batch lines are not paid by bundles.
  std::optional<metering::cover_ask> cover;
  if (!batch && hold.pricing.plan_priced) {
    cover = metering::cover_ask_for(applying, model.name, worst.prompt_tokens,
                                    worst.completion_tokens, hold.pricing.plan_rate);
  }
  // Named arguments: GCC 12 mishandles temporaries made inside a co_await expression.
  std::string tenant = who.tenant_id;
  const metering::cover_ask* covering = cover ? &*cover : nullptr;
  auto r = co_await engine_.reserve(*redis_[worker], std::move(tenant), std::move(request_id),
                                    std::move(charges), now_ms, covering);
  if (!r) co_return redis_unavailable(who.tenant_id, r.error());
  if (cover) amounts[cover->charge] = r->credit_amount;
  if (!r->granted) {
    reserved_.refused->inc();
    const auto i = static_cast<std::size_t>(r->refused_index);
    co_return metering::budget_refusal(*applying[i], r->refused_remaining, amounts[i],
                                       r->refused_reset_ms);
  }
  reserved_.granted->inc();
  if (cover) hold.cover = metering::cover_hold{cover->charge, r->covered, cover->rate};
  hold.ticket = std::move(r->ticket);
  hold.worker = worker;
  // OpenAI's headers from the tightest request and token limits.
  hold.headers = metering::ratelimit_headers(applying, r->remaining, now_ms);
  co_return std::optional<budget_hold>{std::move(hold)};
}

net::awaitable<result<bool>> budget_guard::admit_batch(unsigned worker, const caller& who,
                                                       std::vector<batch_demand> demand) {
  auto all = co_await budgets_of(who.tenant_id);
  if (!all) {
    co_return service_unavailable("Budgets cannot be checked right now; please retry shortly.",
                                  "service_unavailable", 1);
  }
  std::vector<metering::batch_share> shares;
  for (const auto& d : demand) {
    shares.push_back({d.model->name, d.model->estimate_input_price, d.model->estimate_output_price,
                      d.lines, d.prompt_tokens, d.max_tokens});
  }
  const std::int64_t now_ms = unix_ms(clock_.wall_now());
  for (const auto& b : *all) {
    // Budgets on end users, tags and sessions are left to the lines (which may each name
    // another): only the caller's own budgets judge the whole batch.
    if (metering::attribution_scope(b.scope) ||
        !metering::budget_applies(b, who.project_id, who.key_id) ||
        !metering::refuses_batches(b)) {
      continue;
    }
    const std::int64_t needed = metering::batch_charge(b, shares);
    if (needed == 0) continue;  // none of the batch's models counts against it
    std::string tenant = who.tenant_id;
    metering::limit_rule rule = metering::rule_of(b, now_ms);
    auto used = co_await engine_.used(*redis_[worker], std::move(tenant), std::move(rule), now_ms);
    if (!used) {
      if (config_.failure_mode == "open") continue;
      co_return service_unavailable(
          "Budgets cannot be checked right now (Redis is unreachable); please retry shortly.",
          "service_unavailable", 1);
    }
    const std::int64_t remaining = b.limit - *used;
    if (needed > remaining) {
      co_return metering::budget_refusal(b, remaining, needed, 0, "this batch's worst case");
    }
  }
  co_return true;
}

net::awaitable<result<std::string>> budget_guard::list_for(unsigned worker, const caller& who,
                                                           metering::attribution attributed) {
  auto all = co_await budgets_of(who.tenant_id);
  if (!all) {
    co_return service_unavailable("Budgets cannot be read right now; please retry shortly.",
                                  "service_unavailable", 1);
  }
  const auto listed = metering::listed_budgets(*all, who.project_id, who.key_id, attributed);
  std::vector<metering::budget_info> budgets;
  for (const auto* b : listed) budgets.push_back(*b);
  auto usage = co_await usage_of(worker, who.tenant_id, budgets, &attributed);
  if (!usage) {
    co_return service_unavailable(
        "Budgets cannot be read right now (Redis is unreachable); please retry shortly.",
        "service_unavailable", 1);
  }
  json_array_writer data;
  for (std::size_t i = 0; i < budgets.size(); ++i) {
    data.add_raw(metering::budget_status_object(budgets[i], &(*usage)[i]));
  }
  co_return "{\"object\":\"list\",\"data\":" + data.finish() + "}";
}

net::awaitable<std::optional<std::vector<metering::window_usage>>> budget_guard::usage_of(
    unsigned worker, std::string tenant_id, std::vector<metering::budget_info> budgets,
    const metering::attribution* attributed) {
  const std::int64_t now_ms = unix_ms(clock_.wall_now());
  std::vector<metering::limit_rule> rules;
  for (const auto& b : budgets) {
    rules.push_back(metering::rule_of(b, now_ms));
    if (attributed != nullptr && metering::subject_of(b, *attributed)) {
      rules.back().id = metering::counter_id_for(b, *attributed);
    }
  }
  std::string tenant = tenant_id;
  auto usage = co_await engine_.usage(*redis_[worker], std::move(tenant), std::move(rules), now_ms);
  if (!usage) {
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", usage.error().message);
    log_.warn("budgets: cannot read the budgets' counters", f);
    co_return std::nullopt;
  }
  co_return std::move(*usage);
}

net::awaitable<result<std::string>> budget_guard::reconcile(unsigned worker,
                                                            std::string tenant_id) {
  const std::int64_t now_ms = unix_ms(clock_.wall_now());
  std::vector<metering::ledger_budget_query::model_price> prices;
  for (const auto& m : models_) {
    prices.push_back({m.name, m.estimate_input_price, m.estimate_output_price});
  }
  auto op = billing_.budgets->active_budgets(tenant_id, now_ms);
  auto budgets = co_await on_billing(billing_, std::move(op));
  if (!budgets) {
    co_return service_unavailable("The database is unreachable: " + budgets.error().message,
                                  "service_unavailable", 1);
  }
  std::vector<metering::reconcile_difference> rows;
  for (const auto& span : metering::reconcile_spans(*budgets, now_ms)) {
    const metering::budget_info& b = (*budgets)[span.budget];
    // The credit mirror: what the ledger has drawn from the grants it counts (read with the
    // budget). Any other budget: the ledger's usage in the window, per value for a budget that
    // counts each end user, tag value or session.
    pg::db_result<std::vector<metering::subject_usage>> ledger =
        std::vector<metering::subject_usage>{{"", b.credit_used}};
    if (auto q = metering::ledger_query_of(b, tenant_id, span, prices)) {
      auto usage_op = billing_.budgets->ledger_usage(std::move(*q));
      ledger = co_await on_billing(billing_, std::move(usage_op));
    }
    if (!ledger) {
      co_return service_unavailable("The database is unreachable: " + ledger.error().message,
                                    "service_unavailable", 1);
    }
    const bool each = metering::counts_each(b.scope, b.scope_id);
    for (const auto& [subject, used] : *ledger) {
      std::string tenant = tenant_id;
      metering::limit_rule rule = span.rule;
      if (each) rule.id = metering::subject_counter_id(b.id, subject);
      const std::string counter = rule.id;
      auto before = co_await engine_.set_used(*redis_[worker], std::move(tenant), std::move(rule),
                                              span.from_ms, used, now_ms);
      if (!before) {
        co_return service_unavailable("Redis is unreachable: " + before.error().message,
                                      "service_unavailable", 1);
      }
      rows.push_back({b.id, counter, b.metric, b.window, span.from_ms, used, *before});
    }
  }
  // The credit mirror's coverage pools: what the ledger has drawn of their bundles.
  for (const auto& b : *budgets) {
    for (const auto& pool : b.cover_pools) {
      std::string tenant = tenant_id;
      metering::limit_rule rule;
      rule.id = pool.id;
      rule.window = metering::budget_window::lifetime;
      auto before = co_await engine_.set_used(*redis_[worker], std::move(tenant), std::move(rule),
                                              0, pool.used, now_ms);
      if (!before) {
        co_return service_unavailable("Redis is unreachable: " + before.error().message,
                                      "service_unavailable", 1);
      }
      rows.push_back({b.id, pool.id, metering::budget_metric::tokens,
                      metering::budget_window::lifetime, 0, pool.used, *before});
    }
  }
  if (!budgets->empty()) {
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("budgets", static_cast<std::int64_t>(budgets->size()));
    log_.info("budgets: counters rebuilt from the ledger", f);
  }
  co_return metering::reconcile_report(rows);
}

void budget_guard::settle_leased(const budget_hold& hold, std::int64_t prompt_tokens,
                                 std::int64_t completion_tokens, bool release) {
  const metering::request_amounts used =
      metering::actual_amounts(prompt_tokens, completion_tokens, hold.pricing);
  for (std::size_t i = 0; i < hold.leases.size(); ++i) {
    const std::int64_t actual = release ? 0 : metering::charge_of(hold.metrics[i], used);
    hold.leases[i]->finish(hold.amounts[i], actual);
  }
  settled_.settled->inc();
}

void budget_guard::settle(budget_hold hold, std::int64_t prompt_tokens,
                          std::int64_t completion_tokens) {
  if (!hold.leases.empty()) {
    // In memory: the lease table's flush sends it to Redis with the others.
    settle_leased(hold, prompt_tokens, completion_tokens, false);
    return;
  }
  const unsigned worker = hold.worker;
  if (closed_[worker]) {
    settled_.failed->inc();  // shutting down: the hold expires by itself
    return;
  }
  auto& queue = *settle_queues_[worker];
  queue.waiting.push_back({std::move(hold), prompt_tokens, completion_tokens});
  if (queue.waiting.size() > 1) return;  // the batch's timer is running
  queue.timer.expires_after(std::chrono::milliseconds(config_.settle_batch_ms));
  queue.timer.async_wait([this, worker](boost::system::error_code) { flush_settlements(worker); });
}

// Starts every waiting settlement of the thread at once: their commands reach the Redis
// client's send buffer before its writer runs, so they go in one write.
void budget_guard::flush_settlements(unsigned worker) {
  std::vector<settle_queue::entry> batch;
  batch.swap(settle_queues_[worker]->waiting);
  for (auto& s : batch) {
    ++settle_queues_[worker]->started;
    net::co_spawn(executors_[worker],
                  settle_now(std::move(s.hold), s.prompt_tokens, s.completion_tokens, false),
                  net::detached);
  }
}

void budget_guard::close(unsigned worker) {
  closed_[worker] = 1;  // settlements from now on are given up: their holds expire
  // The waiting ones go now; the connection closes once every started one has its answer.
  settle_queues_[worker]->timer.cancel();
  flush_settlements(worker);
  if (worker == 0 && leases_ != nullptr) {
    // Every lease gives back what it did not use, and its last settlements go with it.
    ++settle_queues_[0]->started;
    leases_->drain([this] { settlement_answered(0); });
  }
  if (settle_queues_[worker]->started == 0) redis_[worker]->shutdown();
}

// A started settlement has its answer from Redis; close() waits for the last one.
void budget_guard::settlement_answered(unsigned worker) {
  if (--settle_queues_[worker]->started == 0 && closed_[worker]) redis_[worker]->shutdown();
}

void budget_guard::describe_settlement(budget_hold& hold,
                                       metering::usage_record& rec) const {
  metering::describe_settled_spend(hold.metrics, hold.ticket.counter_keys, hold.pricing, rec);
  if (hold.cover) metering::describe_cover(*hold.cover, rec);
}

void budget_guard::apply_spend_corrections(std::vector<billing::spend_correction> corrections) {
  // One script per tenant (its keys share a Redis Cluster slot), deltas summed per counter.
  std::map<std::string, std::map<std::string, std::int64_t>> by_tenant;
  for (auto& c : corrections) by_tenant[c.tenant_id][c.counter] += c.delta;
  net::post(executors_[0], [this, by_tenant = std::move(by_tenant)]() mutable {
    if (closed_[0]) return;  // shutting down: reconcile repairs what is left
    for (auto& [tenant, counters] : by_tenant) {
      std::vector<std::string> keys;
      std::vector<std::int64_t> deltas;
      for (const auto& [key, delta] : counters) {
        if (delta == 0) continue;
        keys.push_back(key);
        deltas.push_back(delta);
      }
      if (keys.empty()) continue;
      ++settle_queues_[0]->started;
      net::co_spawn(executors_[0], correct_tenant(tenant, std::move(keys), std::move(deltas)),
                    net::detached);
    }
  });
}

net::awaitable<void> budget_guard::correct_tenant(std::string tenant_id,
                                                  std::vector<std::string> counters,
                                                  std::vector<std::int64_t> deltas) {
  const std::size_t n = counters.size();
  auto r = co_await engine_.adjust_used(*redis_[0], std::move(counters), std::move(deltas));
  settlement_answered(0);
  if (!r) {
    corrections_.with({"failed"}).inc(n);
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", r.error().message);
    log_.warn("budgets: a spend correction from the ledger failed; reconcile repairs it", f);
    co_return;
  }
  corrections_.with({"applied"}).inc(static_cast<std::uint64_t>(*r));
  corrections_.with({"missing"}).inc(n - static_cast<std::uint64_t>(*r));
}

net::awaitable<void> budget_guard::release(budget_hold hold) {
  if (!hold.leases.empty()) {
    settle_leased(hold, 0, 0, true);
    co_return;
  }
  const unsigned worker = hold.worker;
  if (closed_[worker]) {
    settled_.failed->inc();  // shutting down: the hold expires by itself
    co_return;
  }
  ++settle_queues_[worker]->started;
  co_await settle_now(std::move(hold), 0, 0, true);
}

net::awaitable<void> budget_guard::release_for_rerun(budget_hold hold) {
  if (!hold.leases.empty()) {
    settle_leased(hold, 0, 0, true);  // a leased request leaves no record to forget
    co_return;
  }
  const unsigned worker = hold.worker;
  const std::string record =
      metering::budget_engine::request_record_key(hold.ticket.tenant_id, hold.ticket.request_id);
  co_await release(std::move(hold));
  if (closed_[worker]) co_return;
  std::vector<std::string> del{"DEL", record};
  auto r = co_await redis_[worker]->command(std::move(del));
  if (!r || r->is_error()) {
    // The rerun then holds nothing and counts nothing; reconcile corrects the counters.
    json_object_writer f;
    f.add("record", record).add("error", r ? r->str : r.error().message);
    log_.warn("budgets: could not forget a released request before its rerun", f);
  }
}

net::awaitable<void> budget_guard::settle_now(budget_hold hold, std::int64_t prompt_tokens,
                                              std::int64_t completion_tokens, bool release) {
  const metering::request_amounts used =
      metering::actual_amounts(prompt_tokens, completion_tokens, hold.pricing);
  std::vector<std::int64_t> actual;
  for (const auto m : hold.metrics) actual.push_back(release ? 0 : metering::charge_of(m, used));
  if (hold.cover) {
    // The credit charge counts the uncovered tokens' cost; the pools what they covered.
    const auto s = metering::settle_cover(*hold.cover, prompt_tokens, completion_tokens);
    if (!release) actual[hold.cover->charge] = s.credit_micros;
    for (const auto n : s.pool_tokens) actual.push_back(release ? 0 : n);
  }
  const std::string tenant = hold.ticket.tenant_id;
  const std::string request = hold.ticket.request_id;
  const std::vector<std::int64_t> window_starts = hold.ticket.window_start_ms;
  auto r = co_await engine_.settle(*redis_[hold.worker], std::move(hold.ticket),
                                   std::move(actual));
  settlement_answered(hold.worker);
  if (!r) {
    // The hold expires by itself; the ledger keeps the truth, and `tollctl budgets reconcile`
    // rebuilds the counters from it.
    settled_.failed->inc();
    json_object_writer f;
    f.add("tenant_id", tenant).add("request_id", request).add("error", r.error().message);
    log_.warn("budgets: settling failed; the hold will expire", f);
    co_return;
  }
  (r->first ? settled_.settled : settled_.repeated)->inc();
  bool pending = false;
  for (auto& alert : metering::crossed_alerts(tenant, hold.budget_ids, hold.limits,
                                              window_starts, r->crossings)) {
    const std::string budget_id = alert.budget_id;
    const int threshold = alert.threshold;
    auto op = billing_.budgets->record_budget_alert(std::move(alert));
    auto recorded = co_await on_billing(billing_, std::move(op));
    if (!recorded) {
      json_object_writer f;
      f.add("tenant_id", tenant).add("budget_id", budget_id)
          .add("threshold", threshold).add("error", recorded.error().message);
      log_.error("budgets: an alert threshold was crossed but could not be recorded", f);
      continue;
    }
    pending = pending || *recorded;
  }
  if (pending) alerts_->wake();
}

namespace {

// The attribution GET /v1/budgets names in its query, checked as a request's would be.
result<metering::attribution> listed_attribution(std::string_view target, const caller& who) {
  const auto query = query_params::parse(target);
  if (!query) return invalid_request("The query string has a malformed percent-escape.");
  metering::attribution out;
  if (auto user = query->get("end_user")) {
    if (auto bad = metering::check_end_user(*user)) {
      return invalid_request("Invalid end_user: it " + *bad + ".", "end_user", "invalid_value");
    }
    out.end_user = *user;
  }
  if (auto session = query->get("session")) {
    if (auto bad = metering::check_session(*session)) {
      return invalid_request("Invalid session: it " + *bad + ".", "session", "invalid_value");
    }
    out.session = *session;
  }
  metering::tag_set tags;
  if (auto list = query->get("tags")) {
    auto parsed = metering::tags_from_header(*list);
    if (!parsed.error.empty()) {
      return invalid_request("Invalid tags: it " + parsed.error + ".", "tags", "invalid_value");
    }
    tags = std::move(parsed.tags);
  }
  out.tags = metering::merge_tags(tags, who.default_tags);
  return out;
}

}  // namespace

net::awaitable<void> send_budget_list(http::exchange& ex, budget_guard* budgets, const caller& who,
                                      const std::string& request_id) {
  if (budgets == nullptr || who.tenant_id.empty()) {
    co_await ex.send_error(not_found_error("Budgets are off on this gateway (budgets.redis)."),
                           request_id);
    co_return;
  }
  auto attributed = listed_attribution(ex.req().target(), who);
  if (!attributed) {
    co_await ex.send_error(attributed.error(), request_id);
    co_return;
  }
  auto list = co_await budgets->list_for(ex.worker_index(), who, std::move(*attributed));
  if (!list) {
    co_await ex.send_error(list.error(), request_id);
    co_return;
  }
  co_await ex.send_json(200, std::move(*list), request_id);
}

}  // namespace tollgate::gateway
