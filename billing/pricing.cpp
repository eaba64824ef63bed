// The rating formula: see pricing.hpp. F is computed scaled by 10^12 (units x rate_e6 is
// micro-units x 10^12) and by 10,000 for the discount, in 128-bit integers, then floored once.
#include "billing/pricing.hpp"

#include <cassert>
#include <limits>

namespace tollgate::billing {

namespace {

constexpr __int128 rate_scale = 1'000'000'000'000;  // 10^6 (rate_e6) x 10^6 (per 1M units)
constexpr __int128 discount_scale = 10'000;

// F(units) x 10^12 x (10,000 - discount_bp): an exact integer.
__int128 scaled_price(const price_schedule& s, std::int64_t units, int discount_bp) {
  assert(units >= 0 && units <= max_units);
  __int128 f = 0;
  if (units > 0) {
    std::int64_t lower = 0;  // units below this tier
    for (const auto& t : s.tiers) {
      const bool last = !t.up_to;
      if (s.mode == tier_mode::graduated) {
        const std::int64_t upper = last ? units : std::min(units, *t.up_to);
        if (units > lower) {
          f += static_cast<__int128>(upper - lower) * t.rate +
               static_cast<__int128>(t.flat_fee_micros) * rate_scale;
        }
      } else if (last || units <= *t.up_to) {
        f = static_cast<__int128>(units) * t.rate +
            static_cast<__int128>(t.flat_fee_micros) * rate_scale;
        break;
      }
      if (last || units <= *t.up_to) break;
      lower = *t.up_to;
    }
  }
  return f * (discount_scale - discount_bp);
}

std::int64_t floor_micros(__int128 scaled) {
  return static_cast<std::int64_t>(scaled / (rate_scale * discount_scale));  // scaled >= 0
}

}  // namespace

std::optional<rate_e6> parse_rate(std::string_view text) {
  if (text.empty() || text.size() > 40) return std::nullopt;
  __int128 whole = 0;
  __int128 fraction = 0;
  int fraction_digits = 0;
  bool seen_point = false;
  bool seen_digit = false;  // before the point
  for (const char c : text) {
    if (c == '.') {
      if (seen_point) return std::nullopt;
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    if (!seen_point) seen_digit = true;
    if (seen_point) {
      if (++fraction_digits > 6) return std::nullopt;
      fraction = fraction * 10 + (c - '0');
    } else {
      whole = whole * 10 + (c - '0');
      if (whole > max_rate_e6) return std::nullopt;
    }
  }
  if (!seen_digit || (seen_point && fraction_digits == 0)) return std::nullopt;
  for (int i = fraction_digits; i < 6; ++i) fraction *= 10;
  const __int128 value = whole * 1'000'000 + fraction;
  if (value > max_rate_e6) return std::nullopt;
  return static_cast<rate_e6>(value);
}

std::string format_rate(rate_e6 rate) {
  std::string out = std::to_string(rate / 1'000'000);
  std::int64_t fraction = rate % 1'000'000;
  if (fraction == 0) return out;
  std::string digits = std::to_string(fraction);
  digits.insert(0, 6 - digits.size(), '0');
  while (digits.back() == '0') digits.pop_back();
  return out + "." + digits;
}

std::string validate(const price_schedule& s) {
  if (s.tiers.empty()) return "at least one tier is needed";
  if (s.tiers.size() > static_cast<std::size_t>(max_tiers)) {
    return "at most " + std::to_string(max_tiers) + " tiers";
  }
  std::int64_t previous = 0;
  for (std::size_t i = 0; i < s.tiers.size(); ++i) {
    const auto& t = s.tiers[i];
    const std::string which = "tier " + std::to_string(i + 1);
    const bool last = i + 1 == s.tiers.size();
    if (last && t.up_to) return which + ": the last tier has no up_to (it is unbounded)";
    if (!last && !t.up_to) return which + ": only the last tier may be unbounded";
    if (t.up_to && (*t.up_to <= previous || *t.up_to > max_units)) {
      return which + ": up_to must be greater than the tier before's and at most " +
             std::to_string(max_units);
    }
    if (t.rate < 0 || t.rate > max_rate_e6) return which + ": the rate is out of range";
    if (t.flat_fee_micros < 0 || t.flat_fee_micros > max_flat_fee_micros) {
      return which + ": the flat fee is out of range";
    }
    if (t.up_to) previous = *t.up_to;
  }
  return {};
}

std::int64_t price_micros(const price_schedule& s, std::int64_t units, int discount_bp) {
  assert(discount_bp >= 0 && discount_bp <= max_discount_bp);
  return floor_micros(scaled_price(s, units, discount_bp));
}

std::int64_t charge_micros(const price_schedule& s, std::int64_t position, std::int64_t quantity,
                           int discount_bp) {
  assert(position >= 0 && quantity >= 0 && position + quantity <= max_units);
  const std::int64_t charge =
      price_micros(s, position + quantity, discount_bp) - price_micros(s, position, discount_bp);
  return charge < 0 ? 0 : charge;  // only volume tiers can fall
}

std::int64_t fees_micros(std::int64_t fee_micros, std::int64_t requests, int discount_bp) {
  assert(discount_bp >= 0 && discount_bp <= max_discount_bp);
  assert(fee_micros >= 0 && requests >= 0 && requests <= max_units);
  const __int128 scaled = static_cast<__int128>(fee_micros) * requests *
                          (max_discount_bp - discount_bp) / max_discount_bp;
  // 10^9 x 10^15 can pass 64 bits: saturate (far beyond any real period).
  constexpr __int128 top = std::numeric_limits<std::int64_t>::max();
  return static_cast<std::int64_t>(scaled < top ? scaled : top);
}

std::int64_t true_up_micros(const price_schedule& s, std::int64_t total,
                            std::int64_t provisional_sum, int discount_bp) {
  return price_micros(s, total, discount_bp) - provisional_sum;
}

}  // namespace tollgate::billing
