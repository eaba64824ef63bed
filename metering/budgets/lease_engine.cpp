// The Redis side of budget leases: see lease_engine.hpp. Like the reserve script, each script
// runs atomically in Redis, so leases taken by many gateways at once never hold more than a
// hard limit has left.
#include "metering/budgets/lease_engine.hpp"

#include <algorithm>
#include <utility>

#include "metering/budgets/script_parts.hpp"

namespace tollgate::metering {

namespace net = boost::asio;

namespace {

// Lua numbers passed to redis.call as integers: Redis would write a large one as "1.25e+14",
// which HINCRBY refuses.
constexpr std::string_view integer_lua = R"lua(
local function int(x) return string.format('%d', x) end
)lua";

// A gateway counts as sharing a counter this many lease times after its last lease on it.
constexpr std::int64_t sharing_lease_times = 2;

// KEYS: for each request entry, the counters it counts (newest first, as the reserve script
// has them), then its sharing set. ARGV: now (ms), gateway id, divisor, sharing ttl (ms),
// number of entries, then per entry: limit, amount, hard (1/0), number of counters, counter
// ttl (ms), renew (1: lifetime counter), mode (0: a slice, 1: exact, 2: ahead of need), hold
// field of a slice, hold field of a one-request lease (it expires sooner: its lease serves only
// the request at hand).
// Returns {1, then per entry: slice (0: none, ahead of need only), what is left after it,
// recall count} or {0, refusing entry (0-based), what it had left, position of its oldest
// counter counting anything}.
const redis::script acquire_script(std::string(amount_of_lua) + std::string(count_lua) +
                                   std::string(integer_lua) + R"lua(
local now, gw = tonumber(ARGV[1]), ARGV[2]
local divisor, share_ttl, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local slices, rest, created, first, recall = {}, {}, {}, {}, {}
local k = 1
for i = 0, n - 1 do
  local a = 6 + 9 * i
  local limit, amount = tonumber(ARGV[a]), amount_of(ARGV[a + 1])
  if not amount or not limit then
    return redis.error_reply('ERR tollgate: amount ' .. ARGV[a + 1] .. ' is not an integer in [0, 2^53)')
  end
  local hard, m = ARGV[a + 2] == '1', tonumber(ARGV[a + 3])
  local used, oldest = 0, 0
  for j = 1, m do
    local c, fresh = count(KEYS[k + j - 1], now)
    if j == 1 then created[i + 1] = fresh end
    if c ~= 0 then oldest = j end
    used = used + c
  end
  local holder, sharing = KEYS[k], KEYS[k + m]
  first[i + 1] = holder
  k = k + m + 1
  local available = limit - used
  -- Other gateways give back their unused leases on this counter at their next flush.
  local function recall_others()
    if redis.call('EXISTS', holder) == 1 then redis.call('HINCRBY', holder, 'R', 1) end
  end
  local mode = ARGV[a + 6]
  local slice = amount
  if mode == '2' and amount > available then
    slice = 0  -- ahead of need: no request waits on it, so no refusal and no recall
  elseif hard and amount > available then
    recall_others()
    return {0, i, math.max(available, 0), oldest}
  elseif mode ~= '1' then
    redis.call('ZADD', sharing, now, gw)
    redis.call('ZREMRANGEBYSCORE', sharing, '-inf', now - share_ttl)
    redis.call('PEXPIRE', sharing, share_ttl)
    local g = redis.call('ZCARD', sharing)
    local share = math.floor(math.max(available, 0) / (divisor * g))
    if share > amount then
      slice = share
    elseif mode == '2' then
      slice = 0  -- near the limit nothing is leased ahead: requests hold as they come
    elseif g > 1 then
      recall_others()  -- near the limit: per-request holds from now on, everywhere
    end
  end
  slices[i + 1] = slice
  rest[i + 1] = available - slice
  recall[i + 1] = tonumber(redis.call('HGET', holder, 'R') or '0')
end
local out = {1}
for i = 0, n - 1 do
  local a = 6 + 9 * i
  local c = first[i + 1]
  local field = ARGV[a + 7]
  if slices[i + 1] <= tonumber(ARGV[a + 1]) then field = ARGV[a + 8] end
  if slices[i + 1] > 0 then redis.call('HINCRBY', c, field, int(slices[i + 1])) end
  if created[i + 1] or ARGV[a + 5] == '1' then redis.call('PEXPIRE', c, ARGV[a + 4]) end
  out[#out + 1] = slices[i + 1]
  out[#out + 1] = rest[i + 1]
  out[#out + 1] = recall[i + 1]
end
return out
)lua");

// KEYS: one counter per lease, then the gateway's flush sequence key for the tenant. ARGV:
// now (ms), the batch's sequence number, the sequence key's ttl (ms), then per lease: hold
// field, hold expiry (ms), settled (>= 0), returned (an integer; negative when requests used
// more than their worst case), counter ttl (ms). Unless the sequence key already holds this
// number or a later one (the batch was applied before: its answer was lost and it is sent
// again), records the number and, for each lease, moves `settled` from the hold to `used` and
// releases `returned` (a hold already expired releases nothing: it counts for nothing
// already). Returns each counter's recall count, then 1 if the batch was applied now, 0 if it
// had been before.
const redis::script flush_script(std::string(amount_of_lua) + std::string(integer_lua) + R"lua(
local now, seq, n = tonumber(ARGV[1]), tonumber(ARGV[2]), #KEYS - 1
if not seq or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR tollgate: lease flush sequence must be an integer')
end
for i = 1, n do
  local a = 4 + 5 * (i - 1)
  local r = ARGV[a + 3]
  if not amount_of(ARGV[a + 2]) or not r or not string.find(r, '^%-?%d+$') then
    return redis.error_reply('ERR tollgate: lease flush amounts must be integers')
  end
end
local last = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
local apply = seq > last
-- Recorded before the counters change: were the script to fail halfway (Redis does not undo a
-- script's writes), a resend would skip the rest, which its holds keep counting until they
-- expire, instead of releasing what was released already a second time.
if apply then redis.call('SET', KEYS[#KEYS], ARGV[2], 'PX', ARGV[3]) end
local out = {}
for i = 1, n do
  local k, a = KEYS[i], 4 + 5 * (i - 1)
  local settled, returned = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local give = settled + returned
  if apply and tonumber(ARGV[a + 1]) > now and give ~= 0 then
    if redis.call('HINCRBY', k, ARGV[a], int(-give)) <= 0 then redis.call('HDEL', k, ARGV[a]) end
  end
  if apply and settled > 0 then
    local fresh = redis.call('EXISTS', k) == 0
    redis.call('HINCRBY', k, 'used', ARGV[a + 2])
    if fresh then redis.call('PEXPIRE', k, ARGV[a + 4]) end
  end
  out[i] = tonumber(redis.call('HGET', k, 'R') or '0')
end
out[n + 1] = apply and 1 or 0
return out
)lua");

// The flush sequence key outlives every hold a batch releases by this much (the gateway's
// clock may step back between a batch and its resend): past a hold's expiry, applying its batch
// again could only count its settled usage twice (conservative), never release the hold twice.
constexpr std::int64_t flush_sequence_margin_ms = 60'000;

redis::redis_error protocol_error(const std::string& what) {
  return redis::redis_error{"unexpected answer from the lease script: " + what};
}

}  // namespace

lease_engine::lease_engine(std::chrono::milliseconds hold_ttl, std::chrono::milliseconds lease_time,
                           std::int64_t divisor, std::string gateway_id)
    : holds_(hold_ttl),
      lease_time_(lease_time),
      divisor_(std::max<std::int64_t>(divisor, 1)),
      gateway_id_(std::move(gateway_id)) {}

std::string lease_engine::sharing_key(const std::string& tenant_id,
                                      const std::string& counter_id) {
  return "tg:{" + tenant_id + "}:g:" + counter_id;
}

std::int64_t lease_engine::serve_until_ms(const limit_rule& rule, std::int64_t now_ms) const {
  std::int64_t until = now_ms + lease_time_.count();
  if (rule.window.sliding()) {
    // Only within the bucket it holds in: that keeps sliding windows exact (docs/BUDGETS.md).
    const std::int64_t b = bucket_length_ms(rule.window.length_ms);
    until = std::min(until, rule.start_at(now_ms) + b);
  } else if (rule.window.kind != budget_window::lifetime) {
    until = std::min(until, rule.end_at(now_ms));
  }
  return until;
}

net::awaitable<basic_result<lease_acquisition, redis::redis_error>> lease_engine::acquire(
    redis::client& redis, std::string tenant_id, std::vector<lease_request> requests,
    std::int64_t now_ms) {
  lease_acquisition out;
  std::vector<std::string> keys;
  std::vector<std::string> args{std::to_string(now_ms), gateway_id_, std::to_string(divisor_),
                                std::to_string(sharing_lease_times * lease_time_.count()),
                                std::to_string(requests.size())};
  for (const auto& r : requests) {
    const limit_rule& rule = r.charge.rule;
    const std::vector<std::int64_t> starts = rule.counted_starts(now_ms);
    lease_grant g;
    g.counter_key = budget_engine::counter_key(tenant_id, rule.id, starts[0]);
    g.counter_ttl_ms = counter_ttl_ms(rule, starts[0], now_ms);
    g.serve_until_ms = r.exact ? now_ms + 1 : serve_until_ms(rule, now_ms);
    g.hold_expiry_ms = holds_.hold_expiry_ms(g.serve_until_ms);
    g.hold_field = "h" + std::to_string(g.hold_expiry_ms);
    g.asked = r.charge.amount;
    for (const std::int64_t start : starts) {
      keys.push_back(budget_engine::counter_key(tenant_id, rule.id, start));
    }
    keys.push_back(sharing_key(tenant_id, rule.id));
    args.push_back(std::to_string(rule.limit));
    args.push_back(std::to_string(r.charge.amount));
    args.push_back(rule.hard ? "1" : "0");
    args.push_back(std::to_string(starts.size()));
    args.push_back(std::to_string(g.counter_ttl_ms));
    args.push_back(rule.window.kind == budget_window::lifetime ? "1" : "0");
    args.push_back(r.exact ? "1" : r.ahead ? "2" : "0");
    args.push_back(g.hold_field);
    args.push_back("h" + std::to_string(holds_.hold_expiry_ms(now_ms + 1)));
    out.grants.push_back(std::move(g));
  }
  auto r = co_await redis.eval(acquire_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"lease script failed: " + r->str};
  if (r->type != redis::reply::kind::array || r->elements.empty()) {
    co_return protocol_error("not an array");
  }
  const auto& e = r->elements;
  if (e[0].integer == 1) {
    if (e.size() != 3 * requests.size() + 1) co_return protocol_error("wrong length");
    out.granted = true;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      out.grants[i].slice = e[1 + 3 * i].integer;
      out.grants[i].remaining_after = e[2 + 3 * i].integer;
      out.grants[i].recall_seen = e[3 + 3 * i].integer;
      if (out.grants[i].slice <= requests[i].charge.amount && !requests[i].ahead) {
        // A one-request lease (the script chose it near the limit): it serves the request at
        // hand only, and its hold expires as a per-request hold's does.
        out.grants[i].serve_until_ms = now_ms + 1;
        out.grants[i].hold_expiry_ms = holds_.hold_expiry_ms(now_ms + 1);
        out.grants[i].hold_field = "h" + std::to_string(out.grants[i].hold_expiry_ms);
      }
    }
    co_return out;
  }
  if (e.size() != 4) co_return protocol_error("wrong refusal");
  out.grants.clear();
  out.refused_index = static_cast<int>(e[1].integer);
  out.refused_remaining = e[2].integer;
  if (out.refused_index < 0 || static_cast<std::size_t>(out.refused_index) >= requests.size()) {
    co_return protocol_error("bad index");
  }
  const limit_rule& refusing = requests[static_cast<std::size_t>(out.refused_index)].charge.rule;
  const std::int64_t reopens = refusing.reopens_at(now_ms, static_cast<int>(e[3].integer));
  out.refused_reset_ms = reopens == 0 ? 0 : std::max<std::int64_t>(reopens - now_ms, 1);
  co_return out;
}

std::string lease_engine::flush_sequence_key(const std::string& tenant_id) const {
  return "tg:{" + tenant_id + "}:f:" + gateway_id_;
}

net::awaitable<basic_result<lease_flush_answer, redis::redis_error>> lease_engine::flush(
    redis::client& redis, std::string tenant_id, std::uint64_t sequence,
    std::vector<lease_flush_entry> entries, std::int64_t now_ms) {
  lease_flush_answer answer;
  if (entries.empty()) co_return answer;
  std::int64_t sequence_ttl_ms = flush_sequence_margin_ms;
  for (const auto& e : entries) {
    sequence_ttl_ms =
        std::max(sequence_ttl_ms, e.hold_expiry_ms - now_ms + flush_sequence_margin_ms);
  }
  std::vector<std::string> keys;
  std::vector<std::string> args{std::to_string(now_ms), std::to_string(sequence),
                                std::to_string(sequence_ttl_ms)};
  keys.reserve(entries.size() + 1);
  args.reserve(3 + 5 * entries.size());
  for (auto& e : entries) {
    keys.push_back(std::move(e.counter_key));
    args.push_back(std::move(e.hold_field));
    args.push_back(std::to_string(e.hold_expiry_ms));
    args.push_back(std::to_string(e.settled));
    args.push_back(std::to_string(e.returned));
    args.push_back(std::to_string(e.counter_ttl_ms));
  }
  keys.push_back(flush_sequence_key(tenant_id));
  auto r = co_await redis.eval(flush_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"lease flush failed: " + r->str};
  if (r->type != redis::reply::kind::array || r->elements.size() != entries.size() + 1) {
    co_return protocol_error("flush answer");
  }
  for (std::size_t i = 0; i < entries.size(); ++i) answer.recalls.push_back(r->elements[i].integer);
  answer.applied = r->elements.back().integer == 1;
  co_return answer;
}

}  // namespace tollgate::metering
