// A request's worst case in tokens: see worst_case.hpp.
#include "metering/worst_case.hpp"

#include <algorithm>

namespace tollgate::metering {

namespace {
std::int64_t clamp_amount(__int128 v) {
  if (v <= 0) return 0;
  return v > reservation_amount_max ? reservation_amount_max : static_cast<std::int64_t>(v);
}
}  // namespace

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  return clamp_amount(static_cast<__int128>(std::max<std::int64_t>(a, 0)) +
                      std::max<std::int64_t>(b, 0));
}

std::int64_t saturating_mul(std::int64_t a, std::int64_t b) {
  return clamp_amount(static_cast<__int128>(std::max<std::int64_t>(a, 0)) *
                      std::max<std::int64_t>(b, 0));
}

std::int64_t worst_case_tokens::total() const {
  return saturating_add(prompt_tokens, completion_tokens);
}

std::optional<worst_case_tokens> worst_case_of(const worst_case_request& r,
                                               std::size_t* overflowing_prompt) {
  const std::int64_t context = std::max<std::int64_t>(r.context_tokens, 0);
  const std::int64_t copies = std::max<std::int64_t>(r.copies, 1);
  __int128 prompts = 0;
  __int128 completions = 0;
  for (std::size_t i = 0; i < r.prompt_tokens.size(); ++i) {
    const std::int64_t p = std::max<std::int64_t>(r.prompt_tokens[i], 0);
    // Compared in 128 bits: max_tokens may be anything up to 2^63 - 1.
    const bool fits = r.max_tokens >= 0 ? static_cast<__int128>(p) + r.max_tokens <= context
                                        : p <= context;
    if (!fits) {
      if (overflowing_prompt != nullptr) *overflowing_prompt = i;
      return std::nullopt;
    }
    const std::int64_t completion = r.max_tokens >= 0 ? r.max_tokens : context - p;
    prompts += p;
    completions += completion;
  }
  worst_case_tokens out;
  // Each term is at most 2^63 per prompt and the prompts are bounded by the request size, so
  // the 128-bit sums cannot wrap before they are clamped.
  out.prompt_tokens = saturating_mul(clamp_amount(prompts), copies);
  out.completion_tokens = saturating_mul(clamp_amount(completions), copies);
  return out;
}

}  // namespace tollgate::metering
