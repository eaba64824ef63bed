// Token banking, the pure part: see allowance_rollover.hpp.
#include "billing/allowance_rollover.hpp"

#include <algorithm>
#include <tuple>

#include "billing/api_keys.hpp"
#include "billing/period_pricing.hpp"

namespace tollgate::billing {

std::optional<std::string> shift_period(std::string_view period, int months) {
  if (!period_bounds(period)) return std::nullopt;
  const int year = (period[0] - '0') * 1000 + (period[1] - '0') * 100 + (period[2] - '0') * 10 +
                   (period[3] - '0');
  const int month = (period[5] - '0') * 10 + (period[6] - '0');
  const int index = year * 12 + (month - 1) + months;  // months since year 0
  if (index < 1970 * 12 || index >= 10000 * 12) return std::nullopt;
  std::string out = std::to_string(index / 12) + '-';
  const int m = index % 12 + 1;
  out += static_cast<char>('0' + m / 10);
  out += static_cast<char>('0' + m % 10);
  return out;
}

std::vector<rollover_source> rollover_sources(const plan_history& plans, const std::string& tenant,
                                              std::string_view period) {
  std::vector<rollover_source> out;
  if (plans.empty()) return out;
  for (int back = 1; back <= rollover_periods_max; ++back) {
    const auto from = shift_period(period, -back);
    // No period before the tenant's first plan rolls anything over.
    if (!from || *from < plans.front().from_period) break;
    const rating_plan* plan = plan_for_period(plans, *from);
    if (plan == nullptr) continue;
    for (const auto& a : plan->terms.allowances) {
      const int c = token_class_index(a.token_class);
      if (a.rollover_periods < back || c < 0) continue;
      out.push_back(rollover_source{accumulator_key{tenant, *from, a.model, a.token_class, false},
                                    *from, a.model, c, a.tokens, a.rollover_periods});
    }
  }
  return out;
}

std::string rollover_grant_id(const std::string& tenant, const rollover_source& source) {
  std::string text = tenant;
  for (const std::string_view part :
       {std::string_view(source.from_period), std::string_view(source.model),
        std::string_view(token_class_names[source.token_class])}) {
    text.push_back('\0');
    text.append(part);
  }
  const std::string digest = sha256_bytes(text);
  static constexpr char hex[] = "0123456789abcdef";
  std::string id = "cg_rollover_";
  for (std::size_t i = 0; i < 16; ++i) {
    const auto byte = static_cast<unsigned char>(digest[i]);
    id += hex[byte >> 4];
    id += hex[byte & 15];
  }
  return id;
}

std::optional<token_bundle> settle_rollover(const std::string& tenant,
                                            const rollover_source& source, accumulator_state& acc) {
  if (acc.rolled_over) return std::nullopt;  // settled already
  const auto first = shift_period(source.from_period, 1);
  const auto after = shift_period(source.from_period, source.periods + 1);
  // A rollover that would reach past year 9999 rolls nothing over.
  const std::int64_t unused =
      first && after ? std::max<std::int64_t>(0, source.allowance - acc.position) : 0;
  acc.rolled_over = unused;
  if (unused == 0) return std::nullopt;
  token_bundle b;
  b.grant_id = rollover_grant_id(tenant, source);
  b.model = source.model;
  b.token_class = source.token_class;
  b.tokens = unused;
  b.tokens_left = unused;
  b.price_per_million_micros = 0;
  b.rollover = true;
  b.effective_at_s = period_bounds(*first)->first;
  b.expires_at_s = period_bounds(*after)->first;
  return b;
}

void insert_in_drawdown_order(std::vector<token_bundle>& bundles, token_bundle b) {
  const auto order = [](const token_bundle& x) {
    // Earliest expiry first, none last.
    return std::make_tuple(x.priority, !x.expires_at_s.has_value(), x.expires_at_s.value_or(0),
                           x.effective_at_s, std::string_view(x.grant_id));
  };
  const auto at = std::upper_bound(
      bundles.begin(), bundles.end(), b,
      [&](const token_bundle& x, const token_bundle& y) { return order(x) < order(y); });
  bundles.insert(at, std::move(b));
}

}  // namespace tollgate::billing
