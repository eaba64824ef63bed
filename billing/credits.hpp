// Credit drawdown, the pure part: which of a tenant's grants pay for a rated usage event, and
// how much each. The ledger writer locks the grants' accounts, draws each batch's events in
// order with draw_credit, and books the draws as double-entry transfers (sql/010_credits.sql,
// docs/CREDITS.md).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "billing/price_book.hpp"
#include "metering/budgets/credit_rate.hpp"

namespace tollgate::billing {

// The largest grant: 10^15 micro-units (a billion currency units).
constexpr std::int64_t credit_micros_max = 1'000'000'000'000'000;

// Whether `id` is a grant id a caller may choose (for idempotent retries): "cg_" and 1 to 64
// letters, digits, '-' or '_'.
bool is_credit_grant_id(std::string_view id);

// A grant with credit left, as drawdown sees it.
struct credit_grant_balance {
  std::string grant_id;
  std::int64_t balance_micros = 0;
  std::int64_t effective_at_s = 0;
  std::optional<std::int64_t> expires_at_s;        // none: never expires
  std::optional<std::vector<std::string>> models;  // none: any model
};

struct credit_draw {
  std::size_t grant = 0;  // index into the grants given to draw_credit
  std::int64_t amount_micros = 0;
};

// Draws up to `cost_micros` for an event of `model` that occurred at `at_s` from `grants`, given
// in drawdown order (priority ascending, then earliest expiry, then effective date, then id):
// each grant in force at `at_s` (effective_at <= at_s < expires_at) whose scope holds the model
// gives what it has, in that order, until the cost is paid. Lowers the balances; returns the
// draws (their sum is the part of the cost the credit paid).
std::vector<credit_draw> draw_credit(std::vector<credit_grant_balance>& grants,
                                     const std::string& model, std::int64_t at_s,
                                     std::int64_t cost_micros);

// The worst case a request can cost under a model's prices, for holding credit before the
// request runs (credit_only plans): the highest tier rate of each class and every flat fee.
// An upper bound of what rating charges for graduated tiers, and for volume tiers whose rates
// do not rise with volume. The rate and its cost (worst_case_cost_micros) live in
// metering/budgets/credit_rate.hpp, where budgets apply them.
using metering::credit_rate;
using metering::worst_case_cost_micros;
static_assert(std::is_same_v<decltype(credit_rate::input), rate_e6>);
credit_rate worst_case_rate(const model_prices& prices);

}  // namespace tollgate::billing
