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

// The prices of one model (or "*"): per 1M tokens, tiered on the period's volume of that class.
struct model_prices {
  std::string model;
  price_schedule input;
  price_schedule cached_input;  // the input schedule when the book does not give one
  price_schedule output;
};

constexpr std::size_t price_book_models_max = 1000;

// Parses the `models` object of a price book version:
//   {"<model>": {"input": [TIER...], "cached_input": [TIER...]?, "output": [TIER...]}}
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
