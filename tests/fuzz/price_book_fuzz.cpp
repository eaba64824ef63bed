// libFuzzer target: price book JSON never crashes the parser; accepted prices written back in
// canonical form parse to the same text, and pricing any volume with them stays exact and
// monotone for graduated tiers. With bit 2 of the first byte set, the text is a plan's terms
// instead (billing/plan_terms: fees, allowances with their rollover, commitment): accepted
// terms written back parse to the same terms.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "billing/plan_terms.hpp"
#include "billing/price_book.hpp"

using namespace tollgate;
using namespace tollgate::billing;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto mode = (data[0] & 1) ? tier_mode::volume : tier_mode::graduated;
  const auto scope = (data[0] & 2) ? tier_scope::all_models : tier_scope::model;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto doc = json::document::parse(text);
  if (!doc) return 0;
  if (data[0] & 4) {
    const auto terms = parse_plan_terms(doc->root());
    if (!terms) return 0;
    const std::string canonical = plan_terms_json(*terms);
    auto again_doc = json::document::parse(canonical);
    if (!again_doc) std::abort();
    const auto again = parse_plan_terms(again_doc->root());
    if (!again || !(*again == *terms) || plan_terms_json(*again) != canonical) std::abort();
    return 0;
  }
  auto prices = parse_model_prices(doc->root(), mode, scope);
  if (!prices) return 0;
  const std::string canonical = model_prices_json(*prices);
  auto again_doc = json::document::parse(canonical);
  if (!again_doc) std::abort();
  auto again = parse_model_prices(again_doc->root(), mode, scope);
  if (!again || model_prices_json(*again) != canonical) std::abort();
  for (const auto& m : *prices) {
    for (const auto* s : {&m.input, &m.cached_input, &m.output}) {
      std::int64_t previous = 0;
      for (const std::int64_t units :
           {std::int64_t{0}, std::int64_t{1}, std::int64_t{999}, std::int64_t{1'000'000},
            std::int64_t{123'456'789}, max_units}) {
        const std::int64_t p = price_micros(*s, units);
        if (p < 0) std::abort();
        if (s->mode == tier_mode::graduated && p < previous) std::abort();
        previous = p;
      }
    }
  }
  return 0;
}
