// Per-event rating (invariant 4 of ARCHITECTURE.md): the ledger writer prices each usage event
// as it stores it, against the tenant's price book version in force at the event's time, on
// the period's accumulators (one per model, or "*" for a book with tier_scope all_models, per
// token class and batch flag): an event of q tokens at accumulator position c costs
// floor(F(c + q)) - floor(F(c)). The accumulators live in PostgreSQL (rating_accumulators);
// this file is the pure part: reading the rating fields back from a ledger row and pricing an
// event on accumulators held in memory. The same split and schedules as billing/period_pricing,
// so that for graduated tiers the events of a period add up to its invoice.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "billing/plan_terms.hpp"
#include "billing/price_book.hpp"
#include "metering/usage.hpp"

namespace tollgate::billing {

// An event's token counts as reported: the parts of the prompt (cached, cache writes, image,
// audio) and of the completion (audio) that are priced as classes of their own.
struct token_counts {
  std::int64_t prompt = 0;
  std::int64_t cached = 0;
  std::int64_t cache_write = 0;
  std::int64_t image_prompt = 0;
  std::int64_t audio_prompt = 0;
  std::int64_t completion = 0;
  std::int64_t audio_completion = 0;
};

// What rating needs of one usage_events row.
struct rating_event {
  std::string tenant_id;
  std::string request_id;
  // Empty: none. It chooses the token bundles that pay (the ledger writer's rating; the cost
  // quote, which draws no bundles, leaves it empty).
  std::string project_id;
  std::int64_t occurred_at_s = 0;
  std::string model;
  bool batch = false;
  std::int64_t input = 0;  // prompt tokens in none of the classes below
  std::int64_t cached_input = 0;
  std::int64_t output = 0;  // completion tokens that are not audio
  std::int64_t cache_write = 0;
  std::int64_t image_input = 0;
  std::int64_t audio_input = 0;
  std::int64_t audio_output = 0;
  std::int64_t prompt_tokens = 0;  // the whole prompt: it chooses the context band
  bool answered = false;           // a 2xx answer: it pays the request fee

  // The one split into token classes, as the period totals make it (billing/plan_store):
  // each part of the prompt is taken from what the parts before it left, in the order cached,
  // cache_write, image, audio (never more than the prompt); the rest is `input`. Audio
  // completion tokens are part of the completion tokens likewise.
  void set_tokens(const token_counts& counts);
  void set_tokens(std::int64_t prompt_tokens, std::int64_t cached_tokens,
                  std::int64_t completion_tokens);
  // The tokens of a class (billing/price_book's token_class order); the field that holds
  // them (nullptr for a number that is not a class).
  std::int64_t tokens_of(int token_class) const;
  std::int64_t* tokens_field(int token_class);
  // A request's usage record as rating sees it (for quoting its cost before the ledger has it).
  static rating_event from(const metering::usage_record& rec);
};

// Reads those fields from one line of the ledger's COPY text (ledger_writer's column order,
// without the trailing newline). nullopt for a line that does not have that shape.
std::optional<rating_event> parse_rating_event(std::string_view copy_line);

// A tenant's plan as rating sees it: the first period it prices, the book's settings and its
// versions in effective order.
struct rating_plan {
  std::string from_period;  // "YYYY-MM"
  std::string book_id;
  tier_mode mode = tier_mode::graduated;
  tier_scope scope = tier_scope::model;
  int batch_discount_bp = 0;
  // Fees, allowances and commitment (billing/plan_terms). Rating uses the allowances: the first
  // A tokens of an interactive accumulator with an allowance of A cost nothing and do not
  // advance the tiers, so an event at position c costs floor(F(max(0, c + q - A))) -
  // floor(F(max(0, c - A))), which still telescopes to floor(F(total - A)).
  plan_terms terms;
  struct version {
    int number = 0;
    std::int64_t effective_at_s = 0;
    std::shared_ptr<const std::vector<model_prices>> prices;  // versions are immutable: shared
  };
  std::vector<version> versions;
};

// A tenant's plans in from_period order. One plan prices each whole period: the latest one
// from at or before it, or the first for periods before them all (sql/012_plan_periods.sql).
using plan_history = std::vector<rating_plan>;
// The plan that prices `period` ("YYYY-MM"); null for an empty history.
const rating_plan* plan_for_period(const plan_history& plans, std::string_view period);

// An accumulator: tenant, period ("2026-11"), model (or "*"), token class in its context band
// (banded_class: "input", "cache_write", "output>128000", "requests", ...), batch flag.
using accumulator_key = std::tuple<std::string, std::string, std::string, std::string, bool>;
struct accumulator_state {
  std::int64_t position = 0;        // tokens rated so far this period
  std::int64_t charged_micros = 0;  // what they were charged, provisional for volume tiers
  // Token banking (billing/allowance_rollover.hpp): the allowance's unused tokens moved to
  // later periods, frozen when the period was settled; none while it is not.
  std::optional<std::int64_t> rolled_over;
  bool operator==(const accumulator_state&) const = default;
};
using accumulator_map = std::map<accumulator_key, accumulator_state>;

// The allowance of class `token_class` (billing/price_book's order) that covers the period's
// interactive base-price tokens on accumulator `acc` (null: a new one): the plan's, less what
// rolled over to later periods.
std::int64_t allowance_in_period(const rating_plan& plan, const model_prices& prices,
                                 int token_class, const accumulator_state* acc);

// The price-book version and the accumulators that would rate `e`: nullopt when the event is
// not rated (no version in force at its time, or the model is not in the book).
struct rating_target {
  int version = 0;
  const model_prices* prices = nullptr;
  const class_prices* band = nullptr;  // the prices of the event's context band
  std::int64_t band_above = 0;         // its threshold (0: the base prices)
  // One per token class with tokens, in class order, then "requests" if a fee is due, then
  // the plan's money allowance if it has one.
  std::vector<accumulator_key> keys;
  int fee_key = -1;       // the index of "requests" in keys (-1: no fee due)
  int included_key = -1;  // the index of the money allowance's accumulator (-1: none)
};
std::optional<rating_target> rating_target_of(const rating_plan& plan, const rating_event& e);

struct rated_event {
  std::int64_t cost_micros = 0;  // the request fee included, the money allowance taken off
  int version = 0;
  std::int64_t request_fee_micros = 0;
  std::int64_t band_above = 0;  // the context band that rated it (0: the base prices)
  std::int64_t included_micros = 0;  // what the plan's money allowance covered of it
};
// The money allowance's accumulator stops counting here (far beyond any period's charges).
constexpr std::int64_t max_money_position = std::numeric_limits<std::int64_t>::max() / 4;
// Rates `e` on `accumulators` (missing ones start at zero) and advances them. nullopt: not
// rated (see rating_target_of); nothing changes.
std::optional<rated_event> rate_event(const rating_plan& plan, const rating_event& e,
                                      accumulator_map& accumulators);

}  // namespace tollgate::billing
