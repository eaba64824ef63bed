// The Authorization header parser shared by API key and admin/finance token checks.
#include <catch2/catch.hpp>

#include "core/bearer_token.hpp"

using tollgate::http::bearer_token;

TEST_CASE("the bearer scheme is matched without regard to case") {
  CHECK(bearer_token("Bearer tg-abc") == std::optional<std::string_view>("tg-abc"));
  CHECK(bearer_token("bearer tg-abc") == std::optional<std::string_view>("tg-abc"));
  CHECK(bearer_token("BEARER tg-abc") == std::optional<std::string_view>("tg-abc"));
  CHECK(bearer_token("bEaReR x") == std::optional<std::string_view>("x"));
}

TEST_CASE("spaces around the token are dropped; an empty token is no token") {
  CHECK(bearer_token("Bearer    tok  ") == std::optional<std::string_view>("tok"));
  CHECK_FALSE(bearer_token("Bearer "));
  CHECK_FALSE(bearer_token("Bearer     "));
  CHECK_FALSE(bearer_token("Bearer"));
  CHECK_FALSE(bearer_token(""));
}

TEST_CASE("other schemes and near misses are refused") {
  CHECK_FALSE(bearer_token("Basic dXNlcjpwYXNz"));
  CHECK_FALSE(bearer_token("Bearertg-abc"));
  CHECK_FALSE(bearer_token("Bearer\ttg-abc"));
  CHECK_FALSE(bearer_token("Bearers tg-abc"));
  CHECK_FALSE(bearer_token(" Bearer tg-abc"));
  CHECK_FALSE(bearer_token("Bear tg-abc"));
}
