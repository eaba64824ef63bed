// Credit drawdown: see credits.hpp.
#include "billing/credits.hpp"

#include <algorithm>
#include <limits>

namespace tollgate::billing {

bool is_credit_grant_id(std::string_view id) {
  if (id.size() < 4 || id.size() > 67 || id.substr(0, 3) != "cg_") return false;
  return std::all_of(id.begin() + 3, id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::vector<credit_draw> draw_credit(std::vector<credit_grant_balance>& grants,
                                     const std::string& model, std::int64_t at_s,
                                     std::int64_t cost_micros) {
  std::vector<credit_draw> draws;
  for (std::size_t i = 0; i < grants.size() && cost_micros > 0; ++i) {
    auto& g = grants[i];
    if (g.balance_micros <= 0 || at_s < g.effective_at_s) continue;
    if (g.expires_at_s && at_s >= *g.expires_at_s) continue;
    if (g.models && std::find(g.models->begin(), g.models->end(), model) == g.models->end()) {
      continue;
    }
    const std::int64_t amount = std::min(g.balance_micros, cost_micros);
    g.balance_micros -= amount;
    cost_micros -= amount;
    draws.push_back({i, amount});
  }
  return draws;
}

namespace {

rate_e6 highest_rate(const price_schedule& s) {
  rate_e6 r = 0;
  for (const auto& t : s.tiers) r = std::max(r, t.rate);
  return r;
}

std::int64_t flat_fees(const price_schedule& s) {
  std::int64_t f = 0;
  for (const auto& t : s.tiers) f += t.flat_fee_micros;
  return f;
}

}  // namespace

credit_rate worst_case_rate(const model_prices& p) {
  credit_rate r;
  r.model = p.model;
  r.input = std::max(highest_rate(p.input), highest_rate(p.cached_input));
  r.output = highest_rate(p.output);
  r.flat_fees_micros = flat_fees(p.input) + flat_fees(p.cached_input) + flat_fees(p.output);
  return r;
}

}  // namespace tollgate::billing
