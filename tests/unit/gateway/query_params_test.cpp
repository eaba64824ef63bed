// Query strings: decoding, repeats, lists, bad escapes.
#include <catch2/catch.hpp>

#include "gateway/query_params.hpp"

using tollgate::gateway::query_params;

TEST_CASE("query strings are split and percent-decoded") {
  const auto q = query_params::parse("/v1/usage?start_time=10&group_by=model,project_id&x=a%20b+c&x=2");
  REQUIRE(q);
  CHECK(q->get("start_time") == "10");
  CHECK(q->get("x") == "2");  // the last one wins
  CHECK(q->list("group_by") == std::vector<std::string>{"model", "project_id"});
  CHECK_FALSE(q->get("missing"));
  const auto arr = query_params::parse("/p?group_by[]=model&group_by[]=batch&empty=&&flag");
  REQUIRE(arr);
  CHECK(arr->list("group_by") == std::vector<std::string>{"model", "batch"});
  CHECK(arr->get("empty") == "");
  CHECK(arr->get("flag") == "");
  CHECK(query_params::parse("/no-query")->all().empty());
}

TEST_CASE("a bad percent-escape makes the query invalid") {
  CHECK_FALSE(query_params::parse("/p?a=%zz"));
  CHECK_FALSE(query_params::parse("/p?a=%4"));
  CHECK_FALSE(query_params::parse("/p?a=%"));
  CHECK(query_params::parse("/p?a=%41")->get("a") == "A");
}
