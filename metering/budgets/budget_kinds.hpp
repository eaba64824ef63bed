// The kinds a budget is made of: what it counts (metric), whom it covers (scope) and over which
// window, as enums with the names the database, the admin API and the JSON answers use. Every
// comparison on these lives here and in metering/budgets/policy, not on strings.
#pragma once
#include <optional>
#include <string_view>

namespace tollgate::metering {

// tokens: prompt + completion as billed; requests; spend: micro-units; credit: the prepaid
// credit of a credit_only plan, mirrored as a lifetime tenant budget.
enum class budget_metric { tokens, requests, spend, credit };
enum class budget_scope { tenant, project, key };
// minute slides; hour, day and month are calendar windows; lifetime never turns.
enum class budget_window { minute, hour, day, month, lifetime };

constexpr std::string_view name_of(budget_metric m) {
  switch (m) {
    case budget_metric::tokens:
      return "tokens";
    case budget_metric::requests:
      return "requests";
    case budget_metric::spend:
      return "spend";
    case budget_metric::credit:
      return "credit";
  }
  return "";
}

constexpr std::string_view name_of(budget_scope s) {
  switch (s) {
    case budget_scope::tenant:
      return "tenant";
    case budget_scope::project:
      return "project";
    case budget_scope::key:
      return "key";
  }
  return "";
}

constexpr std::string_view name_of(budget_window w) {
  switch (w) {
    case budget_window::minute:
      return "minute";
    case budget_window::hour:
      return "hour";
    case budget_window::day:
      return "day";
    case budget_window::month:
      return "month";
    case budget_window::lifetime:
      return "lifetime";
  }
  return "";
}

// The enum a name stands for (exactly as name_of writes it); nullopt for anything else.
constexpr std::optional<budget_metric> parse_budget_metric(std::string_view text) {
  for (auto m : {budget_metric::tokens, budget_metric::requests, budget_metric::spend,
                 budget_metric::credit}) {
    if (text == name_of(m)) return m;
  }
  return std::nullopt;
}

constexpr std::optional<budget_scope> parse_budget_scope(std::string_view text) {
  for (auto s : {budget_scope::tenant, budget_scope::project, budget_scope::key}) {
    if (text == name_of(s)) return s;
  }
  return std::nullopt;
}

constexpr std::optional<budget_window> parse_budget_window(std::string_view text) {
  for (auto w : {budget_window::minute, budget_window::hour, budget_window::day,
                 budget_window::month, budget_window::lifetime}) {
    if (text == name_of(w)) return w;
  }
  return std::nullopt;
}

}  // namespace tollgate::metering
