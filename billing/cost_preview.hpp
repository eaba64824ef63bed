// The cost of a tenant's period so far, from ledger totals (not yet from rated events): per
// model, token class and batch flag, the tokens of each price book version's time span are
// charged at that version's prices on one accumulator that runs through the period, so that
// each line is floor(F(total)) when one version covers the period (invariant 4). Batch usage
// has its own accumulator, priced with the plan's batch discount. Pure; the account store
// supplies the totals.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::billing {

struct cost_preview_input {
  std::string tenant_id;
  std::string period;  // "2026-11"
  std::string book_id, currency, tier_mode, tier_scope;
  int batch_discount_bp = 0;
  struct version {
    int number = 0;
    std::string prices_json;  // canonical (billing/price_book)
  };
  std::vector<version> versions;  // in effective order
  // Ledger totals of the period: per version in force (0: before the first version), model
  // and batch flag, in version order.
  struct totals {
    int version = 0;
    std::string model;
    bool batch = false;
    std::int64_t input = 0;  // prompt tokens that were not cached
    std::int64_t cached_input = 0;
    std::int64_t output = 0;
  };
  std::vector<totals> rows;
};

// A billing period is a calendar month in UTC, named "YYYY-MM" (years 1970..9999): its
// [start, end) in unix seconds, or nullopt for anything else.
std::optional<std::pair<std::int64_t, std::int64_t>> period_bounds(std::string_view period);
// The name of the period holding `unix_s`.
std::string period_of(std::int64_t unix_s);

// The preview as JSON: {"object":"cost_preview", tenant_id, period, currency, price_book_id,
// batch_discount_bp, lines:[{model, token_class, batch, tokens, amount_micros, versions}],
// unpriced:[{model, batch, tokens, reason}], total_micros}.
std::string cost_preview_json(const cost_preview_input& in);

}  // namespace tollgate::billing
