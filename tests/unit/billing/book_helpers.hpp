// Helpers the billing unit tests share: a price book's model prices from their JSON, as rating
// keeps a version's (shared and immutable).
#pragma once
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "billing/price_book.hpp"
#include "core/json_dom.hpp"

namespace tollgate::billing::test {

inline std::shared_ptr<const std::vector<model_prices>> prices_of(
    const std::string& json, tier_scope scope = tier_scope::model,
    tier_mode mode = tier_mode::graduated) {
  const auto doc = json::document::parse(json);
  REQUIRE(doc);
  auto parsed = parse_model_prices(doc->root(), mode, scope);
  if (!parsed) FAIL(parsed.error());
  return std::make_shared<const std::vector<model_prices>>(std::move(*parsed));
}

}  // namespace tollgate::billing::test
