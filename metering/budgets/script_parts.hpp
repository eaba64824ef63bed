// Lua functions the budget scripts share (budget_engine.cpp, lease_engine.cpp): the amount
// check and the count of one counter's settled usage and live holds. Internal to the module.
#pragma once
#include <string_view>

namespace tollgate::metering {

// Amounts must be non-negative integers of at most 2^53 - 1 (exact in Lua's numbers); anything
// else is refused with an error, so no input can make a hold negative or break a settlement.
// Every script that takes amounts starts with this check.
inline constexpr std::string_view amount_of_lua = R"lua(
local function amount_of(s)
  local v = tonumber(s)
  if not v or not string.find(s, '^%d+$') or v > 9007199254740991 then
    return nil
  end
  return v
end
)lua";

// Settled usage plus the live holds of the counter at `k` at `now` (ms); deletes its expired
// holds. Also says whether the counter is new (it did not exist, or deleting its expired holds
// deleted it). Fields other than `used` and `h<expiry>` (alert markers, the recall count of
// leases) count for nothing.
inline constexpr std::string_view count_lua = R"lua(
local function count(k, now)
  local h = redis.call('HGETALL', k)
  local used, expired = 0, {}
  for j = 1, #h, 2 do
    local f = h[j]
    if f == 'used' then
      used = used + tonumber(h[j + 1])
    elseif string.byte(f) == 104 then  -- 'h': holds expiring at the time that follows
      local at = tonumber(string.sub(f, 2))
      if at and at > now then
        used = used + tonumber(h[j + 1])
      elseif at then
        expired[#expired + 1] = f
      end
    end
  end
  if #expired > 0 then redis.call('HDEL', k, unpack(expired)) end
  return used, #h == 2 * #expired
end
)lua";

}  // namespace tollgate::metering
