// The Redis side of budget leases (lease.hpp is the in-memory side), two Lua scripts:
//   acquire: for each counter a request needs a lease on, count what its window holds (as the
//            reserve script does: settled + live holds, every bucket of a sliding window,
//            whole); if any hard limit cannot take the request's amount, hold nothing, raise
//            the counter's recall count (other gateways give their unused leases back) and name
//            it; otherwise hold a slice on each (lease_slice: a share of what is left, or
//            exactly the request's amount near the limit, which also raises the recall count;
//            for a lease taken ahead of need, nothing there).
//   flush:   for each lease, move the usage settled since the last flush from its hold to
//            `used` and give back the unused part of a closed lease; one call for all of a
//            tenant's leases. Answers each counter's recall count. Each batch carries a number
//            that grows with every batch a gateway sends for a tenant; Redis keeps the last one
//            applied (per gateway and tenant), so a batch sent again because its answer was
//            lost (a timeout after the script ran) is not applied twice.
// A lease is an ordinary hold field (`h<expiry>`), so the reserve script, usage reads and
// reconcile see it as held, a dead gateway's leases expire like holds, and leases and
// per-request holds share a budget safely. Keys carry the tenant's hash tag, as all budget keys.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/lease.hpp"
#include "metering/redis_client.hpp"

namespace tollgate::metering {

// One counter a request needs a lease on.
struct lease_request {
  limit_charge charge;  // the rule (its id the counter id) and what the request asks of it
  bool exact = false;   // hold exactly the request's amount (a one-request lease)
  // Taken ahead of need (renewing a lease still in use): a slice or nothing. Where the request
  // would get a one-request lease or a refusal, nothing is held and nothing recalled (slice 0).
  bool ahead = false;
};

struct lease_acquisition {
  bool granted = false;
  std::vector<lease_grant> grants;  // granted: one per request, in order
  // Refused: as reservation (budget_engine.hpp).
  int refused_index = -1;
  std::int64_t refused_remaining = 0;
  std::int64_t refused_reset_ms = 0;
};

// One lease's part of a flush.
struct lease_flush_entry {
  std::string counter_key;
  std::string hold_field;
  std::int64_t hold_expiry_ms = 0;
  std::int64_t counter_ttl_ms = 0;
  std::int64_t settled = 0;
  std::int64_t returned = 0;
};

// What Redis answered to a flush.
struct lease_flush_answer {
  std::vector<std::int64_t> recalls;  // per entry: its counter's recall count
  bool applied = false;               // false: this batch (or a later one) had been applied before
};

class lease_engine {
 public:
  // `lease_time`: how long a lease serves requests (at most; a calendar window's instance and
  // a sliding window's bucket end it sooner). `divisor`: lease_slice's. `gateway_id`: this
  // gateway's name among those sharing a counter.
  lease_engine(std::chrono::milliseconds hold_ttl, std::chrono::milliseconds lease_time,
               std::int64_t divisor, std::string gateway_id);

  // ONE script call: leases for every request entry, or none (a refusal).
  boost::asio::awaitable<basic_result<lease_acquisition, redis::redis_error>> acquire(
      redis::client& redis, std::string tenant_id, std::vector<lease_request> requests,
      std::int64_t now_ms);

  // ONE script call for leases of one tenant. `sequence`: the batch's number, greater than
  // that of every batch this gateway sent for the tenant before it; a batch whose answer was
  // lost is sent again with its own number and exactly its entries, before any later batch.
  boost::asio::awaitable<basic_result<lease_flush_answer, redis::redis_error>> flush(
      redis::client& redis, std::string tenant_id, std::uint64_t sequence,
      std::vector<lease_flush_entry> entries, std::int64_t now_ms);

  // The sorted set of the gateways leasing a counter (member: gateway id, score: last lease).
  static std::string sharing_key(const std::string& tenant_id, const std::string& counter_id);
  // The last flush sequence number Redis applied for this gateway and the tenant. It lives
  // until a minute after the last hold its batch released expires.
  std::string flush_sequence_key(const std::string& tenant_id) const;
  // Until when a lease taken at `now_ms` on `rule` serves requests.
  std::int64_t serve_until_ms(const limit_rule& rule, std::int64_t now_ms) const;

 private:
  budget_engine holds_;  // hold expiries and counter keys
  std::chrono::milliseconds lease_time_;
  std::int64_t divisor_;
  std::string gateway_id_;
};

}  // namespace tollgate::metering
