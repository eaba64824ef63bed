// libFuzzer target: any line read back from a (damaged) spool segment is either refused by
// parse_rating_event or read into an event that rates without a crash: tokens counted once,
// the accumulators moved by exactly the event's tokens, charges never negative.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "billing/rating.hpp"
#include "core/json_dom.hpp"

using namespace tollgate;
using namespace tollgate::billing;

namespace {

const rating_plan& plan() {
  static const rating_plan p = [] {
    const std::string prices =
        R"({"*":{"input":[{"up_to":100,"rate":"3333333.333333","flat_fee":5},{"rate":"0.5"}],)"
        R"("output":[{"rate":"999999999.999999"}]}})";
    auto doc = json::document::parse(prices);
    auto parsed = parse_model_prices(doc->root(), tier_mode::graduated, tier_scope::all_models);
    if (!parsed) std::abort();
    rating_plan r;
    r.scope = tier_scope::all_models;
    r.batch_discount_bp = 3333;
    r.versions = {{1, 0, std::make_shared<const std::vector<model_prices>>(std::move(*parsed))}};
    return r;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  const auto e = parse_rating_event(line);
  if (!e) return 0;
  __int128 prompt = 0;  // the prompt classes' tokens, each never negative
  for (int c = 0; c < token_class_count; ++c) {
    if (e->tokens_of(c) < 0) std::abort();
    if (c != tc_output && c != tc_audio_output) prompt += e->tokens_of(c);
  }
  // The classes split the prompt, nothing more or less.
  if (prompt != e->prompt_tokens || e->tenant_id.empty()) std::abort();
  const __int128 tokens = prompt + e->output + e->audio_output;
  accumulator_map acc;
  const auto rated = rate_event(plan(), *e, acc);
  if (e->occurred_at_s < 0) return 0;  // before the version (effective at 0): not rated
  if (!rated || rated->cost_micros < 0) std::abort();
  __int128 moved = 0;
  std::int64_t charged = 0;
  for (const auto& [key, state] : acc) {
    moved += state.position;
    charged += state.charged_micros;
  }
  if (charged != rated->cost_micros || (tokens <= max_units && moved != tokens)) std::abort();
  return 0;
}
