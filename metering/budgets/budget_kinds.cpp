// The names of budget windows: see budget_kinds.hpp.
#include "metering/budgets/budget_kinds.hpp"

namespace tollgate::metering {

namespace {
struct unit {
  char letter;
  std::int64_t ms;
};
// Largest first: a duration is named in the largest unit that divides it.
constexpr std::array<unit, 4> duration_units = {
    {{'d', 86'400'000}, {'h', 3'600'000}, {'m', 60'000}, {'s', 1'000}}};
}  // namespace

std::string name_of(const window_spec& w) {
  if (w.kind != budget_window::duration) {
    return std::string(budget_window_names[static_cast<std::size_t>(w.kind)]);
  }
  for (const unit& u : duration_units) {
    if (w.length_ms % u.ms == 0) return std::to_string(w.length_ms / u.ms) + u.letter;
  }
  return std::to_string(w.length_ms) + "ms";  // not made by parse_budget_window
}

std::optional<window_spec> parse_budget_window(std::string_view text) {
  if (auto named = parse_named<budget_window>(budget_window_names, text)) {
    return window_spec(*named);
  }
  // At most 9 digits: 999,999,999 days still fits in 64-bit milliseconds.
  if (text.size() < 2 || text.size() > 10 || text[0] < '1' || text[0] > '9') return std::nullopt;
  std::int64_t count = 0;
  for (const char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    count = count * 10 + (c - '0');
  }
  for (const unit& u : duration_units) {
    if (text.back() != u.letter) continue;
    const std::int64_t ms = count * u.ms;
    if (ms < window_length_min_ms || ms > window_length_max_ms) return std::nullopt;
    return window_spec::duration_of(ms);
  }
  return std::nullopt;
}

}  // namespace tollgate::metering
