// The budget engine: see budget_engine.hpp. The two Lua scripts below are the whole of the
// concurrency story: Redis runs each one atomically.
#include "metering/budgets/budget_engine.hpp"

#include "metering/budgets/cover.hpp"
#include "metering/budgets/script_parts.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <string_view>

namespace tollgate::metering {

namespace net = boost::asio;

namespace {

constexpr std::int64_t minute_ms = 60'000;
constexpr std::int64_t day_ms = 86'400'000;
// Counters outlive their window by this much (late settlements still find them).
constexpr std::int64_t counter_grace_ms = 3'600'000;
// A request's record outlives its hold by this much. A settlement that comes later finds no
// record: it counts the usage and releases nothing, the hold having expired already.
constexpr std::int64_t record_grace_ms = minute_ms;


// Bundle coverage in the reserve script (its header says how it is called): the covers and
// the credit charge's amount, read from the pools' counters, and their holds. ceil_cost is
// ceil(u x r / 10^12) for a token count 0 <= u < 2^53 and a rate given as base-10^6 digits
// (ARGV[d .. d + 3], lowest first), exact: every partial product is below 10^12 and every
// column sum below 2^53, so Lua's doubles hold each step (math.fmod is exact; `%` is not). It
// saturates at 2^53 - 1, as uncovered_cost_micros does. A pool's counter created by this call
// starts from what the ledger had drawn of it when the budgets were read.
constexpr std::string_view cover_cost_lua = R"lua(
local function ceil_cost(u, d)
  if u <= 0 then return 0 end
  local digits = {}
  while u > 0 do
    local x = math.fmod(u, 1000000)
    digits[#digits + 1] = x
    u = (u - x) / 1000000
  end
  local col = {0, 0, 0, 0, 0, 0, 0, 0}
  for a = 1, #digits do
    for b = 1, 4 do
      col[a + b - 1] = col[a + b - 1] + digits[a] * tonumber(ARGV[d + b - 1])
    end
  end
  local carry = 0
  for c = 1, 8 do
    local v = col[c] + carry
    col[c] = math.fmod(v, 1000000)
    carry = (v - col[c]) / 1000000
  end
  if col[6] + col[7] + col[8] > 0 or col[5] >= 9007 then return 9007199254740991 end
  local q = col[3] + col[4] * 1000000 + col[5] * 1000000000000
  if col[1] + col[2] > 0 then q = q + 1 end
  return q
end
local function pool_left(key, limit, seed, ttl, now)
  local used, fresh = count(key, now)
  if fresh and seed > 0 then
    redis.call('HSET', key, 'used', string.format('%d', seed))
    redis.call('PEXPIRE', key, ttl)
    used = seed
  end
  return math.max(limit - used, 0)
end
local function cover_of(b, pin, pout, now)
  local c = {charge = tonumber(ARGV[b]), pin = pin, pout = pout, ttl = ARGV[b + 7]}
  local ask_in, ask_out = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local left_in = pool_left(pin, tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5]), c.ttl, now)
  local left_out = pool_left(pout, tonumber(ARGV[b + 4]), tonumber(ARGV[b + 6]), c.ttl, now)
  c.input, c.output = math.min(ask_in, left_in), math.min(ask_out, left_out)
  c.amount = 0
  if ask_in + ask_out > 0 then
    local m = tonumber(ARGV[b + 8]) + ceil_cost(ask_in - c.input, b + 9) +
              ceil_cost(ask_out - c.output, b + 13)
    c.amount = math.min(m, 9007199254740991)
  end
  return c
end
local function hold_cover(c, field)
  for _, p in ipairs({{c.pin, c.input}, {c.pout, c.output}}) do
    if p[2] > 0 then
      redis.call('HINCRBY', p[1], field, string.format('%d', p[2]))
      redis.call('PEXPIRE', p[1], c.ttl)
    end
  end
end
)lua";

// A counter is a hash at KEY: `used` (settled usage), one field per hold expiry time
// `h<expiry ms>` (the sum of the holds in flight that expire then), and the alert markers
// `a<percent>`. Hold fields whose time has come count for nothing and are deleted by the next
// reserve that reads them. Each request that holds has a record at tg:{tenant}:r:<request id>:
// "h<expiry ms> <amount 1> <amount 2> ..." while it holds (until a minute past the hold's
// expiry), then "s" once settled (for hold_ttl, against a repeated settlement). So a request costs
// a handful of Redis commands whatever the number of requests in flight: no per-request entries
// inside the counters, and no separate sweep.
//
// A calendar or lifetime limit has one counter per window instance. A sliding limit has one
// per bucket (windows.hpp); the reserve counts every bucket overlapping the window, whole, and
// holds in the newest.
//
// KEYS: for each charge, the counters it counts, the one it holds in first (for a sliding
// window the newest bucket, then the older ones, newest first); then the request's record.
// ARGV: now (ms), hold field, hold record, record ttl (ms), number of charges, then per charge:
// limit, amount, hard (1/0), number of counters, counter ttl (ms), renew (1: set the counter's
// ttl on every use, for lifetime counters; 0: only when created).
// Returns {1, remaining...} or {0, refusing charge index (0-based), what it had left, the
// position (1-based) of its oldest counter that counts anything, 0 if none}.
// Bundle coverage of a credit_only hold (cover.hpp), when ARGV goes on after the charges: the
// input and output pools' counters come last in KEYS before the record, and ARGV adds the
// credit charge's index (0-based; its amount is computed here), the tokens asked of each pool,
// their limits, the settled usage a pool's counter starts from when it is created, the pools'
// ttl, the flat fees and the input and output rates as four base-10^6 digits each. Each pool
// covers min(asked, what it has left); the credit charge is the uncovered tokens' cost; the
// pools hold their covers with the other holds (the record lists them after the charges).
// The answer then adds the covers and the credit amount: {1, remaining..., cover in, cover
// out, credit amount}; a refusal adds the credit amount.
// Expiries are set when a key is created, not on every call: a window instance's keys expire
// at its end plus a grace period, which does not move (lifetime counters excepted).
const redis::script reserve_script(std::string(amount_of_lua) + std::string(count_lua) +
                                   std::string(cover_cost_lua) + R"lua(
local now = tonumber(ARGV[1])
local field, record, record_ttl = ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local remaining, created, first = {}, {}, {}
local cover, credit_i, credit_amount
if ARGV[6 + 6 * n] then
  cover = cover_of(6 + 6 * n, KEYS[#KEYS - 2], KEYS[#KEYS - 1], now)
  credit_i, credit_amount = cover.charge, cover.amount
end
local k = 1
for i = 0, n - 1 do
  local a = 6 + 6 * i
  local limit, amount = tonumber(ARGV[a]), amount_of(ARGV[a + 1])
  if i == credit_i then amount = credit_amount end
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
  first[i + 1] = k
  k = k + m
  if hard and used + amount > limit then
    if cover then return {0, i, math.max(limit - used, 0), oldest, credit_amount} end
    return {0, i, math.max(limit - used, 0), oldest}
  end
  remaining[i + 1] = limit - used - amount
end
if cover then
  local amounts = {}
  for i = 0, n - 1 do
    amounts[i + 1] = i == credit_i and string.format('%d', credit_amount) or ARGV[7 + 6 * i]
  end
  record = field .. ' ' .. table.concat(amounts, ' ') ..
           string.format(' %d %d', cover.input, cover.output)
end
-- The same request reserving twice holds once: its record exists already.
if redis.call('SET', KEYS[#KEYS], record, 'NX', 'PX', record_ttl) then
  for i = 0, n - 1 do
    local c = KEYS[first[i + 1]]
    local a = 6 + 6 * i
    local amount = i == credit_i and string.format('%d', credit_amount) or ARGV[a + 1]
    if amount ~= '0' then redis.call('HINCRBY', c, field, amount) end
    if created[i + 1] or ARGV[a + 5] == '1' then redis.call('PEXPIRE', c, ARGV[a + 4]) end
  end
  if cover then hold_cover(cover, field) end
end
if cover then
  remaining[n + 1] = cover.input
  remaining[n + 2] = cover.output
  remaining[n + 3] = credit_amount
end
return {1, unpack(remaining)}
)lua");

// KEYS: the counters the request reserved on, then its record, then the other buckets of the
// sliding windows with alert thresholds (for each counter in turn, as many as it says).
// ARGV: number of counters, settled record ttl (ms), then per counter: actual usage, ttl,
// number of alert thresholds, number of other buckets, and the thresholds' (percent, level)
// pairs.
// Returns {0} if the request was settled before, else {1, then per threshold crossed: counter
// index (0-based), percent, settled usage of the window}. A threshold is crossed once per
// window instance: its marker field `a<percent>` in the counter hash remembers it; in a sliding
// window, once while a bucket with its marker is still inside the window.
const redis::script settle_script(std::string(amount_of_lua) + R"lua(
local n = tonumber(ARGV[1])
-- Every amount is checked before anything is written.
local a = 3
for i = 1, n do
  if not amount_of(ARGV[a]) then
    return redis.error_reply('ERR tollgate: amount ' .. ARGV[a] .. ' is not an integer in [0, 2^53)')
  end
  a = a + 4 + 2 * tonumber(ARGV[a + 2])
end
local record = redis.call('SET', KEYS[n + 1], 's', 'GET', 'PX', ARGV[2])
if record == 's' then
  return {0}
end
-- The holds to release (none if the record is gone). A hold field that has expired already
-- counts for nothing whatever is taken from it, and the next reserve deletes it.
local field, held = nil, {}
if record then
  for w in string.gmatch(record, '%S+') do
    if field then held[#held + 1] = w else field = w end
  end
end
local out = {1}
a = 3
local other = n + 2
for i = 1, n do
  local k = KEYS[i]
  local actual, ttl = ARGV[a], ARGV[a + 1]
  local m, w = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  -- A held amount is released as a number (the record was written by reserve, which checked
  -- it); one that does not read as an amount releases nothing.
  local release = field and held[i] and amount_of(held[i])
  if release and release > 0 then
    -- Formatted as an integer: Redis may write a plain Lua number as 1e+09.
    redis.call('HINCRBY', k, field, string.format('%d', -release))
  end
  local used = redis.call('HINCRBY', k, 'used', actual)
  -- Nothing was settled before: the counter may have expired and been created again just now.
  if used == tonumber(actual) then redis.call('PEXPIRE', k, ttl, 'NX') end
  local window_used = used
  for j = other, other + w - 1 do
    window_used = window_used + tonumber(redis.call('HGET', KEYS[j], 'used') or '0')
  end
  for _ = 1, m do
    local pct, level = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    if window_used >= level then
      local marker, seen = 'a' .. pct, false
      for j = other, other + w - 1 do
        if redis.call('HEXISTS', KEYS[j], marker) == 1 then seen = true end
      end
      if not seen and redis.call('HSETNX', k, marker, window_used) == 1 then
        out[#out + 1] = i - 1
        out[#out + 1] = tonumber(pct)
        out[#out + 1] = window_used
      end
    end
  end
  other = other + w
end
return out
)lua");

// KEYS: a counter. ARGV: its new settled usage, its ttl (ms). Returns the usage it replaced.
const redis::script set_used_script(R"lua(
local old = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
redis.call('HSET', KEYS[1], 'used', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')
return old
)lua");

// KEYS: counters. ARGV: one delta each (an integer of either sign). Adds each delta to its
// counter's settled usage if the counter exists; returns how many did.
const redis::script adjust_script(R"lua(
for i = 1, #KEYS do
  local d = ARGV[i]
  if not d or not string.find(d, '^%-?%d+$') or math.abs(tonumber(d)) > 9007199254740991 then
    return redis.error_reply('ERR tollgate: delta ' .. tostring(d) .. ' is not an integer in (-2^53, 2^53)')
  end
end
local applied = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'used', ARGV[i])
    applied = applied + 1
  end
end
return applied
)lua");

// KEYS: every limit's counters in turn (as reserve counts them). ARGV: now (ms), number of
// limits, then the number of counters of each. Writes nothing. Returns per limit: settled
// usage, live holds, and the position (1-based) of its oldest counter that counts anything
// (0 if none).
const redis::script usage_script(R"lua(
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out, k = {}, 1
for i = 1, n do
  local used, held, oldest = 0, 0, 0
  for j = 1, tonumber(ARGV[2 + i]) do
    local h = redis.call('HGETALL', KEYS[k])
    k = k + 1
    local counted = 0
    for x = 1, #h, 2 do
      local f, v = h[x], tonumber(h[x + 1]) or 0
      if f == 'used' then
        used = used + v
        counted = counted + v
      elseif string.byte(f) == 104 and (tonumber(string.sub(f, 2)) or 0) > now then
        held = held + v
        counted = counted + v
      end
    end
    if counted ~= 0 then oldest = j end
  end
  out[#out + 1] = used
  out[#out + 1] = held
  out[#out + 1] = oldest
end
return out
)lua");

redis::redis_error protocol_error(const std::string& what) {
  return redis::redis_error{"unexpected answer from the budget script: " + what};
}

// Appends a cover_ask's keys and arguments (the reserve script's header) and adds its pools
// to the ticket as two more counters, which the settlement settles like the others.
void add_cover(const cover_ask& cover, const std::string& tenant_id,
               std::vector<std::string>& keys, std::vector<std::string>& args,
               hold_ticket& ticket) {
  limit_rule pool;
  pool.window = budget_window::lifetime;
  const std::int64_t ttl = counter_ttl_ms(pool, 0, 0);
  args.push_back(std::to_string(cover.charge));
  for (const auto n : cover.asked) args.push_back(std::to_string(n));
  for (const auto n : cover.limits) args.push_back(std::to_string(n));
  for (const auto n : cover.seeds) args.push_back(std::to_string(n));
  args.push_back(std::to_string(ttl));
  args.push_back(std::to_string(std::min(std::max<std::int64_t>(cover.rate.flat_fees_micros, 0),
                                         std::int64_t{9'007'199'254'740'991})));
  for (const std::int64_t rate : {cover.rate.input, cover.rate.output}) {
    for (const auto d : rate_digits(rate)) args.push_back(std::to_string(d));
  }
  for (const auto& id : cover.pool_ids) {
    keys.push_back(budget_engine::counter_key(tenant_id, id, 0));
    ticket.counter_keys.push_back(keys.back());
    ticket.ttl_ms.push_back(ttl);
    ticket.window_start_ms.push_back(0);
    ticket.alert_levels.emplace_back();
    ticket.window_keys.emplace_back();
  }
}

}  // namespace

std::int64_t estimate_spend_micros(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                                   std::uint64_t input_price, std::uint64_t output_price) {
  using u128 = unsigned __int128;
  const u128 p = static_cast<u128>(std::max<std::int64_t>(prompt_tokens, 0));
  const u128 c = static_cast<u128>(std::max<std::int64_t>(completion_tokens, 0));
  const u128 numerator = p * input_price + c * output_price;  // < 2^64 * 2^40 * 2: no overflow
  const u128 micros = (numerator + 999'999) / 1'000'000;
  const u128 cap = static_cast<u128>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(micros > cap ? cap : micros);
}

std::int64_t threshold_level(std::int64_t limit, int percent) {
  using i128 = __int128;
  const i128 level = (static_cast<i128>(std::max<std::int64_t>(limit, 0)) * percent + 99) / 100;
  const i128 cap = std::numeric_limits<std::int64_t>::max();
  return static_cast<std::int64_t>(level > cap ? cap : level);
}

std::int64_t limit_rule::start_at(std::int64_t now_ms) const {
  return fixed_end_ms > 0 ? fixed_start_ms : window_start_ms(window, now_ms);
}

std::int64_t limit_rule::end_at(std::int64_t now_ms) const {
  return fixed_end_ms > 0 ? fixed_end_ms : window_end_ms(window, now_ms);
}

std::vector<std::int64_t> limit_rule::counted_starts(std::int64_t now_ms) const {
  if (!window.sliding()) return {start_at(now_ms)};
  const sliding_buckets b = buckets_at(window.length_ms, now_ms);
  std::vector<std::int64_t> starts;
  starts.reserve(static_cast<std::size_t>(b.count));
  for (int i = 0; i < b.count; ++i) starts.push_back(b.start_of(i));
  return starts;
}

std::int64_t limit_rule::reopens_at(std::int64_t now_ms, int oldest) const {
  if (!window.sliding()) return end_at(now_ms);
  const sliding_buckets b = buckets_at(window.length_ms, now_ms);
  return b.leaves_at(oldest >= 1 && oldest <= b.count ? oldest - 1 : b.count - 1);
}

std::int64_t counter_ttl_ms(const limit_rule& rule, std::int64_t start, std::int64_t now_ms) {
  if (rule.window.kind == budget_window::lifetime) return 10ll * 365 * day_ms;
  const std::int64_t end = rule.window.sliding() ? start + bucket_length_ms(rule.window.length_ms) +
                                                       rule.window.length_ms
                                                 : rule.end_at(now_ms);
  return std::max<std::int64_t>(end - now_ms, 0) + counter_grace_ms;
}

std::string budget_engine::counter_key(const std::string& tenant_id, const std::string& limit_id,
                                       std::int64_t window_start) {
  const std::string start = std::to_string(window_start);
  std::string key;
  key.reserve(tenant_id.size() + limit_id.size() + start.size() + 9);
  key.append("tg:{").append(tenant_id).append("}:b:").append(limit_id).append(":").append(start);
  return key;
}

std::string budget_engine::request_record_key(const std::string& tenant_id,
                                              const std::string& request_id) {
  return "tg:{" + tenant_id + "}:r:" + request_id;
}

std::int64_t budget_engine::hold_expiry_ms(std::int64_t now_ms) const {
  // Holds that expire in the same slice of an eighth of the hold time share one field, so a
  // counter has about nine live hold fields however many requests are in flight. A hold lives
  // between hold_ttl and hold_ttl + hold_ttl / 8.
  const std::int64_t slice = std::max<std::int64_t>(hold_ttl_.count() / 8, 1);
  const std::int64_t at = now_ms + hold_ttl_.count();
  return (at + slice - 1) / slice * slice;
}

net::awaitable<basic_result<reservation, redis::redis_error>> budget_engine::reserve(
    redis::client& redis, std::string tenant_id, std::string request_id,
    std::vector<limit_charge> charges, std::int64_t now_ms, const cover_ask* cover) {
  reservation out;
  const std::int64_t expiry = hold_expiry_ms(now_ms);
  const std::string field = "h" + std::to_string(expiry);
  std::string record = field;
  for (const auto& c : charges) {
    record += ' ';
    record += std::to_string(c.amount);
  }
  std::vector<std::string> keys;
  keys.reserve(charges.size() * static_cast<std::size_t>(sliding_buckets_max) + 1);
  std::vector<std::string> args{std::to_string(now_ms), field, std::move(record),
                                std::to_string(expiry - now_ms + record_grace_ms),
                                std::to_string(charges.size())};
  for (const auto& c : charges) {
    const std::vector<std::int64_t> starts = c.rule.counted_starts(now_ms);
    const std::int64_t ttl = counter_ttl_ms(c.rule, starts[0], now_ms);
    const std::size_t first = keys.size();
    for (const std::int64_t start : starts)
      keys.push_back(counter_key(tenant_id, c.rule.id, start));
    out.ticket.counter_keys.push_back(keys[first]);
    out.ticket.ttl_ms.push_back(ttl);
    out.ticket.window_start_ms.push_back(starts[0]);
    std::vector<std::pair<int, std::int64_t>> levels;
    for (int pct : c.rule.alert_percents) levels.emplace_back(pct, threshold_level(c.rule.limit, pct));
    // A sliding window's thresholds count the settled usage of its other buckets too.
    std::vector<std::string> others;
    if (!levels.empty())
      others.assign(keys.begin() + static_cast<std::ptrdiff_t>(first) + 1, keys.end());
    out.ticket.window_keys.push_back(std::move(others));
    out.ticket.alert_levels.push_back(std::move(levels));
    args.push_back(std::to_string(c.rule.limit));
    args.push_back(std::to_string(c.amount));
    args.push_back(c.rule.hard ? "1" : "0");
    args.push_back(std::to_string(starts.size()));
    args.push_back(std::to_string(ttl));
    args.push_back(c.rule.window.kind == budget_window::lifetime ? "1" : "0");
  }
  if (cover != nullptr) add_cover(*cover, tenant_id, keys, args, out.ticket);
  keys.push_back(request_record_key(tenant_id, request_id));
  out.ticket.tenant_id = std::move(tenant_id);
  out.ticket.request_id = std::move(request_id);
  auto r = co_await redis.eval(reserve_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"budget script failed: " + r->str};
  if (r->type != redis::reply::kind::array || r->elements.empty()) {
    co_return protocol_error("not an array");
  }
  const auto& e = r->elements;
  const std::size_t extra = cover != nullptr ? 3 : 0;  // the covers and the credit amount
  if (e[0].integer == 1) {
    if (e.size() != charges.size() + 1 + extra) co_return protocol_error("wrong length");
    out.granted = true;
    for (std::size_t i = 1; i < charges.size() + 1; ++i) out.remaining.push_back(e[i].integer);
    if (cover != nullptr) {
      out.covered = {e[charges.size() + 1].integer, e[charges.size() + 2].integer};
      out.credit_amount = e[charges.size() + 3].integer;
    }
    co_return out;
  }
  if (e.size() != 4 + (extra > 0 ? 1 : 0)) co_return protocol_error("wrong refusal");
  if (cover != nullptr) out.credit_amount = e[4].integer;
  out.refused_index = static_cast<int>(e[1].integer);
  out.refused_remaining = e[2].integer;
  if (out.refused_index < 0 || static_cast<std::size_t>(out.refused_index) >= charges.size()) {
    co_return protocol_error("bad index");
  }
  const limit_rule& refusing = charges[static_cast<std::size_t>(out.refused_index)].rule;
  const std::int64_t reopens = refusing.reopens_at(now_ms, static_cast<int>(e[3].integer));
  out.refused_reset_ms = reopens == 0 ? 0 : std::max<std::int64_t>(reopens - now_ms, 1);
  hold_ticket none;  // nothing held
  none.tenant_id = std::move(out.ticket.tenant_id);
  none.request_id = std::move(out.ticket.request_id);
  out.ticket = std::move(none);
  co_return out;
}

net::awaitable<basic_result<settlement, redis::redis_error>> budget_engine::settle(
    redis::client& redis, hold_ticket ticket, std::vector<std::int64_t> actual) {
  const std::size_t n = ticket.counter_keys.size();
  if (actual.size() != n || ticket.ttl_ms.size() != n ||
      (!ticket.alert_levels.empty() && ticket.alert_levels.size() != n) ||
      (!ticket.window_keys.empty() && ticket.window_keys.size() != n)) {
    co_return redis::redis_error{"settle: one actual amount per reserved limit is needed"};
  }
  std::vector<std::string> keys = ticket.counter_keys;
  keys.push_back(request_record_key(ticket.tenant_id, ticket.request_id));
  std::vector<std::string> args{std::to_string(n), std::to_string(hold_ttl_.count())};
  for (std::size_t i = 0; i < n; ++i) {
    args.push_back(std::to_string(actual[i]));
    args.push_back(std::to_string(ticket.ttl_ms[i]));
    const auto* levels = ticket.alert_levels.empty() ? nullptr : &ticket.alert_levels[i];
    const auto* others = ticket.window_keys.empty() ? nullptr : &ticket.window_keys[i];
    args.push_back(std::to_string(levels ? levels->size() : 0));
    args.push_back(std::to_string(others ? others->size() : 0));
    if (others != nullptr) keys.insert(keys.end(), others->begin(), others->end());
    if (levels == nullptr) continue;
    for (const auto& [pct, level] : *levels) {
      args.push_back(std::to_string(pct));
      args.push_back(std::to_string(level));
    }
  }
  auto r = co_await redis.eval(settle_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"settle script failed: " + r->str};
  if (r->type != redis::reply::kind::array || r->elements.empty() ||
      (r->elements.size() - 1) % 3 != 0) {
    co_return protocol_error("settle answer");
  }
  settlement out;
  out.first = r->elements[0].integer == 1;
  for (std::size_t i = 1; i + 2 < r->elements.size(); i += 3) {
    threshold_crossing c;
    c.charge = static_cast<std::size_t>(r->elements[i].integer);
    c.percent = static_cast<int>(r->elements[i + 1].integer);
    c.used = r->elements[i + 2].integer;
    if (c.charge >= n) co_return protocol_error("settle answer index");
    out.crossings.push_back(c);
  }
  co_return out;
}

net::awaitable<basic_result<std::int64_t, redis::redis_error>> budget_engine::set_used(
    redis::client& redis, std::string tenant_id, limit_rule rule, std::int64_t window_start,
    std::int64_t used, std::int64_t now_ms) {
  std::vector<std::string> keys{counter_key(tenant_id, rule.id, window_start)};
  std::vector<std::string> args{std::to_string(used),
                                std::to_string(counter_ttl_ms(rule, window_start, now_ms))};
  auto r = co_await redis.eval(set_used_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"budget script failed: " + r->str};
  co_return static_cast<std::int64_t>(r->integer);
}

net::awaitable<basic_result<std::int64_t, redis::redis_error>> budget_engine::adjust_used(
    redis::client& redis, std::vector<std::string> counters, std::vector<std::int64_t> deltas) {
  std::vector<std::string> args;
  args.reserve(deltas.size());
  for (const std::int64_t d : deltas) args.push_back(std::to_string(d));
  auto r = co_await redis.eval(adjust_script, std::move(counters), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"adjust script failed: " + r->str};
  co_return static_cast<std::int64_t>(r->integer);
}

net::awaitable<basic_result<std::vector<window_usage>, redis::redis_error>> budget_engine::usage(
    redis::client& redis, std::string tenant_id, std::vector<limit_rule> rules,
    std::int64_t now_ms) {
  std::vector<window_usage> out;
  if (rules.empty()) co_return out;
  std::vector<std::string> keys;
  std::vector<std::string> args{std::to_string(now_ms), std::to_string(rules.size())};
  for (const auto& rule : rules) {
    const std::vector<std::int64_t> starts = rule.counted_starts(now_ms);
    args.push_back(std::to_string(starts.size()));
    for (const std::int64_t start : starts) keys.push_back(counter_key(tenant_id, rule.id, start));
  }
  auto r = co_await redis.eval(usage_script, std::move(keys), std::move(args));
  if (!r) co_return r.error();
  if (r->is_error()) co_return redis::redis_error{"budget script failed: " + r->str};
  if (r->type != redis::reply::kind::array || r->elements.size() != 3 * rules.size()) {
    co_return protocol_error("usage answer");
  }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    window_usage u;
    u.used = r->elements[3 * i].integer;
    u.held = r->elements[3 * i + 1].integer;
    u.reopens_at_ms = rules[i].reopens_at(now_ms, static_cast<int>(r->elements[3 * i + 2].integer));
    out.push_back(u);
  }
  co_return out;
}

net::awaitable<basic_result<std::int64_t, redis::redis_error>> budget_engine::used(
    redis::client& redis, std::string tenant_id, limit_rule rule, std::int64_t now_ms) {
  std::vector<limit_rule> rules{std::move(rule)};
  auto u = co_await usage(redis, std::move(tenant_id), std::move(rules), now_ms);
  if (!u) co_return u.error();
  co_return u->at(0).used + u->at(0).held;
}

}  // namespace tollgate::metering
