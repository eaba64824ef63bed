// URL query strings: `a=1&b=x%20y` -> ordered (name, value) pairs, percent-decoded ('+' is a
// space). Malformed escapes make the whole query invalid.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::gateway {

class query_params {
 public:
  // The query part of a request target (everything after the first '?'), or nullopt if it
  // has a bad percent-escape.
  static std::optional<query_params> parse(std::string_view target);

  // Percent-decodes `s` ('+' is a space where `plus_is_space`); nullopt for a bad escape.
  static std::optional<std::string> decode(std::string_view s, bool plus_is_space = true);

  // The last value given for `name`.
  std::optional<std::string> get(std::string_view name) const;
  // Every value for `name` and `name[]`, commas splitting each (group_by=model,project_id).
  std::vector<std::string> list(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& all() const { return pairs_; }

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

}  // namespace tollgate::gateway
