// The rating formula (invariant 4 of ARCHITECTURE.md), pure integer arithmetic: a price
// schedule (tiers on cumulative volume, graduated or volume, optional flat fee per tier), its
// cumulative price function F, and the charge of an event of q units at accumulator position c:
// floor(F(c + q)) - floor(F(c)) micro-units, so that the charges of a period sum to exactly
// floor(F(total)) whatever the batching and order. No floating point anywhere.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::billing {

// A price per 1,000,000 units (tokens) in micro-units, as an exact decimal with up to six
// fractional digits: the rational rate_e6 / 10^6. "2.5" (2.5 micro-units per 1M tokens) is
// 2'500'000; "150000" (0.15 currency units per 1M tokens) is 150'000'000'000.
using rate_e6 = std::int64_t;

// Parses "150000", "0.333333", "12.5" (digits, optional '.', at most six fractional digits)
// into rate_e6. nullopt for anything else or past max_rate_e6.
std::optional<rate_e6> parse_rate(std::string_view text);
// The decimal text of a rate, without trailing zeros ("12.5", "150000").
std::string format_rate(rate_e6 rate);

// Bounds that keep every intermediate inside 128 bits (checked by validate()).
constexpr rate_e6 max_rate_e6 = 1'000'000'000'000'000;     // 10^9 micro-units per 1M units
constexpr std::int64_t max_units = 1'000'000'000'000'000;  // 10^15 units in one period
constexpr std::int64_t max_flat_fee_micros = 1'000'000'000'000'000;
constexpr int max_tiers = 32;
constexpr int max_discount_bp = 10'000;  // basis points: 10,000 = 100 % off

enum class tier_mode { graduated, volume };

// One tier, after Stripe's convention: `up_to` is inclusive (units 1..up_to of the period fall
// in the first tier, up_to+1.. in the next), and the last tier has none (unbounded).
struct price_tier {
  std::optional<std::int64_t> up_to;
  rate_e6 rate = 0;                  // per 1M units
  std::int64_t flat_fee_micros = 0;  // charged once when the period's volume enters the tier
  bool operator==(const price_tier&) const = default;
};

struct price_schedule {
  tier_mode mode = tier_mode::graduated;
  std::vector<price_tier> tiers;  // at least one; up_to strictly increasing; last unbounded
  bool operator==(const price_schedule&) const = default;
};

// "" if the schedule is well formed and inside the bounds above, else what is wrong.
std::string validate(const price_schedule& s);

// floor(F(units)) in micro-units. Graduated: each tier's units at its rate plus the flat fee
// of every tier entered. Volume: all units at the rate of the tier `units` falls in, plus that
// tier's flat fee. F(0) = 0. `discount_bp` (basis points off) scales the whole function,
// F x (10,000 - discount_bp) / 10,000, before the floor: a discounted stream telescopes too.
std::int64_t price_micros(const price_schedule& s, std::int64_t units, int discount_bp = 0);

// The charge of an event of `quantity` units when the period's accumulator stands at
// `position`: floor(F(position + quantity)) - floor(F(position)). For volume tiers F can fall
// (a higher tier is cheaper for every unit), so the provisional charge is never below zero and
// the invoice trues the period up to floor(F(total)) (true_up_micros).
std::int64_t charge_micros(const price_schedule& s, std::int64_t position, std::int64_t quantity,
                           int discount_bp = 0);

// Per-request fees as a cumulative function too: floor(requests x fee x (10,000 - discount_bp)
// / 10,000) micro-units for the period's first `requests` requests (128-bit intermediates,
// saturating at INT64_MAX). The fee of the n-th request is
// fees_micros(n) - fees_micros(n - 1), so per-request charges telescope with a discount too.
std::int64_t fees_micros(std::int64_t fee_micros, std::int64_t requests, int discount_bp = 0);

// What the invoice adds to the provisional charges of a period to reach floor(F(total)):
// 0 for graduated tiers (they telescope exactly), <= 0 for volume tiers.
std::int64_t true_up_micros(const price_schedule& s, std::int64_t total,
                            std::int64_t provisional_sum, int discount_bp = 0);

}  // namespace tollgate::billing
