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
  // Over the base prices and every context band: the highest rate of any prompt class for the
  // prompt, of any completion class for the completion, and every flat and request fee.
  // (A class that takes another's tiers by default adds its fees only when it has its own.)
  const auto add = [&r](const class_prices& c) {
    for (int k = 0; k < token_class_count; ++k) {
      const bool completion = k == tc_output || k == tc_audio_output;
      rate_e6& rate = completion ? r.output : r.input;
      rate = std::max(rate, highest_rate(c.schedule(k)));
      const bool own = k == tc_input || k == tc_cached_input || k == tc_output ||
                       c.schedule(k) != c.schedule(completion ? tc_output : tc_input);
      if (own) r.flat_fees_micros += flat_fees(c.schedule(k));
    }
    r.flat_fees_micros += c.request_fee_micros;
  };
  add(p);
  for (const auto& b : p.bands) add(b.prices);
  return r;
}

}  // namespace tollgate::billing
