// Budgets on end users, tags and sessions: which requests they count, under which counter, and
// what their scope_id may be.
#include <catch2/catch.hpp>

#include "metering/budgets/policy.hpp"
#include "metering/budgets/subjects.hpp"

using namespace tollgate::metering;

namespace {
budget_info budget(budget_scope scope, std::string scope_id) {
  budget_info b;
  b.id = "bud_1";
  b.scope = scope;
  b.scope_id = std::move(scope_id);
  return b;
}
attribution request(std::string user, tag_set tags, std::string session) {
  return attribution{std::move(user), std::move(tags), std::move(session)};
}
}  // namespace

TEST_CASE("budget subjects: which request a budget on an attribution dimension counts") {
  const auto a = request("alice", {{"env", "prod"}, {"team", "search"}}, "task-9");
  const auto anon = request("", {}, "");
  const auto each_user = budget(budget_scope::end_user, "");
  CHECK(subject_of(each_user, a) == "alice");
  CHECK_FALSE(subject_of(each_user, anon));
  CHECK(subject_of(budget(budget_scope::end_user, "alice"), a) == "alice");
  CHECK_FALSE(subject_of(budget(budget_scope::end_user, "bob"), a));
  CHECK(subject_of(budget(budget_scope::tag, "team"), a) == "search");
  CHECK(subject_of(budget(budget_scope::tag, "team=search"), a) == "search");
  CHECK_FALSE(subject_of(budget(budget_scope::tag, "team=ads"), a));
  CHECK_FALSE(subject_of(budget(budget_scope::tag, "feature"), a));
  // An empty tag value is a value.
  CHECK(subject_of(budget(budget_scope::tag, "flag="), request("", {{"flag", ""}}, "")) == "");
  CHECK(subject_of(budget(budget_scope::session, ""), a) == "task-9");
  CHECK_FALSE(subject_of(budget(budget_scope::session, "task-1"), a));
  CHECK_FALSE(subject_of(budget(budget_scope::tenant, ""), a));

  CHECK(budget_applies(each_user, "p", "k", a));
  CHECK_FALSE(budget_applies(each_user, "p", "k", anon));
  CHECK(budget_applies(budget(budget_scope::tenant, ""), "p", "k", anon));
}

TEST_CASE("budget subjects: each value has its own counter id; one-value budgets keep theirs") {
  CHECK(counts_each(budget_scope::end_user, ""));
  CHECK_FALSE(counts_each(budget_scope::end_user, "alice"));
  CHECK(counts_each(budget_scope::tag, "team"));
  CHECK_FALSE(counts_each(budget_scope::tag, "team=search"));
  CHECK(counts_each(budget_scope::session, ""));
  CHECK_FALSE(counts_each(budget_scope::tenant, ""));

  const auto each_user = budget(budget_scope::end_user, "");
  const std::string alice = counter_id_for(each_user, request("alice", {}, ""));
  const std::string bob = counter_id_for(each_user, request("bob", {}, ""));
  CHECK(alice != bob);
  // SHA-256("alice") begins 2bd806c97f0e00af1a1fc3328fa763a9.
  CHECK(alice == "bud_1.2bd806c97f0e00af1a1fc3328fa763a9");
  // Values that would break a Redis key or a journal record make plain ids.
  const std::string odd = counter_id_for(each_user, request("a,b\t{c}:d", {}, ""));
  CHECK(odd.find_first_of(",\t{}:") == std::string::npos);
  CHECK(counter_id_for(budget(budget_scope::end_user, "alice"), request("alice", {}, "")) ==
        "bud_1");
}

TEST_CASE("budget subjects: scope_id per scope") {
  CHECK_FALSE(check_scope_id(budget_scope::tenant, std::nullopt));
  CHECK(check_scope_id(budget_scope::tenant, "x"));
  CHECK(check_scope_id(budget_scope::project, std::nullopt));
  CHECK_FALSE(check_scope_id(budget_scope::key, "key_1"));
  CHECK_FALSE(check_scope_id(budget_scope::end_user, std::nullopt));
  CHECK_FALSE(check_scope_id(budget_scope::end_user, "alice"));
  CHECK(check_scope_id(budget_scope::end_user, std::string(257, 'x')));
  CHECK(check_scope_id(budget_scope::tag, std::nullopt));
  CHECK(check_scope_id(budget_scope::tag, "=x"));
  CHECK_FALSE(check_scope_id(budget_scope::tag, "team"));
  CHECK_FALSE(check_scope_id(budget_scope::tag, "team=search"));
  CHECK_FALSE(check_scope_id(budget_scope::session, std::nullopt));
  CHECK(check_scope_id(budget_scope::session, std::string(129, 's')));
}
