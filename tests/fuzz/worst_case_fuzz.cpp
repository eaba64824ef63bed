// libFuzzer target: the reservation arithmetic. For any prompts, max_tokens, copies and context
// (hostile values included), the worst case is refused only when a prompt cannot fit, is never
// negative, and is never below what the upstream could produce (up to the saturation cap); the
// worst-case cost under any rates is never negative and never below the exact cost.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "billing/credits.hpp"
#include "metering/worst_case.hpp"

namespace {
std::int64_t take(const std::uint8_t*& data, std::size_t& size) {
  std::int64_t v = 0;
  const std::size_t n = size < 8 ? size : 8;
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using tollgate::metering::reservation_amount_max;
  tollgate::metering::worst_case_request r;
  r.max_tokens = take(data, size);
  r.copies = take(data, size) % 200;
  r.context_tokens = take(data, size);
  const std::int64_t input_rate = take(data, size);
  const std::int64_t output_rate = take(data, size);
  std::vector<std::int64_t> prompts;
  while (size > 0 && prompts.size() < 64) prompts.push_back(take(data, size));
  r.prompt_tokens = prompts;

  std::size_t at = 0;
  const auto w = tollgate::metering::worst_case_of(r, &at);
  const __int128 context = r.context_tokens < 0 ? 0 : r.context_tokens;
  const __int128 copies = r.copies < 1 ? 1 : r.copies;
  const __int128 cap = reservation_amount_max;
  __int128 prompt_sum = 0, completion_sum = 0;
  bool fits = true;
  for (const std::int64_t raw : prompts) {
    const __int128 p = raw < 0 ? 0 : raw;
    const __int128 c = r.max_tokens >= 0 ? r.max_tokens : context - p;
    if (p + (r.max_tokens >= 0 ? r.max_tokens : 0) > context) fits = false;
    prompt_sum += p;
    completion_sum += c < 0 ? 0 : c;
  }
  if (fits != w.has_value()) std::abort();
  if (!w) {
    const __int128 p = prompts[at] < 0 ? 0 : prompts[at];
    if (p + (r.max_tokens >= 0 ? r.max_tokens : 0) <= context) std::abort();  // wrong index
    return 0;
  }
  const auto at_least = [&](std::int64_t got, __int128 exact) {
    const __int128 want = exact > cap ? cap : exact;
    if (got < 0 || got > reservation_amount_max || got < want) std::abort();
  };
  at_least(w->prompt_tokens, prompt_sum * copies);
  at_least(w->completion_tokens, completion_sum * copies);
  at_least(w->total(), prompt_sum * copies + completion_sum * copies);

  tollgate::billing::credit_rate rate;
  rate.input = input_rate < 0 ? 0 : input_rate % (tollgate::billing::max_rate_e6 + 1);
  rate.output = output_rate < 0 ? 0 : output_rate % (tollgate::billing::max_rate_e6 + 1);
  const std::int64_t cost =
      tollgate::billing::worst_case_cost_micros(rate, w->prompt_tokens, w->completion_tokens);
  const __int128 unit = 1'000'000'000'000;
  const __int128 exact = (static_cast<__int128>(w->prompt_tokens) * rate.input + unit - 1) / unit +
                         (static_cast<__int128>(w->completion_tokens) * rate.output + unit - 1) / unit;
  const __int128 i64max = INT64_MAX;
  if (cost < 0 || cost < (exact > i64max ? i64max : exact)) std::abort();
  return 0;
}
