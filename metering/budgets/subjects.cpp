// Budgets on the attribution dimensions: see subjects.hpp.
#include "metering/budgets/subjects.hpp"

#include <openssl/sha.h>

#include "metering/budgets/budget_rows.hpp"

namespace tollgate::metering {

namespace {

// A tag scope's key and value: "team" -> (team, nullopt); "team=search" -> (team, search).
std::pair<std::string_view, std::optional<std::string_view>> split_tag(std::string_view id) {
  const std::size_t eq = id.find('=');
  if (eq == std::string_view::npos) return {id, std::nullopt};
  return {id.substr(0, eq), id.substr(eq + 1)};
}

std::optional<std::string_view> tag_value(const attribution& a, std::string_view key) {
  for (const auto& t : a.tags) {
    if (t.key == key) return std::string_view(t.value);
  }
  return std::nullopt;
}

// The request's value for a budget that names one (or any, when `wanted` is empty).
std::optional<std::string_view> matching(std::string_view have, std::string_view wanted) {
  if (have.empty()) return std::nullopt;
  if (!wanted.empty() && have != wanted) return std::nullopt;
  return have;
}

}  // namespace

bool counts_each(budget_scope scope, std::string_view scope_id) {
  switch (scope) {
    case budget_scope::end_user:
    case budget_scope::session:
      return scope_id.empty();
    case budget_scope::tag:
      return scope_id.find('=') == std::string_view::npos;
    default:
      return false;
  }
}

std::optional<std::string_view> subject_of(const budget_info& b, const attribution& a) {
  switch (b.scope) {
    case budget_scope::end_user:
      return matching(a.end_user, b.scope_id);
    case budget_scope::session:
      return matching(a.session, b.scope_id);
    case budget_scope::tag: {
      const auto [key, wanted] = split_tag(b.scope_id);
      const auto value = tag_value(a, key);
      if (!value || (wanted && *value != *wanted)) return std::nullopt;
      return value;
    }
    default:
      return std::nullopt;
  }
}

std::string subject_counter_id(std::string_view budget_id, std::string_view value) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(value.data()), value.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  id.reserve(budget_id.size() + 33);
  id.append(budget_id).push_back('.');
  for (int i = 0; i < 16; ++i) {
    id.push_back(hex[digest[i] >> 4]);
    id.push_back(hex[digest[i] & 15]);
  }
  return id;
}

std::optional<std::string> check_scope_id(budget_scope scope, std::optional<std::string_view> id) {
  switch (scope) {
    case budget_scope::tenant:
      if (id) return std::string("scope_id is not given for scope tenant.");
      return std::nullopt;
    case budget_scope::project:
    case budget_scope::key:
      if (!id) return "scope_id names the " + std::string(name_of(scope)) + " of scope " +
                      std::string(name_of(scope)) + ".";
      return std::nullopt;
    case budget_scope::end_user:
    case budget_scope::session: {
      if (!id) return std::nullopt;
      const auto bad = scope == budget_scope::end_user ? check_end_user(*id) : check_session(*id);
      if (bad) return "scope_id " + *bad + ".";
      return std::nullopt;
    }
    case budget_scope::tag: {
      if (!id) return std::string("scope_id names the tag key (each value) or key=value.");
      const auto [key, value] = split_tag(*id);
      if (auto bad = check_tag(key, value.value_or(""))) return "scope_id " + *bad + ".";
      return std::nullopt;
    }
  }
  return std::string("unknown scope");
}

}  // namespace tollgate::metering
