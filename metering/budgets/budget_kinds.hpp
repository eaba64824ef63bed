// The kinds a budget is made of: what it counts (metric), whom it covers (scope) and over which
// window, as enums with the names the database, the admin API and the JSON answers use. Every
// comparison on these lives here and in metering/budgets/policy, not on strings.
#pragma once
#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace tollgate::metering {

// tokens: prompt + completion as billed; requests; spend: micro-units; credit: the prepaid
// credit of a credit_only plan, mirrored as a lifetime tenant budget.
enum class budget_metric { tokens, requests, spend, credit };
// end_user, tag and session: the attribution dimensions (metering/budgets/subjects.hpp).
enum class budget_scope { tenant, project, key, end_user, tag, session };
// minute slides; hour, day and month are calendar windows; lifetime never turns.
enum class budget_window { minute, hour, day, month, lifetime };

// Each enum's names, in the order of its values.
inline constexpr std::array<std::string_view, 4> budget_metric_names = {"tokens", "requests",
                                                                        "spend", "credit"};
inline constexpr std::array<std::string_view, 6> budget_scope_names = {
    "tenant", "project", "key", "end_user", "tag", "session"};
inline constexpr std::array<std::string_view, 5> budget_window_names = {"minute", "hour", "day",
                                                                        "month", "lifetime"};

constexpr std::string_view name_of(budget_metric m) {
  return budget_metric_names[static_cast<std::size_t>(m)];
}
constexpr std::string_view name_of(budget_scope s) {
  return budget_scope_names[static_cast<std::size_t>(s)];
}
constexpr std::string_view name_of(budget_window w) {
  return budget_window_names[static_cast<std::size_t>(w)];
}

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
constexpr std::optional<budget_window> parse_budget_window(std::string_view text) {
  return parse_named<budget_window>(budget_window_names, text);
}

static_assert(name_of(budget_metric::credit) == "credit" &&
              name_of(budget_scope::session) == "session" &&
              name_of(budget_window::lifetime) == "lifetime",
              "the name tables follow the enums' order");

}  // namespace tollgate::metering
