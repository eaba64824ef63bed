// Budgets on the attribution dimensions (docs/ATTRIBUTION.md, docs/BUDGETS.md): whom a budget of
// scope end_user, tag or session counts, and under which counter.
//   end_user, no scope_id:  every end user its own counter ("each customer 5 USD a day");
//   end_user, scope_id U:   only end user U;
//   tag, scope_id K:        every value of tag K its own counter;
//   tag, scope_id K=V:      only requests tagged K=V;
//   session, no scope_id:   every session its own counter; with one: only that session.
// A request without the end user, tag or session a budget needs is not counted by it. A budget
// with one counter per value ("each") names its counters <budget id>.<digest of the value>, so
// values of any length and characters make short, safe Redis keys and journal entries.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "metering/attribution.hpp"
#include "metering/budgets/budget_kinds.hpp"

namespace tollgate::metering {

struct budget_info;

// Whether the scope is one of the attribution dimensions.
constexpr bool attribution_scope(budget_scope s) {
  return s == budget_scope::end_user || s == budget_scope::tag || s == budget_scope::session;
}
// Whether a budget of this scope and scope_id keeps one counter per value.
bool counts_each(budget_scope scope, std::string_view scope_id);

// The value of the request that a budget of an attribution scope counts: the end user, the tag's
// value or the session; nullopt when the budget does not apply to the request (no such value,
// or not the one the budget names). Budgets of other scopes: nullopt.
std::optional<std::string_view> subject_of(const budget_info& b, const attribution& a);

// The counter id of `value` under a budget that counts each value: "<id>.<32 hex digits>", the
// first 128 bits of SHA-256 of the value.
std::string subject_counter_id(std::string_view budget_id, std::string_view value);

// Why `scope_id` does not suit `scope` (the text of a 400), or nullopt when it does. Tenant:
// none; project, key: an id; end_user, session: none or a value within the attribution limits;
// tag: a key, or key=value.
std::optional<std::string> check_scope_id(budget_scope scope, std::optional<std::string_view> id);

}  // namespace tollgate::metering
