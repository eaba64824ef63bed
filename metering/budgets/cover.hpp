// Bundle coverage of credit_only holds (docs/CREDITS.md, "credit_only plans, in real time"):
// the tokens of a request's worst case that its tenant's coverage pools take, and the money
// held for the rest. The reserve script (budget_engine.cpp) computes the same in Lua, in the
// call that holds; these are its C++ twins, for settling and for the tests.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "metering/budgets/budget_engine.hpp"
#include "metering/budgets/budget_rows.hpp"
#include "metering/budgets/credit_rate.hpp"
#include "metering/usage.hpp"

namespace tollgate::metering {

// The counter id of a pool: "cover:<model, hex>:input" or ":output" (hex, because a model's
// name may hold any character, the separators of Redis keys and journal fields included).
std::string cover_pool_id(std::string_view model, bool output);

// What a pool with `left` tokens covers of `asked`: min(asked, left), never below 0.
std::int64_t covered_tokens(std::int64_t asked, std::int64_t left);

// The money a credit_only hold takes for `input_tokens` and `output_tokens` of which bundles
// cover `cover_in` and `cover_out`: the uncovered tokens at the worst-case rates, each class
// rounded up, plus every flat fee (0 for a request of no tokens), bounded at
// reservation_amount_max like every amount the scripts take.
std::int64_t uncovered_cost_micros(const credit_rate& rate, std::int64_t input_tokens,
                                   std::int64_t output_tokens, std::int64_t cover_in,
                                   std::int64_t cover_out);

// The pools of the credit mirror `credit` that cover a request of `request_model` (nullptr
// where it has none).
struct model_pools {
  const cover_pool* input = nullptr;
  const cover_pool* output = nullptr;
  bool any() const { return input != nullptr || output != nullptr; }
};
model_pools pools_for(const budget_info& credit, std::string_view request_model);

// The model whose pools cover a request of `model`: the name the ledger draws bundles by, the
// price book's entry ("*" in a book with tier_scope all_models, else the model itself).
std::string_view pool_model(const budget_info& credit, std::string_view model);

// A rate_e6 as the reserve script takes it: its base-10^6 digits, lowest first (every digit,
// and every product of two, is exact in Lua's doubles).
std::array<std::int64_t, 4> rate_digits(std::int64_t rate_e6);

// The cover_ask of a request whose charges are `applying` (charge i for applying[i]): when the
// credit mirror applies and has a pool for `model`, the pools of the model (one of limit 0
// where a class has none), the worst case's tokens and the plan's worst-case `rate`; nullopt
// otherwise (the hold is then taken as before, with no pool read).
std::optional<cover_ask> cover_ask_for(std::span<const budget_info* const> applying,
                                       std::string_view model, std::int64_t prompt_tokens,
                                       std::int64_t completion_tokens, const credit_rate& rate);

// What a covered hold carries until it is settled.
struct cover_hold {
  std::size_t charge = 0;                 // the credit charge's index
  std::array<std::int64_t, 2> covered{};  // input, output tokens the pools hold
  credit_rate rate;
  // Of the tokens used, those the class's bundles cannot pay: prompt tokens the upstream
  // reported cached, cache-written, image or audio; audio completion tokens (describe_cover
  // sets them from the usage record).
  std::array<std::int64_t, 2> other_classes{};
};

// What a covered hold settles to for the usage counted: each pool the tokens of its class
// used that it covered (min(used - other_classes, covered)), the credit counter the cost of
// the rest.
struct cover_settlement {
  std::int64_t credit_micros = 0;
  std::array<std::int64_t, 2> pool_tokens{};
};
cover_settlement settle_cover(const cover_hold& hold, std::int64_t prompt_tokens,
                              std::int64_t completion_tokens);

// Notes in `hold` the tokens of `rec` of other classes (as the ledger splits them:
// billing/rating.hpp's set_tokens) and writes the cover's settlement into `rec` (after
// describe_settled_spend, before it is recorded), so that the ledger writer corrects the pools
// and the credit counter to what it draws. No settlement is written when `rec` has no credit
// counter to correct.
void describe_cover(cover_hold& hold, usage_record& rec);

// The Redis key of a tenant's coverage pool (the counter the reserve script holds on).
std::string cover_pool_key(const std::string& tenant_id, std::string_view model, bool output);

}  // namespace tollgate::metering
