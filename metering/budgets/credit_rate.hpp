// The worst-case rates a plan's price book gives one model, and what a request costs at them:
// budgets price spend and credit holds with these. billing/credits derives the rates from a
// price book (worst_case_rate); this module only applies them, so it needs no billing header.
#pragma once
#include <cstdint>
#include <string>

namespace tollgate::metering {

// The highest tier rate of each token class and every flat fee of one model's prices. Rates
// are billing's rate_e6 (billing/pricing.hpp): micro-units per 1M tokens, times 10^6.
struct credit_rate {
  std::string model;       // or "*" for a book with tier_scope all_models
  std::int64_t input = 0;  // the highest of the input and cached input rates
  std::int64_t output = 0;
  std::int64_t flat_fees_micros = 0;
};

// ceil(input x rate) + ceil(output x rate) + the flat fees, in micro-units (0 for no tokens);
// saturates at INT64_MAX.
std::int64_t worst_case_cost_micros(const credit_rate& rate, std::int64_t input_tokens,
                                    std::int64_t output_tokens);

}  // namespace tollgate::metering
