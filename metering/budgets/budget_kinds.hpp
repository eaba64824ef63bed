// The kinds a budget is made of: what it counts (metric), whom it covers (scope) and over which
// window, with the names the database, the admin API and the JSON answers use. Every
// comparison on these lives here and in metering/budgets/policy, not on strings.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::metering {

// tokens: prompt + completion as billed; requests; spend: micro-units; credit: the prepaid
// credit of a credit_only plan, mirrored as a lifetime tenant budget.
enum class budget_metric { tokens, requests, spend, credit };
// end_user, tag and session: the attribution dimensions (metering/budgets/subjects.hpp).
enum class budget_scope { tenant, project, key, end_user, tag, session };
// minute and duration windows slide (they count the last minute, or the last `length_ms`);
// hour, day, week (ISO, from Monday), month and quarter are calendar windows; lifetime never
// turns. A duration has no name of its own: it is written as its length ("90s", "3h").
enum class budget_window { minute, hour, day, week, month, quarter, lifetime, duration };

// Each enum's names, in the order of its values (a duration is named by its length).
inline constexpr std::array<std::string_view, 4> budget_metric_names = {"tokens", "requests",
                                                                        "spend", "credit"};
inline constexpr std::array<std::string_view, 6> budget_scope_names = {
    "tenant", "project", "key", "end_user", "tag", "session"};
inline constexpr std::array<std::string_view, 7> budget_window_names = {
    "minute", "hour", "day", "week", "month", "quarter", "lifetime"};

// The bounds of a duration window's length: one minute to 31 days.
inline constexpr std::int64_t window_length_min_ms = 60'000;
inline constexpr std::int64_t window_length_max_ms = 31ll * 86'400'000;

// A budget's window: its kind and, for sliding windows, its length.
struct window_spec {
  budget_window kind = budget_window::day;
  std::int64_t length_ms = 0;  // sliding windows (minute, duration): the length; else 0

  constexpr window_spec() = default;
  // A named window (not a duration: see duration_of).
  constexpr window_spec(budget_window k)  // NOLINT: a named window converts implicitly
      : kind(k), length_ms(k == budget_window::minute ? 60'000 : 0) {}
  // A duration window of `ms` (within the bounds above; parse_budget_window checks them).
  static constexpr window_spec duration_of(std::int64_t ms) {
    window_spec w;
    w.kind = budget_window::duration;
    w.length_ms = ms;
    return w;
  }
  constexpr bool sliding() const { return length_ms > 0; }
  constexpr bool operator==(const window_spec&) const = default;
};

constexpr std::string_view name_of(budget_metric m) {
  return budget_metric_names[static_cast<std::size_t>(m)];
}
constexpr std::string_view name_of(budget_scope s) {
  return budget_scope_names[static_cast<std::size_t>(s)];
}
// A window's name: "minute", "week", … or a duration in its largest whole unit ("90s", "2m",
// "3h", "2d").
std::string name_of(const window_spec& w);

// The value whose name is `text` (exactly as name_of writes it); nullopt for anything else.
template <class Enum, std::size_t N>
constexpr std::optional<Enum> parse_named(const std::array<std::string_view, N>& names,
                                          std::string_view text) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == text) return static_cast<Enum>(i);
  }
  return std::nullopt;
}
constexpr std::optional<budget_metric> parse_budget_metric(std::string_view text) {
  return parse_named<budget_metric>(budget_metric_names, text);
}
constexpr std::optional<budget_scope> parse_budget_scope(std::string_view text) {
  return parse_named<budget_scope>(budget_scope_names, text);
}
// A named window, or a duration: 1 to 9 digits (no leading zero) and a unit s, m, h or d,
// between window_length_min_ms and window_length_max_ms. nullopt for anything else.
std::optional<window_spec> parse_budget_window(std::string_view text);

static_assert(name_of(budget_metric::credit) == "credit" &&
                  name_of(budget_scope::session) == "session" &&
                  budget_window_names[static_cast<std::size_t>(budget_window::lifetime)] ==
                      "lifetime",
              "the name tables follow the enums' order");

}  // namespace tollgate::metering
