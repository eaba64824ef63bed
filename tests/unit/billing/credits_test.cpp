// Unit tests of credit drawdown: grants pay in the order given (drawdown order), only while in
// force at the event's time and for the models in their scope, never below zero, and never
// more than the cost; grant ids a caller may choose.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "billing/credits.hpp"

using namespace tollgate::billing;

namespace {

credit_grant_balance grant(std::string id, std::int64_t balance, std::int64_t effective = 0,
                           std::optional<std::int64_t> expires = std::nullopt,
                           std::optional<std::vector<std::string>> models = std::nullopt) {
  return {std::move(id), balance, effective, expires, std::move(models)};
}

}  // namespace

TEST_CASE("credit is drawn from the grants in the order given until the cost is paid") {
  std::vector<credit_grant_balance> grants{grant("a", 30), grant("b", 50), grant("c", 100)};
  auto draws = draw_credit(grants, "m", 10, 60);
  REQUIRE(draws.size() == 2);
  CHECK(draws[0].grant == 0);
  CHECK(draws[0].amount_micros == 30);
  CHECK(draws[1].grant == 1);
  CHECK(draws[1].amount_micros == 30);
  CHECK(grants[0].balance_micros == 0);
  CHECK(grants[1].balance_micros == 20);
  CHECK(grants[2].balance_micros == 100);
  // More than is left: all of it, no more.
  draws = draw_credit(grants, "m", 10, 1000);
  std::int64_t paid = 0;
  for (const auto& d : draws) paid += d.amount_micros;
  CHECK(paid == 120);
  CHECK(draw_credit(grants, "m", 10, 5).empty());
}

TEST_CASE("a grant pays only while in force and only for the models in its scope") {
  std::vector<credit_grant_balance> grants{
      grant("later", 10, 100), grant("expiring", 10, 0, 50),
      grant("scoped", 10, 0, std::nullopt, std::vector<std::string>{"x", "y"})};
  CHECK(draw_credit(grants, "m", 49, 100).size() == 1);  // "expiring" only
  CHECK(grants[1].balance_micros == 0);
  CHECK(draw_credit(grants, "m", 50, 100).empty());       // expired at 50, "later" not yet, scoped
  const auto draws = draw_credit(grants, "y", 100, 100);  // "later" in force; "y" in scope
  REQUIRE(draws.size() == 2);
  CHECK(draws[0].grant == 0);
  CHECK(draws[1].grant == 2);
}

TEST_CASE("random drawdowns never overdraw a grant nor pay more than the cost") {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 500; ++round) {
    std::vector<credit_grant_balance> grants;
    std::int64_t granted = 0;
    for (int i = 0; i < 5; ++i) {
      const std::int64_t b = std::uniform_int_distribution<std::int64_t>(0, 1000)(rng);
      grants.push_back(grant("g" + std::to_string(i), b,
                             std::uniform_int_distribution<std::int64_t>(0, 50)(rng)));
      granted += b;
    }
    std::int64_t paid = 0;
    for (int e = 0; e < 20; ++e) {
      const std::int64_t cost = std::uniform_int_distribution<std::int64_t>(0, 400)(rng);
      const std::int64_t at = 25 + e;
      // What the grants in force can pay: each event pays min(cost, available), no less.
      std::int64_t available = 0;
      for (const auto& g : grants) {
        if (g.effective_at_s <= at) available += g.balance_micros;
      }
      std::int64_t this_event = 0;
      for (const auto& d : draw_credit(grants, "m", at, cost)) {
        CHECK(d.amount_micros > 0);
        this_event += d.amount_micros;
      }
      CHECK(this_event == std::min(cost, available));
      paid += this_event;
    }
    std::int64_t left = 0;
    for (const auto& g : grants) {
      CHECK(g.balance_micros >= 0);
      left += g.balance_micros;
    }
    CHECK(paid + left == granted);
  }
}

TEST_CASE("grant ids a caller may choose") {
  CHECK(is_credit_grant_id("cg_Q4-top_up"));
  CHECK(is_credit_grant_id("cg_" + std::string(64, 'a')));
  CHECK_FALSE(is_credit_grant_id("cg_" + std::string(65, 'a')));
  CHECK_FALSE(is_credit_grant_id("cg_"));
  CHECK_FALSE(is_credit_grant_id("pb_x"));
  CHECK_FALSE(is_credit_grant_id("cg_a b"));
  CHECK_FALSE(is_credit_grant_id("cg_a:b"));
}
