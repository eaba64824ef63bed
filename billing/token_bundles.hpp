// Token bundles, the pure part (docs/CREDITS.md, "Token bundles"): a prepaid grant of tokens of
// one model and token class at a locked price. Before the ledger writer rates an event it takes
// the event's tokens that the plan's allowance does not cover from the tenant's bundles in
// drawdown order; the rest is rated at the price book (billing/rating) as usual, so the tiers
// advance only with the tokens charged. The tokens drawn are paid by the bundle at its locked
// price: the first d tokens of a bundle of price P per 1M tokens are worth floor(d x P / 10^6)
// micro-units, so what a bundle pays telescopes to its amount.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "billing/price_book.hpp"
#include "billing/rating.hpp"

namespace tollgate::billing {

constexpr std::int64_t bundle_tokens_max = 1'000'000'000'000'000;  // pricing's max_units
constexpr std::int64_t bundle_price_per_million_micros_max = 1'000'000'000'000;  // 10^6 units
constexpr std::size_t bundle_projects_max = 100;  // projects one bundle is shared with

// The usage_events columns of the tokens bundles paid for, in token class order
// (billing/price_book.hpp), for COPY lists.
inline constexpr const char* bundle_token_columns =
    "bundle_input_tokens, bundle_cached_tokens, bundle_cache_write_tokens, bundle_image_tokens,"
    " bundle_audio_prompt_tokens, bundle_output_tokens, bundle_audio_completion_tokens";

// A bundle with tokens left, as drawing sees it.
struct token_bundle {
  std::string grant_id;
  std::string model;
  int token_class = tc_input;  // billing/price_book.hpp's order
  std::int64_t tokens = 0;       // bought
  std::int64_t tokens_left = 0;  // not drawn yet
  std::int64_t price_per_million_micros = 0;
  std::int64_t effective_at_s = 0;
  std::optional<std::int64_t> expires_at_s;  // none: never expires
  // The projects it is shared with (sorted); empty: every project of its tenant, and usage
  // without a project.
  std::vector<std::string> project_ids;
  int priority = 0;  // drawdown order: ascending priority first
  // A rollover grant (billing/allowance_rollover.hpp): it pays only for tokens an allowance
  // could have covered, those at the base prices (not a context band's).
  bool rollover = false;
  bool serves(std::string_view project_id) const;
};

// floor(tokens x price_per_million / 10^6), in 128 bits: what the first `tokens` of a bundle
// are worth (and, for all of them, the bundle's amount).
std::int64_t bundle_value_micros(std::int64_t tokens, std::int64_t price_per_million_micros);

struct bundle_draw {
  std::size_t bundle = 0;  // index into the bundles given
  int token_class = tc_input;
  std::int64_t tokens = 0;
  std::int64_t amount_micros = 0;  // what the bundle pays for them (may be 0)
};

// Draws up to `tokens` of `model` and `token_class` for an event of `project_id` at `at_s`
// from `bundles`, in drawdown order (each in force at `at_s` for that model and class and
// shared with that project gives what it has; rollover grants only when not `banded`). Lowers
// tokens_left; returns the draws.
std::vector<bundle_draw> draw_bundles(std::vector<token_bundle>& bundles, std::string_view model,
                                      int token_class, std::string_view project_id,
                                      std::int64_t at_s, std::int64_t tokens, bool banded);

// Takes from `bundles` the tokens of `e` that the plan's allowance leaves to pay, class by
// class (interactive usage only: batch usage is not drawn; the context band stays the one of
// the whole prompt), lowering the event's token counts
// by what the bundles give. `accumulators`: the period's positions before the event (the
// allowance left of a class is max(0, A - position)). Returns the draws; rate_event then rates
// what is left of `e`.
std::vector<bundle_draw> cover_with_bundles(const rating_plan& plan, rating_event& e,
                                            const accumulator_map& accumulators,
                                            std::vector<token_bundle>& bundles);

}  // namespace tollgate::billing
