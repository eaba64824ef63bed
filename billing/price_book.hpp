// Price book contents: per model (or "*" for a book whose tiers span all models), a price
// schedule for each token class, parsed from the admin API's JSON and written back in one
// canonical JSON form (rates as exact decimal strings) for storage. Pure; no database.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "billing/pricing.hpp"
#include "core/error.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing {

enum class tier_scope { model, all_models };

// The token classes a book prices, in one fixed order (the index of each in class_prices).
// Prompt tokens split into input, cached_input (served from the upstream's cache),
// cache_write (written to it), image_input and audio_input; completion tokens into output and
// audio_output. `requests` is not a token class: it counts an event's per-request fee.
enum token_class : int {
  tc_input,
  tc_cached_input,
  tc_cache_write,
  tc_image_input,
  tc_audio_input,
  tc_output,
  tc_audio_output,
  token_class_count
};
inline constexpr const char* token_class_names[token_class_count] = {
    "input", "cached_input", "cache_write", "image_input", "audio_input", "output", "audio_output"};
// The index of a token class by its name; -1 for a name that is not one.
inline int token_class_index(std::string_view name) {
  for (int c = 0; c < token_class_count; ++c) {
    if (name == token_class_names[c]) return c;
  }
  return -1;
}
// The accumulator and line name of the per-request fees.
inline constexpr std::string_view requests_class = "requests";
// The accumulator (model "*") and line name of a plan's money allowance (billing/plan_terms):
// the accumulator's position is the period's usage charges before the allowance.
inline constexpr std::string_view included_usage_class = "included_usage";

// A per-request fee is at most this (micro-units): 10^9, a thousand currency units.
constexpr std::int64_t max_request_fee_micros = 1'000'000'000;
// A model has at most this many context bands beyond its base prices.
constexpr std::size_t context_bands_max = 8;

// One set of prices: per 1M tokens of each class, tiered on the period's volume of that
// class, and a fee per request.
struct class_prices {
  price_schedule input;
  price_schedule cached_input;  // the input schedule when the book does not give one
  price_schedule output;
  price_schedule cache_write;   // default: input
  price_schedule image_input;   // default: input
  price_schedule audio_input;   // default: input
  price_schedule audio_output;  // default: output
  std::int64_t request_fee_micros = 0;

  const price_schedule& schedule(int token_class) const;
  bool operator==(const class_prices&) const = default;
};

// The prices of requests whose prompt has more than `above_tokens` tokens (Gemini's
// long-context rates): such a request is rated entirely with them, on accumulators of its own.
struct context_band {
  std::int64_t above_tokens = 0;
  class_prices prices;
  bool operator==(const context_band&) const = default;
};

// The prices of one model (or "*"): base prices and optional context bands.
struct model_prices : class_prices {
  std::string model;
  std::vector<context_band> bands;  // above_tokens strictly increasing

  // The prices of a request with `prompt_tokens` prompt tokens: the band with the highest
  // threshold below it, else the base prices; `band_above` is that threshold (0: base).
  const class_prices& band_for(std::int64_t prompt_tokens, std::int64_t& band_above) const;
};

// The accumulator (and invoice line) name of a class in a band: "input" in the base prices,
// "input>128000" for prompts above 128000 tokens. Each band's classes telescope on their own.
std::string banded_class(std::string_view token_class, std::int64_t band_above);

constexpr std::size_t price_book_models_max = 1000;

// Parses the `models` object of a price book version:
//   {"<model>": {"input": [TIER...], "cached_input": [TIER...]?, "output": [TIER...],
//                "cache_write"|"image_input"|"audio_input"|"audio_output": [TIER...]?,
//                "request_fee": <micro-units per request>?,
//                "context_bands": [{"above": <prompt tokens>, <the classes above>}...]?}}
//   TIER = {"up_to": <tokens, inclusive; absent or null on the last tier>,
//           "rate": "<micro-units per 1M tokens, up to 6 decimals>" (or an integer),
//           "flat_fee": <micro-units>?}
// With tier_scope all_models the only key is "*". Models come back sorted by name. On error,
// a message naming the model, class and tier.
basic_result<std::vector<model_prices>, std::string> parse_model_prices(json::value models,
                                                                        tier_mode mode,
                                                                        tier_scope scope);

// The canonical JSON of parsed prices (the shape parse_model_prices reads).
std::string model_prices_json(const std::vector<model_prices>& prices);

std::string_view to_string(tier_mode m);
std::string_view to_string(tier_scope s);
// The stored names back ("volume", "all_models"; anything else is the default).
tier_mode tier_mode_of(std::string_view name);
tier_scope tier_scope_of(std::string_view name);

// A stored version's prices (their canonical JSON text) for a book of the stored `mode` and
// `scope`; an error for text that does not parse.
basic_result<std::vector<model_prices>, std::string> parse_stored_prices(
    std::string_view prices_json, std::string_view mode, std::string_view scope);

}  // namespace tollgate::billing
