// The worst case a request can cost, in tokens, before it is forwarded: what budgets reserve.
// Pure arithmetic that cannot wrap: every prompt of the request (a chat request has one, a
// legacy completion one per entry of its prompt array), each completed `copies` times (n, or
// best_of when larger), each completion at most max_tokens or, without it, the rest of the
// model's context. Sums saturate at reservation_amount_max, far above any budget.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace tollgate::metering {

// Amounts handed to the budget scripts stay exact in Redis's Lua numbers (doubles): 2^53 - 1.
constexpr std::int64_t reservation_amount_max = (std::int64_t{1} << 53) - 1;

struct worst_case_request {
  std::span<const std::int64_t> prompt_tokens;  // per prompt, as the gateway counted them
  std::int64_t max_tokens = -1;                 // per completion; -1: not given
  std::int64_t copies = 1;                      // completions per prompt: max(n, best_of)
  std::int64_t context_tokens = 0;              // the model's context length
};

struct worst_case_tokens {
  std::int64_t prompt_tokens = 0;      // summed over prompts and copies
  std::int64_t completion_tokens = 0;  // summed over prompts and copies
  std::int64_t total() const;          // saturating sum
};

// The worst case, or (nullopt) the index of the first prompt whose prompt + max_tokens does
// not fit the context (`overflowing_prompt`).
std::optional<worst_case_tokens> worst_case_of(const worst_case_request& r,
                                               std::size_t* overflowing_prompt = nullptr);

// a + b and a x b on non-negative amounts, saturating at reservation_amount_max.
std::int64_t saturating_add(std::int64_t a, std::int64_t b);
std::int64_t saturating_mul(std::int64_t a, std::int64_t b);

}  // namespace tollgate::metering
