// Token bundles, the pure part: see token_bundles.hpp.
#include "billing/token_bundles.hpp"

#include <algorithm>

#include "billing/pricing.hpp"

namespace tollgate::billing {

std::int64_t bundle_value_micros(std::int64_t tokens, std::int64_t price_per_million_micros) {
  const __int128 v = static_cast<__int128>(tokens) * price_per_million_micros / 1'000'000;
  return static_cast<std::int64_t>(v);
}

bool token_bundle::serves(std::string_view project_id) const {
  return project_ids.empty() ||
         std::binary_search(project_ids.begin(), project_ids.end(), project_id);
}

std::vector<bundle_draw> draw_bundles(std::vector<token_bundle>& bundles, std::string_view model,
                                      int token_class, std::string_view project_id,
                                      std::int64_t at_s, std::int64_t tokens, bool banded,
                                      std::int64_t* pooled_left) {
  std::vector<bundle_draw> draws;
  for (std::size_t i = 0; i < bundles.size() && tokens > 0; ++i) {
    auto& b = bundles[i];
    if (b.tokens_left <= 0 || at_s < b.effective_at_s) continue;
    if (b.expires_at_s && at_s >= *b.expires_at_s) continue;
    if (b.model != model || b.token_class != token_class || !b.serves(project_id)) continue;
    if (b.rollover && banded) continue;
    const bool limited = pooled_left != nullptr && b.pooled();
    const std::int64_t take = std::min({b.tokens_left, tokens, limited ? *pooled_left : tokens});
    if (take <= 0) continue;
    if (limited) *pooled_left -= take;
    const std::int64_t drawn_before = b.tokens - b.tokens_left;
    const std::int64_t amount =
        bundle_value_micros(drawn_before + take, b.price_per_million_micros) -
        bundle_value_micros(drawn_before, b.price_per_million_micros);
    b.tokens_left -= take;
    tokens -= take;
    draws.push_back({i, token_class, take, amount});
  }
  return draws;
}

std::vector<bundle_draw> cover_with_bundles(const rating_plan& plan, rating_event& e,
                                            const accumulator_map& accumulators,
                                            std::vector<token_bundle>& bundles,
                                            const std::optional<pooled_cover>& cover) {
  std::vector<bundle_draw> out;
  if (e.batch || bundles.empty()) return out;
  const auto target = rating_target_of(plan, e);
  if (!target) return out;  // not rated: nothing to pay for
  // An allowance covers base-price tokens only (rate_event): a context band's are all paid.
  const bool allowed = target->band_above == 0;
  std::size_t next_key = 0;
  for (int c = 0; c < token_class_count; ++c) {
    std::int64_t* tokens = e.tokens_field(c);
    if (*tokens <= 0) continue;
    const auto it = accumulators.find(target->keys[next_key++]);
    const accumulator_state* acc = it == accumulators.end() ? nullptr : &it->second;
    const std::int64_t position = acc != nullptr ? acc->position : 0;
    const std::int64_t allowance = allowed ? allowance_in_period(plan, *target->prices, c, acc) : 0;
    const std::int64_t allowance_left = std::max<std::int64_t>(0, allowance - position);
    const std::int64_t to_pay = *tokens - std::min(*tokens, allowance_left);
    if (to_pay <= 0) continue;
    // Only the input and output classes have pools; the other classes' bundles are reserved
    // by no hold.
    const bool limited = cover && (c == tc_input || c == tc_output);
    std::int64_t pooled_left = !limited ? 0 : c == tc_input ? cover->input : cover->output;
    auto draws = draw_bundles(bundles, target->prices->model, c, e.project_id, e.occurred_at_s,
                              to_pay, !allowed, limited ? &pooled_left : nullptr);
    for (auto& d : draws) {
      *tokens -= d.tokens;
      out.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace tollgate::billing
