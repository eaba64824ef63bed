// A billing period priced from the ledger's totals: per model, token class and batch flag, the
// tokens of each price book version's time span are charged at that version's prices on one
// accumulator that runs through the period, split into lines per tier, so that the lines of
// an accumulator add up to exactly floor(F(total)) when one version covers the period
// (invariant 4). Batch usage has its own accumulator, priced with the plan's batch discount.
// Used by the cost preview and by invoices. Pure; the plan store supplies the totals.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "billing/plan_terms.hpp"

namespace tollgate::billing {

// What pricing a period needs: the plan, its book's versions and the ledger's totals.
struct period_usage {
  std::string tenant_id;
  std::string period;  // "2026-11"
  std::string book_id, currency, tier_mode, tier_scope;
  int batch_discount_bp = 0;
  plan_terms terms;  // the allowances price the period; fees and commitment go on invoices
  struct version {
    int number = 0;
    std::string prices_json;  // canonical (billing/price_book)
  };
  std::vector<version> versions;  // in effective order
  // Totals per version in force (0: before the first version), model, batch flag and prompt
  // size, in version order. The classes split the tokens as rating_event::set_tokens does.
  struct totals {
    int version = 0;
    std::string model;
    bool batch = false;
    std::int64_t input = 0;  // prompt tokens in none of the other input classes
    std::int64_t cached_input = 0;
    std::int64_t output = 0;  // completion tokens that are not audio
    std::int64_t cache_write = 0;
    std::int64_t image_input = 0;
    std::int64_t audio_input = 0;
    std::int64_t audio_output = 0;
    std::int64_t requests = 0;  // events answered 2xx: each pays the request fee
    // The events' prompts all have more than this many tokens and at most the book's next
    // context band threshold (0: from the smallest prompt): it chooses their context band.
    std::int64_t prompt_above = 0;

    // The tokens of a class (billing/price_book's token_class order).
    std::int64_t tokens_of(int token_class) const;
    std::int64_t& tokens_of(int token_class);
  };
  std::vector<totals> rows;
};

struct priced_line {
  std::string model;        // or "*" for a book with tier_scope all_models
  // input, cached_input, cache_write, image_input, audio_input, output, audio_output or
  // requests (tokens then counts requests), with ">N" for the context band of prompts above N
  std::string token_class;
  bool batch = false;
  int tier = 1;  // 1-based; for volume tiers, the tier the period's volume reached; 0: included
  std::int64_t tokens = 0;
  std::int64_t amount_micros = 0;
  std::vector<int> versions;  // the price book versions that priced it
  // Tokens an allowance covers (amount 0; tier 0); or, model "*" and class included_usage,
  // what the plan's money allowance covers (amount negative: taken off the usage above it).
  bool included = false;
};

struct unpriced_usage {
  std::string model;
  bool batch = false;
  std::int64_t tokens = 0;
  std::string reason;
};

struct period_pricing {
  std::vector<priced_line> lines;  // by model, class, batch, tier
  std::vector<unpriced_usage> unpriced;
  std::int64_t total_micros = 0;
};

period_pricing price_period(const period_usage& usage);

// Usage of an earlier period that arrived after its invoice was finalized: per model, token
// class and batch flag, the difference between what the period comes to now and what its
// invoice and the adjustments since have charged, so the late tokens are priced at their place
// in their own period (at the end of its accumulator).
struct late_adjustment {
  std::string period;
  std::string model;
  std::string token_class;
  bool batch = false;
  std::int64_t tokens = 0;
  std::int64_t amount_micros = 0;
};
// `now`: the earlier period priced again from today's ledger. `invoiced_lines_json`: its
// finalized invoice's lines. `earlier_adjustments_json`: the adjustments arrays of the other
// finalized invoices (those for other periods are skipped).
std::vector<late_adjustment> late_adjustments(
    const std::string& period, const period_pricing& now, const std::string& invoiced_lines_json,
    const std::vector<std::string>& earlier_adjustments_json);

// A billing period is a calendar month in UTC, named "YYYY-MM" (years 1970..9999): its
// [start, end) in unix seconds, or nullopt for anything else.
std::optional<std::pair<std::int64_t, std::int64_t>> period_bounds(std::string_view period);
// The name of the period holding `unix_s`.
std::string period_of(std::int64_t unix_s);

// The JSON arrays of a priced period, shared by the cost preview and invoices:
//   lines: [{model, token_class, batch, tier, tokens, amount_micros, amount_minor?, versions}]
//   adjustments: [{period, model, token_class, batch, tokens, amount_micros, amount_minor}]
//   unpriced: [{model, batch, tokens, reason}]
// `minor` (optional for lines) holds the minor-unit amounts, from index `first` on.
std::string priced_lines_json(const std::vector<priced_line>& lines,
                              const std::vector<std::int64_t>* minor = nullptr);
std::string adjustments_json(const std::vector<late_adjustment>& adjustments,
                             const std::vector<std::int64_t>& minor, std::size_t first);
std::string unpriced_json(const std::vector<unpriced_usage>& unpriced);

// How far into its period a preview is: `elapsed_s` of the period's `period_s` seconds.
struct period_progress {
  std::int64_t elapsed_s = 0;
  std::int64_t period_s = 0;
};

// The period's usage projected to its end at its run rate so far: per version in force, model
// and batch flag, each token class's total so far t becomes floor(t * period_s / elapsed_s)
// (128-bit, capped at INT64_MAX), the tokens still to come counted in the version in force now
// (the last one). Pricing the projection (price_period) then applies the tiers to the projected
// volume, so the forecast is what the period would cost, not the cost so far scaled. A period
// that is over (elapsed_s >= period_s) is its own forecast; elapsed_s <= 0 projects nothing.
period_usage forecast_usage(const period_usage& usage, period_progress progress);

// The cost preview as JSON: {"object":"cost_preview", tenant_id, period, currency,
// price_book_id, batch_discount_bp, lines, unpriced, total_micros, token_bundles,
// token_bundles_micros, forecast}. `progress`: the period is under way; forecast is then
// {method:"run_rate", elapsed_s, period_s, total_micros, lines}; null otherwise (a period that
// is over is final, one to come is empty). `bundles`: the period's token_bundle lines (what the
// tenant's token bundles paid, at their locked prices, for tokens the lines leave out).
std::string cost_preview_json(const period_usage& usage,
                              std::optional<period_progress> progress = std::nullopt,
                              const std::vector<fee_line>& bundles = {});

// The number of decimals of a currency's minor unit (ISO 4217): 0 for JPY, KRW, ..., 3 for
// BHD, KWD, ..., else 2.
int currency_minor_digits(std::string_view currency);

// Micro-unit amounts in the currency's minor unit: the total rounded half up, each amount
// floored, and the difference given one minor unit at a time to the amounts with the largest
// remainders (the earlier one on a tie), so that the amounts add up to the total exactly.
struct minor_amounts {
  std::vector<std::int64_t> amounts;
  std::int64_t total = 0;
};
minor_amounts to_minor_units(const std::vector<std::int64_t>& micros, int minor_digits);

}  // namespace tollgate::billing
