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
  // Counted in a credit_only tenant's coverage pools (docs/CREDITS.md): a bundle (not a
  // rollover grant) shared with every project.
  bool pooled() const { return project_ids.empty() && !rollover; }
};

// What a credit_only hold's settlement counted on the coverage pools (the journal record's
// cover): pooled bundles pay at most these input and output tokens of the event. The pools
// reserved exactly these for it, so a draw beyond them could take tokens another request in
// flight has reserved, and leave that one to pay money it never held (docs/CREDITS.md).
struct pooled_cover {
  std::int64_t input = 0;
  std::int64_t output = 0;
};

// An event's pooled cover, from what its settlement recorded (metering/usage.hpp, the journal
// record's version 7): none unless it was held on a credit_only mirror (`mirrored`: it names
// credit counters); then the pool tokens settled, or nothing if its hold asked for no cover
// (`settled_credit_micros` < 0).
inline std::optional<pooled_cover> pooled_cover_of(bool mirrored,
                                                   std::int64_t settled_credit_micros,
                                                   const std::int64_t (&cover_tokens)[2]) {
  if (!mirrored) return std::nullopt;
  if (settled_credit_micros < 0) return pooled_cover{};
  return pooled_cover{cover_tokens[0], cover_tokens[1]};
}

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
// shared with that project gives what it has; rollover grants only when not `banded`; pooled
// bundles at most `pooled_left` tokens in all, when given, which is lowered by their draws).
// Lowers tokens_left; returns the draws.
std::vector<bundle_draw> draw_bundles(std::vector<token_bundle>& bundles, std::string_view model,
                                      int token_class, std::string_view project_id,
                                      std::int64_t at_s, std::int64_t tokens, bool banded,
                                      std::int64_t* pooled_left = nullptr);

// Takes from `bundles` the tokens of `e` that the plan's allowance leaves to pay, class by
// class (interactive usage only: batch usage is not drawn; the context band stays the one of
// the whole prompt), lowering the event's token counts
// by what the bundles give. `accumulators`: the period's positions before the event (the
// allowance left of a class is max(0, A - position)). `cover`: the event's pooled cover, when
// its hold counted one (pooled bundles then pay at most that of its input and output tokens).
// Returns the draws; rate_event then rates what is left of `e`.
std::vector<bundle_draw> cover_with_bundles(const rating_plan& plan, rating_event& e,
                                            const accumulator_map& accumulators,
                                            std::vector<token_bundle>& bundles,
                                            const std::optional<pooled_cover>& cover = {});

}  // namespace tollgate::billing
