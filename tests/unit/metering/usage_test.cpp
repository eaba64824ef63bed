// Usage records: reading OpenAI usage objects and the JSON line written for each request.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core/json_dom.hpp"
#include "metering/usage.hpp"

using namespace tollgate;
using namespace tollgate::metering;

namespace {
bool set_from(usage_record& r, const char* text) {
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  return r.set_usage(doc->root());
}
}  // namespace

TEST_CASE("usage objects fill the token fields") {
  usage_record r;
  CHECK(set_from(r, R"({"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,
      "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}})"));
  CHECK(r.usage_reported);
  CHECK(r.prompt_tokens == 12);
  CHECK(r.completion_tokens == 5);
  CHECK(r.cached_tokens == 4);
  CHECK(r.reasoning_tokens == 2);
}

TEST_CASE("non-objects and nonsense counts are ignored") {
  usage_record r;
  CHECK_FALSE(set_from(r, "null"));
  CHECK_FALSE(r.usage_reported);
  CHECK(set_from(r, R"({"prompt_tokens":-3,"completion_tokens":"7"})"));
  CHECK(r.prompt_tokens == 0);
  CHECK(r.completion_tokens == 0);
}

TEST_CASE("a record serializes every field") {
  usage_record r;
  r.request_id = "req_1";
  r.model = "m";
  r.status = 200;
  r.stream = true;
  r.ttft_us = 1500;
  const auto j = nlohmann::json::parse(r.to_json());
  CHECK(j["request_id"] == "req_1");
  CHECK(j["status"] == 200);
  CHECK(j["stream"] == true);
  CHECK(j["ttft_us"] == 1500);
  CHECK(j["error_code"].is_null());
  CHECK(j.contains("client_disconnected"));
  CHECK(j.contains("cached_tokens"));
}

TEST_CASE("usage is found in whole responses wherever it sits") {
  const char* bodies[] = {
      R"({"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}})",
      R"({"usage":{"prompt_tokens":3,"completion_tokens":4},"system_fingerprint":"fp"} )",
      R"({"choices":[{"message":{"content":"\"usage\":{\"prompt_tokens\":9}}"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}})",
      R"({"meta":{"usage":{"prompt_tokens":9}},"usage":{"prompt_tokens":3,"completion_tokens":4},"x":1})",
  };
  for (const char* body : bodies) {
    usage_record r;
    INFO(body);
    CHECK(r.set_usage_from_response(body));
    CHECK(r.prompt_tokens == 3);
    CHECK(r.completion_tokens == 4);
  }
  usage_record none;
  CHECK_FALSE(none.set_usage_from_response(R"({"meta":{"usage":{"prompt_tokens":9}}})"));
  CHECK_FALSE(none.set_usage_from_response(R"({"text":"usage"})"));
  CHECK_FALSE(none.set_usage_from_response("not json"));
  CHECK_FALSE(none.usage_reported);
}
