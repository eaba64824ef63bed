// A request's cost at a plan's worst-case rates: see credit_rate.hpp.
#include "metering/budgets/credit_rate.hpp"

#include <algorithm>
#include <limits>

namespace tollgate::metering {

namespace {

// ceil(tokens x rate_e6 / 10^12): rates are per 1M tokens, times 10^6. Both factors are below
// 2^63, so the product fits 128 bits; the quotient saturates at INT64_MAX instead of wrapping.
__int128 ceil_cost(std::int64_t tokens, std::int64_t rate) {
  if (tokens <= 0 || rate <= 0) return 0;
  const __int128 scaled = static_cast<__int128>(tokens) * rate;
  const __int128 unit = 1'000'000'000'000;
  return (scaled + unit - 1) / unit;
}

}  // namespace

std::int64_t worst_case_cost_micros(const credit_rate& rate, std::int64_t input_tokens,
                                    std::int64_t output_tokens) {
  if (input_tokens <= 0 && output_tokens <= 0) return 0;
  const __int128 total = ceil_cost(input_tokens, rate.input) +
                         ceil_cost(output_tokens, rate.output) +
                         std::max<std::int64_t>(rate.flat_fees_micros, 0);
  const __int128 cap = std::numeric_limits<std::int64_t>::max();
  return static_cast<std::int64_t>(total > cap ? cap : total);
}

}  // namespace tollgate::metering
