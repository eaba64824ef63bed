// The gateway's budget leases: see budget_leases.hpp.
#include "gateway/budget_leases.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <random>

#include "core/assert.hpp"
#include "core/json_text.hpp"

namespace tollgate::gateway {

namespace net = boost::asio;

namespace {

// This gateway's name among the gateways sharing a counter: random, new at every start.
std::string random_gateway_id() {
  std::random_device rd;
  char text[24];
  std::snprintf(text, sizeof text, "gw_%08x%08x", rd(), rd());
  return text;
}

}  // namespace

lease_table::lease_table(const budgets_config& config, std::vector<net::any_io_executor> executors,
                         std::vector<redis::client*> redis, const clock_source& clock,
                         metrics::registry& registry, logger& log)
    : config_(config),
      executors_(std::move(executors)),
      redis_(std::move(redis)),
      clock_(clock),
      log_(log),
      engine_(std::chrono::milliseconds(config.hold_ttl_ms),
              std::chrono::milliseconds(config.lease_ms),
              static_cast<std::int64_t>(config.lease_divisor), random_gateway_id()),
      acquiring_(executors_.size()),
      timer_(executors_.at(0)) {
  auto& family = registry.add_counter(
      "tollgate_budget_leases_total",
      "Budget lease events: leased (a slice taken), exact (a one-request lease, near a limit or "
      "while this thread takes a slice), recalled (given back early at Redis's request), "
      "flush_failed (a flush Redis did not answer; sent again at the next one), "
      "flush_repeated (a flush sent again that Redis had applied already: its answer was lost, "
      "and it was not applied twice), renewed (a slice taken ahead of need, replacing the open "
      "lease).",
      {"event"});
  events_ = {&family.with({"leased"}),         &family.with({"exact"}),
             &family.with({"recalled"}),       &family.with({"flush_failed"}),
             &family.with({"flush_repeated"}), &family.with({"renewed"})};
}

std::string lease_table::open_key(const std::string& tenant_id, const std::string& counter_id) {
  std::string key;
  key.reserve(tenant_id.size() + counter_id.size() + 1);
  key.append(tenant_id).append(1, '\n').append(counter_id);
  return key;
}

std::vector<std::size_t> lease_table::take_open(const std::vector<std::string>& keys,
                                                const std::vector<metering::limit_charge>& charges,
                                                std::int64_t now_ms, leased_request& out,
                                                renewal& renew) {
  std::vector<std::size_t> missing;
  const auto ahead_ms =
      static_cast<std::int64_t>(config_.lease_ms) / metering::lease_renew_ahead_divisor;
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < charges.size(); ++i) {
    if (out.leases[i]) continue;
    auto it = open_.find(keys[i]);
    if (it == open_.end() || !it->second->take(charges[i].amount, now_ms)) {
      missing.push_back(i);
      continue;
    }
    const auto& lease = it->second;
    out.leases[i] = lease;
    const auto& g = lease->grant();
    const std::int64_t next_until = now_ms + ahead_ms >= g.serve_until_ms
                                        ? engine_.serve_until_ms(charges[i].rule, now_ms)
                                        : 0;
    if (!draining_ && !renewing_.contains(keys[i]) &&
        metering::lease_renewal_due(g, lease->unused(), now_ms, ahead_ms, next_until)) {
      renewing_.insert(keys[i]);
      if (renew.due.empty()) {
        ++renewals_;  // under mu_: drain() sees it once draining_ is set
        renew.closes = closes_;
      }
      renew.due.push_back(i);
    }
  }
  return missing;
}

void lease_table::start_renewal(unsigned worker, const std::string& tenant_id,
                                const std::vector<std::string>& keys,
                                const std::vector<metering::limit_charge>& charges,
                                const renewal& renew, std::int64_t now_ms) {
  std::vector<std::string> renew_keys;
  std::vector<metering::limit_charge> renew_charges;
  for (const std::size_t i : renew.due) {
    renew_keys.push_back(keys[i]);
    renew_charges.push_back(charges[i]);
  }
  net::co_spawn(executors_[worker],
                renew_leases(worker, tenant_id, std::move(renew_keys), std::move(renew_charges),
                             renew.closes, now_ms),
                net::detached);
}

net::awaitable<void> lease_table::renew_leases(unsigned worker, std::string tenant_id,
                                               std::vector<std::string> keys,
                                               std::vector<metering::limit_charge> charges,
                                               std::uint64_t closes_before, std::int64_t now_ms) {
  std::vector<metering::lease_request> wanted;
  for (const auto& c : charges) wanted.push_back({c, false, true});
  std::string tenant = tenant_id;  // named: GCC 12 and temporaries inside co_await
  auto got = co_await engine_.acquire(*redis_[worker], std::move(tenant), std::move(wanted),
                                      now_ms);
  {
    std::lock_guard lock(mu_);
    for (const auto& k : keys) renewing_.erase(k);
    // Budgets changed while the script ran (sized under the old limits) or the gateway drains:
    // the new slices serve nothing and go back at the next flush.
    const bool stale = closes_ != closes_before || draining_;
    for (std::size_t j = 0; got && got->granted && j < keys.size(); ++j) {
      if (got->grants[j].slice <= 0) continue;  // near the limit: nothing leased ahead
      auto lease = std::make_shared<metering::budget_lease>(std::move(got->grants[j]));
      live_.push_back({tenant_id, lease});
      if (stale) {
        lease->close();
        continue;
      }
      auto& slot = open_[keys[j]];
      if (slot) slot->close();  // the lease it renews: what it did not use goes back
      slot = std::move(lease);
      events_.renewed->inc();
    }
  }
  if (!got) {
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", got.error().message);
    log_.debug("budgets: renewing a lease ahead of need failed; requests take one as needed", f);
  }
  --renewals_;
}

net::awaitable<basic_result<leased_request, redis::redis_error>> lease_table::reserve(
    unsigned worker, const std::string& tenant_id,
    const std::vector<metering::limit_charge>& charges, std::int64_t now_ms) {
  leased_request out;
  out.leases.resize(charges.size());
  std::vector<std::string> keys;
  keys.reserve(charges.size());
  for (const auto& c : charges) keys.push_back(open_key(tenant_id, c.rule.id));
  renewal renew;  // the leases this request took that are due for renewal
  std::vector<std::size_t> missing = take_open(keys, charges, now_ms, out, renew);
  auto& acquiring = acquiring_[worker];
  if (!missing.empty()) {
    // This thread is taking a lease on one of them already: wait for it, then try again.
    std::shared_ptr<net::steady_timer> pending;
    for (const std::size_t i : missing) {
      if (auto it = acquiring.find(keys[i]); it != acquiring.end()) pending = it->second;
    }
    if (pending) {
      co_await pending->async_wait(net::as_tuple(net::use_awaitable));
      missing = take_open(keys, charges, now_ms, out, renew);
    }
  }
  // In the background: the request goes on with the leases it took.
  if (!renew.due.empty()) start_renewal(worker, tenant_id, keys, charges, renew, now_ms);
  auto give_back_taken = [&] {
    for (std::size_t i = 0; i < charges.size(); ++i) {
      if (out.leases[i]) out.leases[i]->give_back(charges[i].amount);
    }
    out.leases.clear();
  };
  if (!missing.empty()) {
    // Requests of this thread missing a counter while its lease is taken wait for it (above);
    // one that still finds it being taken (a second wave) takes a one-request lease.
    std::vector<metering::lease_request> wanted;
    std::vector<std::string> marked;
    auto done = std::make_shared<net::steady_timer>(executors_[worker],
                                                    std::chrono::steady_clock::time_point::max());
    for (const std::size_t i : missing) {
      const bool busy = acquiring.contains(keys[i]);
      wanted.push_back({charges[i], busy});
      if (!busy) {
        acquiring.emplace(keys[i], done);
        marked.push_back(keys[i]);
      }
    }
    auto finish_acquiring = [&] {
      for (const auto& k : marked) acquiring.erase(k);
      done->cancel();  // the requests waiting for these leases look again
    };
    std::uint64_t closes_before = 0;
    {
      std::lock_guard lock(mu_);
      closes_before = closes_;
    }
    std::string tenant = tenant_id;  // named: GCC 12 and temporaries inside co_await
    auto retry_wanted = wanted;      // (an acquire is per lease, not per request)
    auto got = co_await engine_.acquire(*redis_[worker], std::move(tenant), std::move(wanted),
                                        now_ms);
    // Refused while this gateway's closed leases of the tenant still hold capacity they will
    // not use (a changed budget closed them, or one-request leases ended since the last
    // flush): give it back now and ask once more, so that it does not refuse itself. (No
    // co_await inside a condition: GCC 12.)
    bool retry = false;
    if (got && !got->granted) retry = co_await give_back_stranded(worker, tenant_id);
    if (retry) {
      tenant = tenant_id;
      got = co_await engine_.acquire(*redis_[worker], std::move(tenant), std::move(retry_wanted),
                                     now_ms);
    }
    if (!got || !got->granted) {
      finish_acquiring();
      give_back_taken();
      if (!got) co_return got.error();
      out.refused_index = static_cast<int>(missing[static_cast<std::size_t>(got->refused_index)]);
      out.refused_remaining = got->refused_remaining;
      out.refused_reset_ms = got->refused_reset_ms;
      co_return out;
    }
    {
      std::lock_guard lock(mu_);
      // Budgets changed while the acquire script ran: its slices were sized under the old
      // limits, so each serves only this request and the rest goes back at the next flush.
      const bool stale = closes_ != closes_before;
      for (std::size_t j = 0; j < missing.size(); ++j) {
        const std::size_t i = missing[j];
        auto lease = std::make_shared<metering::budget_lease>(std::move(got->grants[j]));
        const bool took = lease->take(charges[i].amount, now_ms);
        TOLLGATE_ASSERT(took);  // a lease just granted holds at least the request's amount
        live_.push_back({tenant_id, lease});
        if (stale || lease->grant().slice <= charges[i].amount) {
          lease->close();  // a one-request lease: what its request leaves goes back after it
          events_.exact->inc();
        } else {
          auto& slot = open_[keys[i]];
          if (slot) slot->close();  // a slice taken meanwhile by another thread gives way
          slot = lease;
          events_.leased->inc();
        }
        out.leases[i] = std::move(lease);
      }
    }
    finish_acquiring();
  }
  out.granted = true;
  out.remaining.reserve(charges.size());
  for (const auto& l : out.leases) {
    out.remaining.push_back(l->grant().remaining_after + l->unused());
  }
  co_return out;
}

void lease_table::close_tenant(const std::string& tenant_id) {
  const std::string prefix = tenant_id.empty() ? "" : tenant_id + '\n';
  std::lock_guard lock(mu_);
  ++closes_;
  flush_soon_ = true;  // what the closed leases did not use goes back at the short interval
  for (auto& [key, lease] : open_) {
    if (key.starts_with(prefix)) lease->close();
  }
}

void lease_table::start() {
  net::co_spawn(executors_[0], flush_loop(), net::detached);
}

bool lease_table::flush_due(std::int64_t since_last_ms) {
  if (flush_soon_.exchange(false)) return true;
  if (since_last_ms >= static_cast<std::int64_t>(config_.lease_flush_far_ms)) return true;
  std::lock_guard lock(mu_);
  // A batch waiting to be sent again goes at the short interval, as its parts would have.
  if (std::any_of(flushes_.begin(), flushes_.end(),
                  [](const auto& f) { return f.second.unanswered.has_value(); })) {
    return true;
  }
  return std::any_of(live_.begin(), live_.end(), [](const live_lease& l) {
    return !metering::lease_far_from_limit(l.lease->grant()) && !l.lease->done();
  });
}

net::awaitable<void> lease_table::flush_loop() {
  auto last = std::chrono::steady_clock::now();
  while (!stopping_) {
    timer_.expires_after(std::chrono::milliseconds(config_.lease_flush_ms));
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    const auto since_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count();
    if (!flush_due(since_ms)) continue;
    last = now;
    // A recall is answered at once: the recalled capacity goes back in a second flush. (No
    // co_await inside a loop condition: GCC 12 miscompiles it.)
    for (;;) {
      const bool recalled = co_await flush_once();
      if (!recalled || stopping_) break;
    }
  }
}

namespace {

// Decrements a count of flushes under way when it goes out of scope, however the scope ends.
struct flush_counted {
  std::atomic<int>& count;
  ~flush_counted() { --count; }
};

}  // namespace

net::awaitable<bool> lease_table::flush_once() {
  ++flushing_;  // (before any part is taken: a give-back that finds nothing waits for it)
  flush_counted counted{flushing_};
  std::map<std::string, std::vector<std::shared_ptr<metering::budget_lease>>> by_tenant;
  {
    std::lock_guard lock(mu_);
    const std::int64_t now_ms = unix_ms(clock_.wall_now());
    for (auto& l : live_) {
      if (now_ms >= l.lease->grant().serve_until_ms) l.lease->close();
      by_tenant[l.tenant_id].push_back(l.lease);
    }
    // A tenant whose batch is unanswered may have no live lease left: it is sent again.
    for (const auto& [tenant, f] : flushes_) {
      if (f.unanswered) by_tenant.try_emplace(tenant);
    }
  }
  // One script call per tenant: its keys share a Redis Cluster slot.
  bool recalled = false;
  for (const auto& [tenant, leases] : by_tenant) {
    const auto sent = co_await flush_tenant(*redis_[0], tenant, leases, false);
    if (sent.recalled) recalled = true;
  }
  forget_done();
  co_return recalled;
}

std::vector<lease_table::taken_part> lease_table::take_parts(
    const std::vector<std::shared_ptr<metering::budget_lease>>& leases, bool returnable_only) {
  std::vector<taken_part> parts;
  for (const auto& lease : leases) {
    if (returnable_only && !lease->returnable()) continue;
    const auto part = lease->take_flush();
    // A closed lease with nothing to send needs no recall count either.
    if (lease->closed() && part.settled == 0 && part.returned == 0) continue;
    parts.push_back({lease, part});
  }
  return parts;
}

net::awaitable<lease_table::flush_outcome> lease_table::flush_tenant(
    redis::client& redis, const std::string& tenant_id,
    const std::vector<std::shared_ptr<metering::budget_lease>>& leases, bool returnable_only) {
  flush_outcome out;
  for (;;) {
    flush_batch batch;
    bool again = false;  // the unanswered batch, sent again before anything new
    {
      std::lock_guard lock(mu_);
      auto& f = flushes_[tenant_id];
      if (f.sending) break;
      if (f.unanswered) {
        batch = std::move(*f.unanswered);
        f.unanswered.reset();
        again = true;
      } else {
        batch.parts = take_parts(leases, returnable_only);
        if (batch.parts.empty()) {
          flushes_.erase(tenant_id);
          break;
        }
        batch.sequence = ++flush_sequence_;
      }
      f.sending = true;
    }
    // However the send ends (an exception included), the tenant is no longer being sent, and
    // a batch Redis did not answer waits to be sent again.
    struct sending_done {
      lease_table& t;
      const std::string& tenant_id;
      flush_batch& batch;
      bool sent = false;
      bool again = false;
      ~sending_done() {
        std::lock_guard lock(t.mu_);
        const auto f = t.flushes_.find(tenant_id);  // there: only this flush erases it now
        f->second.sending = false;
        if (!sent) {
          ++batch.failures;
          f->second.unanswered = std::move(batch);
        } else if (!again) {
          t.flushes_.erase(f);  // nothing of the tenant's is waiting
        }
      }
    };
    flush_outcome sent;
    {
      sending_done done{*this, tenant_id, batch, false, again};
      sent = co_await send_flush(redis, tenant_id, batch);
      done.sent = sent.sent;
    }
    out.recalled = out.recalled || sent.recalled;
    out.returned = out.returned || sent.returned;
    if (!sent.sent || !again) break;
  }
  co_return out;
}

net::awaitable<lease_table::flush_outcome> lease_table::send_flush(redis::client& redis,
                                                                   const std::string& tenant_id,
                                                                   const flush_batch& batch) {
  std::vector<metering::lease_flush_entry> entries;
  bool returns = false;
  for (const auto& p : batch.parts) {
    const auto& g = p.lease->grant();
    entries.push_back({g.counter_key, g.hold_field, g.hold_expiry_ms, g.counter_ttl_ms,
                       p.part.settled, p.part.returned});
    if (p.part.returned > 0) returns = true;
  }
  std::string tenant = tenant_id;  // named: GCC 12 and temporaries inside co_await
  auto r = co_await engine_.flush(redis, std::move(tenant), batch.sequence, std::move(entries),
                                  unix_ms(clock_.wall_now()));
  if (!r) {
    // Redis may have applied it all the same (a timeout after the script ran): the batch is
    // sent again as it is, with its number, so that it is applied once.
    events_.flush_failed->inc();
    json_object_writer f;
    f.add("tenant_id", tenant_id).add("error", r.error().message);
    f.add("failures_before", static_cast<std::int64_t>(batch.failures));
    const char* what = "budgets: a lease flush failed; it is sent again with the next one";
    if (batch.failures == 0) {
      log_.warn(what, f);
    } else {
      log_.debug(what, f);  // while Redis is away: once per batch at warn, not every tick
    }
    co_return flush_outcome{};
  }
  if (!r->applied) events_.flush_repeated->inc();
  flush_outcome out{.sent = true, .returned = returns};
  for (std::size_t j = 0; j < batch.parts.size(); ++j) {
    auto& l = *batch.parts[j].lease;
    if (r->recalls[j] > l.grant().recall_seen && !l.closed()) {
      l.close();
      events_.recalled->inc();
      out.recalled = true;
    }
  }
  co_return out;
}

net::awaitable<bool> lease_table::give_back_stranded(unsigned worker,
                                                     const std::string& tenant_id) {
  std::vector<std::shared_ptr<metering::budget_lease>> leases;
  bool flush = false;
  {
    std::lock_guard lock(mu_);
    if (draining_) co_return false;
    for (const auto& l : live_) {
      if (l.tenant_id == tenant_id && l.lease->returnable()) leases.push_back(l.lease);
    }
    // A batch of the tenant's that Redis did not answer may carry such capacity too.
    const auto f = flushes_.find(tenant_id);
    flush = !leases.empty() || (f != flushes_.end() && f->second.unanswered);
    // Under mu_: final_flush() waits until the parts are sent (or kept to be sent again).
    if (flush) ++stranded_flushes_;
  }
  if (flush) {
    flush_outcome sent;
    {
      flush_counted counted{stranded_flushes_};
      sent = co_await flush_tenant(*redis_[worker], tenant_id, leases, true);
    }
    if (sent.returned) co_return true;
  }
  // Nothing given back here: what there was may be on its way to Redis in another flush (the
  // flush loop's, or another request's give-back). Once those are done, ask once more.
  co_return co_await wait_for_flushes(worker);
}

net::awaitable<bool> lease_table::wait_for_flushes(unsigned worker) {
  const auto busy = [this] { return flushing_.load() > 0 || stranded_flushes_.load() > 0; };
  if (!busy()) co_return false;
  net::steady_timer wait(executors_[worker]);
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(config_.lease_flush_ms);
  while (busy() && std::chrono::steady_clock::now() < give_up) {
    wait.expires_after(std::chrono::milliseconds(1));
    co_await wait.async_wait(net::as_tuple(net::use_awaitable));
  }
  co_return true;
}

void lease_table::forget_done() {
  std::lock_guard lock(mu_);
  std::erase_if(open_, [](const auto& e) { return e.second->closed(); });
  // A lease emptied by a flush under way looks done: its batch keeps it until it is answered.
  std::erase_if(live_, [](const live_lease& l) { return l.lease->done(); });
}

void lease_table::drain(std::function<void()> done) {
  stopping_ = true;
  timer_.cancel();
  {
    std::lock_guard lock(mu_);
    draining_ = true;  // renewals under way install nothing; final_flush waits for them
    for (auto& l : live_) l.lease->close();
  }
  net::co_spawn(executors_[0], final_flush(std::move(done)), net::detached);
}

net::awaitable<void> lease_table::final_flush(std::function<void()> done) {
  // A flush under way may have taken parts out before the leases closed: let it end first.
  net::steady_timer wait(executors_[0]);
  while (flushing_ > 0 || renewals_.load() > 0 || stranded_flushes_.load() > 0) {
    wait.expires_after(std::chrono::milliseconds(1));
    co_await wait.async_wait(net::as_tuple(net::use_awaitable));
  }
  co_await flush_once();
  done();
}

}  // namespace tollgate::gateway
