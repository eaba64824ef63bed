// OpenAI error shape: exactly {"error":{"message","type","param","code"}} with nulls.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

using namespace tollgate;
using json = nlohmann::json;

TEST_CASE("api errors serialize in the OpenAI shape") {
  const auto j =
      json::parse(invalid_request("Bad \"x\"\n", "messages[0].role", "invalid_value").to_json());
  REQUIRE(j.size() == 1);
  const auto& e = j.at("error");
  CHECK(e.size() == 4);
  CHECK(e["message"] == "Bad \"x\"\n");
  CHECK(e["type"] == "invalid_request_error");
  CHECK(e["param"] == "messages[0].role");
  CHECK(e["code"] == "invalid_value");
}

TEST_CASE("empty param and code serialize as null") {
  const auto j = json::parse(not_found_error("Invalid URL (GET /x)").to_json());
  CHECK(j["error"]["param"].is_null());
  CHECK(j["error"]["code"].is_null());
}

TEST_CASE("status codes of the common errors") {
  CHECK(invalid_request("x").status == 400);
  CHECK(not_found_error("x").status == 404);
  CHECK(method_not_allowed("x").status == 405);
  CHECK(request_too_large(1024).status == 413);
  CHECK(request_too_large(1024).message.find("1024") != std::string::npos);
  CHECK(upstream_unavailable("x").status == 502);
  CHECK(upstream_timeout("x").status == 504);
  CHECK(internal_error("x").status == 500);
}

TEST_CASE("result holds a value or an error") {
  result<int> ok = 5;
  result<int> bad = invalid_request("nope");
  CHECK(ok.ok());
  CHECK(*ok == 5);
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().message == "nope");
}
