// Bundle coverage of credit_only holds: see cover.hpp.
#include "metering/budgets/cover.hpp"

#include <algorithm>

#include "metering/worst_case.hpp"

namespace tollgate::metering {

std::string cover_pool_id(std::string_view model, bool output) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string id = "cover:";
  for (const char c : model) {
    const auto b = static_cast<unsigned char>(c);
    id.push_back(hex[b >> 4]);
    id.push_back(hex[b & 15]);
  }
  return id + (output ? ":output" : ":input");
}

std::int64_t covered_tokens(std::int64_t asked, std::int64_t left) {
  return std::max<std::int64_t>(0, std::min(asked, left));
}

std::int64_t uncovered_cost_micros(const credit_rate& rate, std::int64_t input_tokens,
                                   std::int64_t output_tokens, std::int64_t cover_in,
                                   std::int64_t cover_out) {
  if (input_tokens <= 0 && output_tokens <= 0) return 0;
  credit_rate tokens_only = rate;
  tokens_only.flat_fees_micros = 0;
  const std::int64_t in =
      std::max<std::int64_t>(0, input_tokens - std::max<std::int64_t>(cover_in, 0));
  const std::int64_t out =
      std::max<std::int64_t>(0, output_tokens - std::max<std::int64_t>(cover_out, 0));
  const std::int64_t tokens =
      std::min(worst_case_cost_micros(tokens_only, in, out), reservation_amount_max);
  const std::int64_t fees =
      std::min(std::max<std::int64_t>(rate.flat_fees_micros, 0), reservation_amount_max);
  return std::min(tokens + fees, reservation_amount_max);  // both below 2^53: no overflow
}

std::string_view pool_model(const budget_info& credit, std::string_view model) {
  return credit.cover_all_models ? std::string_view("*") : model;
}

model_pools pools_for(const budget_info& credit, std::string_view request_model) {
  const std::string_view model = pool_model(credit, request_model);
  model_pools found;
  for (const auto& p : credit.cover_pools) {
    // A pool the ledger has drawn to nothing covers nothing: no extra work for it.
    if (p.model != model || p.limit - p.used <= 0) continue;
    (p.output ? found.output : found.input) = &p;
  }
  return found;
}

std::array<std::int64_t, 4> rate_digits(std::int64_t rate_e6) {
  std::array<std::int64_t, 4> digits{};
  std::int64_t rest = std::max<std::int64_t>(rate_e6, 0);  // below 2^63 < 10^24
  for (auto& d : digits) {
    d = rest % 1'000'000;
    rest /= 1'000'000;
  }
  return digits;
}

std::optional<cover_ask> cover_ask_for(std::span<const budget_info* const> applying,
                                       std::string_view model, std::int64_t prompt_tokens,
                                       std::int64_t completion_tokens, const credit_rate& rate) {
  for (std::size_t i = 0; i < applying.size(); ++i) {
    if (applying[i]->metric != budget_metric::credit) continue;
    const model_pools pools = pools_for(*applying[i], model);
    if (!pools.any()) return std::nullopt;
    cover_ask ask;
    ask.charge = i;
    ask.asked = {std::max<std::int64_t>(prompt_tokens, 0),
                 std::max<std::int64_t>(completion_tokens, 0)};
    ask.rate = rate;
    const cover_pool* by_class[2] = {pools.input, pools.output};
    for (int c = 0; c < 2; ++c) {
      ask.pool_ids[c] = cover_pool_id(pool_model(*applying[i], model), c == 1);
      if (by_class[c] == nullptr) continue;
      ask.limits[c] = by_class[c]->limit;
      ask.seeds[c] = std::max<std::int64_t>(by_class[c]->used, 0);
    }
    return ask;
  }
  return std::nullopt;
}

cover_settlement settle_cover(const cover_hold& hold, std::int64_t prompt_tokens,
                              std::int64_t completion_tokens) {
  cover_settlement s;
  s.pool_tokens = {covered_tokens(prompt_tokens - hold.other_classes[0], hold.covered[0]),
                   covered_tokens(completion_tokens - hold.other_classes[1], hold.covered[1])};
  s.credit_micros = uncovered_cost_micros(hold.rate, prompt_tokens, completion_tokens,
                                          s.pool_tokens[0], s.pool_tokens[1]);
  return s;
}

void describe_cover(cover_hold& hold, usage_record& rec) {
  const auto part = [](std::int64_t n) { return std::max<std::int64_t>(n, 0); };
  const std::int64_t prompt_others =
      saturating_add(saturating_add(part(rec.cached_tokens), part(rec.cache_write_tokens)),
                     saturating_add(part(rec.image_prompt_tokens), part(rec.audio_prompt_tokens)));
  hold.other_classes = {std::min(part(rec.prompt_tokens), prompt_others),
                        std::min(part(rec.completion_tokens), part(rec.audio_completion_tokens))};
  if (rec.credit_counters.empty()) return;
  const cover_settlement s = settle_cover(hold, rec.prompt_tokens, rec.completion_tokens);
  rec.settled_credit_micros = s.credit_micros;
  rec.cover_tokens[0] = s.pool_tokens[0];
  rec.cover_tokens[1] = s.pool_tokens[1];
}

std::string cover_pool_key(const std::string& tenant_id, std::string_view model, bool output) {
  return budget_engine::counter_key(tenant_id, cover_pool_id(model, output), 0);
}

}  // namespace tollgate::metering
