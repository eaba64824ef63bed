// The budget engine: atomic reservations and settlements against every limit that applies to a
// request, each one Lua script call on Redis, so many gateways can share budgets without ever
// overspending a hard limit.
//   reserve: for every limit, count what is used in its window (settled + held by requests in
//            flight; for a sliding window, every bucket that overlaps it, whole); if any hard
//            limit would be exceeded, hold nothing and name it; otherwise hold the amount on
//            all of them (a sliding window's hold goes into its newest bucket).
//   settle:  turn the request's holds into its actual usage (releasing the rest); idempotent
//            on the request id.
// Holds expire (hold_ttl, rounded up to an eighth of it), so a gateway that dies mid-request
// cannot keep a hold forever.
// All keys of one tenant carry the hash tag {tenant}, so each script runs on one Redis Cluster
// slot. Budgets are stored in PostgreSQL (billing/budget_store), decided on by
// metering/budgets/policy and enforced on the request path by gateway/budget_guard.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "metering/budgets/budget_kinds.hpp"
#include "metering/budgets/credit_rate.hpp"
#include "metering/budgets/windows.hpp"
#include "metering/redis_client.hpp"

namespace tollgate::metering {

struct limit_rule {
  std::string id;          // the budget's id, unique within the tenant
  window_spec window = budget_window::day;
  std::int64_t limit = 0;  // in the rule's unit (tokens, requests or micro-units)
  bool hard = true;        // soft limits never refuse
  std::vector<int> alert_percents;  // thresholds, in percent of the limit (1..1000)
  // Set (end > 0) for calendar windows in a tenant's time zone: the window instance to use,
  // [start, end) in ms since the epoch. Unset: UTC windows from window_start_ms().
  std::int64_t fixed_start_ms = 0;
  std::int64_t fixed_end_ms = 0;

  // The counter holds go into at `now_ms` (a calendar instance, a sliding window's newest
  // bucket), and when all that is counted at `now_ms` has left the window (0 for lifetime).
  std::int64_t start_at(std::int64_t now_ms) const;
  std::int64_t end_at(std::int64_t now_ms) const;
  // The starts of every counter the rule counts at `now_ms`, the one holds go into first: one
  // for calendar and lifetime windows, the buckets overlapping a sliding window, newest first.
  std::vector<std::int64_t> counted_starts(std::int64_t now_ms) const;
  // When a window counted at `now_ms` frees budget: a calendar window when it turns; a sliding
  // window when its `oldest`-th counter (1-based in counted_starts; 0: the oldest counted)
  // leaves it; 0 for lifetime.
  std::int64_t reopens_at(std::int64_t now_ms, int oldest) const;
};

// One limit as it applies to one request: the rule and how much the request asks of it.
struct limit_charge {
  limit_rule rule;
  std::int64_t amount = 0;
};

// Where a request's holds live (the counter keys of the window instances at reserve time), so
// that settling finds them even when the window has turned since.
struct hold_ticket {
  std::string tenant_id;
  std::string request_id;
  std::vector<std::string> counter_keys;  // one per charge, in order
  std::vector<std::int64_t> ttl_ms;       // each counter's time to live when reserved
  std::vector<std::int64_t> window_start_ms;  // each counter's window instance
  // Per counter: its alert thresholds as (percent, usage level that crosses it).
  std::vector<std::vector<std::pair<int, std::int64_t>>> alert_levels;
  // Per counter (empty, or one per counter): the other buckets of a sliding window that has
  // alert thresholds, whose settled usage counts towards them.
  std::vector<std::vector<std::string>> window_keys;
};

// An alert threshold crossed by a settlement: the first settlement of a window instance to
// bring its settled usage to the level crosses it; no other ever does.
struct threshold_crossing {
  std::size_t charge = 0;  // index into the ticket's counters
  int percent = 0;
  std::int64_t used = 0;  // the settled usage that crossed it
};

struct settlement {
  bool first = false;  // false: this request was settled before, nothing was counted
  std::vector<threshold_crossing> crossings;
};

// Bundle coverage of a credit_only hold (cover.hpp): the script takes from the tenant's input
// and output pools what they have left of the tokens asked, and computes the credit charge's
// amount as the uncovered tokens' cost (the amount given for that charge is ignored).
struct cover_ask {
  std::size_t charge = 0;  // index of the credit charge
  std::array<std::string, 2> pool_ids;    // input, output (a pool of limit 0 covers nothing)
  std::array<std::int64_t, 2> limits{};   // tokens
  std::array<std::int64_t, 2> seeds{};    // a new counter's settled usage (the ledger's)
  std::array<std::int64_t, 2> asked{};    // the worst case's prompt and completion tokens
  credit_rate rate;
};

struct reservation {
  bool granted = false;
  // With a cover_ask: the tokens each pool covers (input, output) and the credit amount held
  // (also when refused: the amount that did not fit).
  std::array<std::int64_t, 2> covered{};
  std::int64_t credit_amount = 0;
  // Granted: what each limit has left after this hold. Refused: the index of the first limit
  // that refused and what it had left (window limits also say when their window turns).
  std::vector<std::int64_t> remaining;
  int refused_index = -1;
  std::int64_t refused_remaining = 0;
  // Until the refusing window frees budget (limit_rule::reopens_at: a sliding window's oldest
  // bucket holding usage leaves it); 0 for lifetime.
  std::int64_t refused_reset_ms = 0;
  hold_ticket ticket;
};

// What a limit counts in its window at an instant.
struct window_usage {
  std::int64_t used = 0;  // settled
  std::int64_t held = 0;  // holds of requests in flight
  // When the window frees budget (limit_rule::reopens_at; for a sliding window, when its
  // oldest bucket holding usage leaves it, or its oldest counted bucket when none holds any);
  // 0 for lifetime.
  std::int64_t reopens_at_ms = 0;
};

// A request's estimated cost in micro-units for spend budgets: prices are micro-units per
// million tokens; the product is exact (128-bit) and rounded up once per request, so a
// reservation never under-asks. Saturates at INT64_MAX.
std::int64_t estimate_spend_micros(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                                   std::uint64_t input_price, std::uint64_t output_price);

// How long the counter of `rule` starting at `start` lives: until it no longer counts (a
// calendar window's end, or when a sliding window's bucket leaves the window) plus an hour's
// grace; lifetime counters get ten years, renewed on every use.
std::int64_t counter_ttl_ms(const limit_rule& rule, std::int64_t start, std::int64_t now_ms);

// The usage at which `percent` of `limit` is reached: ceil(limit x percent / 100), exact.
std::int64_t threshold_level(std::int64_t limit, int percent);

class budget_engine {
 public:
  explicit budget_engine(std::chrono::milliseconds hold_ttl) : hold_ttl_(hold_ttl) {}

  // `cover` (or nullptr; it must outlive the call): bundle coverage of the credit charge.
  boost::asio::awaitable<basic_result<reservation, redis::redis_error>> reserve(
      redis::client& redis, std::string tenant_id, std::string request_id,
      std::vector<limit_charge> charges, std::int64_t now_ms, const cover_ask* cover);

  // `actual[i]` is the usage to count against charge i. Says whether this was the request's
  // first settlement (nothing is counted twice) and which alert thresholds it crossed.
  boost::asio::awaitable<basic_result<settlement, redis::redis_error>> settle(
      redis::client& redis, hold_ticket ticket, std::vector<std::int64_t> actual);

  // Sets what the counter of the window instance (or bucket) starting at `window_start` has
  // used (settled) to `used`, keeping the holds in flight; returns what it said before. For
  // rebuilding the counters from the ledger (tollctl budgets reconcile).
  boost::asio::awaitable<basic_result<std::int64_t, redis::redis_error>> set_used(
      redis::client& redis, std::string tenant_id, limit_rule rule, std::int64_t window_start,
      std::int64_t used, std::int64_t now_ms);

  // Adds deltas[i] (any sign, |delta| < 2^53) to the settled usage of counters[i], for each
  // counter that still exists (an expired window is not created again). All counters must
  // belong to one tenant. Returns how many were adjusted.
  boost::asio::awaitable<basic_result<std::int64_t, redis::redis_error>> adjust_used(
      redis::client& redis, std::vector<std::string> counters, std::vector<std::int64_t> deltas);

  // What each of one tenant's limits counts in its window at `now_ms`: one script call that
  // writes nothing. For the budget listings.
  boost::asio::awaitable<basic_result<std::vector<window_usage>, redis::redis_error>> usage(
      redis::client& redis, std::string tenant_id, std::vector<limit_rule> rules,
      std::int64_t now_ms);

  // What a limit has used in its window (settled + held), for batch admission and tests.
  boost::asio::awaitable<basic_result<std::int64_t, redis::redis_error>> used(
      redis::client& redis, std::string tenant_id, limit_rule rule, std::int64_t now_ms);

  static std::string counter_key(const std::string& tenant_id, const std::string& limit_id,
                                 std::int64_t window_start);
  // The request's record: its holds while it holds, "settled" after.
  static std::string request_record_key(const std::string& tenant_id,
                                        const std::string& request_id);

  // When a hold taken at `now_ms` expires: hold_ttl later, rounded up to an eighth of it.
  std::int64_t hold_expiry_ms(std::int64_t now_ms) const;

 private:
  std::chrono::milliseconds hold_ttl_;
};

}  // namespace tollgate::metering
