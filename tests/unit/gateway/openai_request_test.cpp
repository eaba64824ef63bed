// Request validation: OpenAI-shaped 400s naming the parameter, and the upstream body rewrite.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "gateway/openai_request.hpp"

using namespace tollgate;
using namespace tollgate::gateway;
using njson = nlohmann::json;

namespace {

api_error chat_error(const std::string& body) {
  auto r = parse_completion_request(endpoint_kind::chat_completions, body);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_CASE("a valid chat request parses") {
  auto r = parse_completion_request(endpoint_kind::chat_completions,
                                    R"({"model":"m","messages":[{"role":"user","content":"hi"},
          {"role":"user","content":[{"type":"text","text":"x"}]}],
          "stream":true,"stream_options":{"include_usage":true},"max_tokens":5})");
  REQUIRE(r.ok());
  CHECK(r->model == "m");
  CHECK(r->stream);
  CHECK(r->client_wants_usage);
  CHECK(r->max_tokens == 5);
}

TEST_CASE("invalid chat requests name the parameter") {
  CHECK(chat_error("{not json").message.find("could not parse the JSON body") != std::string::npos);
  CHECK(chat_error("[1]").code == "invalid_type");
  CHECK(chat_error(R"({"messages":[]})").param == "model");
  CHECK(chat_error(R"({"model":5,"messages":[]})").code == "invalid_type");
  CHECK(chat_error(R"({"model":"m"})").param == "messages");
  CHECK(chat_error(R"({"model":"m"})").code == "missing_required_parameter");
  CHECK(chat_error(R"({"model":"m","messages":{}})").param == "messages");
  CHECK(chat_error(R"({"model":"m","messages":[]})").code == "empty_array");
  CHECK(chat_error(R"({"model":"m","messages":[1]})").param == "messages[0]");
  CHECK(chat_error(R"({"model":"m","messages":[{"content":"x"}]})").param == "messages[0].role");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"robot"}]})").code == "invalid_value");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":7}]})").param ==
        "messages[0].content");
  CHECK(
      chat_error(R"({"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]})").param ==
      "messages[0].content[0].type");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})").param ==
        "stream");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{}})").param ==
        "stream_options");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})").code ==
        "integer_below_min_value");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5})").code ==
        "invalid_type");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":0})").param == "n");
  const auto e = chat_error(R"({"model":"m"})");
  CHECK(e.status == 400);
  CHECK(e.type == "invalid_request_error");
}

TEST_CASE("lone surrogates and invalid UTF-8 are refused, not guessed") {
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"\ud800"}]})").status ==
        400);
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":"\udc00x"}]})").status ==
        400);
  CHECK(chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}")
            .status == 400);
  auto ok = parse_completion_request(
      endpoint_kind::chat_completions,
      R"({"model":"m","messages":[{"role":"user","content":"\ud83d\ude00"}]})");
  CHECK(ok.ok());
}

TEST_CASE("legacy completions accept the OpenAI prompt forms") {
  for (const char* body : {R"({"model":"m","prompt":"x"})", R"({"model":"m","prompt":["a","b"]})",
                           R"({"model":"m","prompt":[1,2,3]})",
                           R"({"model":"m","prompt":[[1],[2]]})", R"({"model":"m"})"}) {
    CHECK(parse_completion_request(endpoint_kind::completions, body).ok());
  }
  auto bad = parse_completion_request(endpoint_kind::completions, R"({"model":"m","prompt":{}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().param == "prompt");
}

TEST_CASE("the upstream body asks for usage on streams and renames the model") {
  const std::string plain = R"({"model":"m","messages":[{"role":"user","content":"x"}]})";
  auto r = parse_completion_request(endpoint_kind::chat_completions, plain);
  REQUIRE(r.ok());
  CHECK(upstream_body(*r, plain, "m") == plain);  // untouched bytes

  const std::string streaming =
      R"({"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]})";
  auto s = parse_completion_request(endpoint_kind::chat_completions, streaming);
  REQUIRE(s.ok());
  auto spliced = njson::parse(upstream_body(*s, streaming, "m"));
  CHECK(spliced["stream_options"]["include_usage"] == true);
  CHECK(spliced["messages"][0]["content"] == "x");

  const std::string opted_out =
      R"({"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]})";
  auto o = parse_completion_request(endpoint_kind::chat_completions, opted_out);
  REQUIRE(o.ok());
  CHECK_FALSE(o->client_wants_usage);
  auto rewritten = njson::parse(upstream_body(*o, opted_out, "upstream-m"));
  CHECK(rewritten["stream_options"]["include_usage"] == true);
  CHECK(rewritten["model"] == "upstream-m");
}

TEST_CASE("random bytes and mutated requests never crash the parser") {
  std::mt19937 rng(3);
  const std::string seed =
      R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"n":1})";
  for (int i = 0; i < 20000; ++i) {
    std::string body = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[at] = static_cast<char>(rng() & 0xFF);
          break;
        case 1:
          body.erase(at, 1 + rng() % 8);
          break;
        default: {
          const char inserted = "{}[]\",:0ae\\"[rng() % 11];
          body = body.substr(0, at) + inserted + body.substr(at);
          break;
        }
      }
      if (body.empty()) body = "{";
    }
    auto r = parse_completion_request(endpoint_kind::chat_completions, body);
    if (r.ok()) CHECK_NOTHROW(njson::parse(upstream_body(*r, body, "other")));
  }
}

TEST_CASE("hostile counts are 400s naming the parameter") {
  const auto chat = [](const std::string& extra) {
    return R"({"model":"m","messages":[{"role":"user","content":"x"}])" + extra + "}";
  };
  CHECK(chat_error(chat(R"(,"max_tokens":-1)")).code == "integer_below_min_value");
  CHECK(chat_error(chat(R"(,"max_tokens":1e300)")).code == "invalid_type");
  CHECK(chat_error(chat(R"(,"max_tokens":"100")")).code == "invalid_type");
  CHECK(chat_error(chat(R"(,"n":0)")).code == "integer_below_min_value");
  CHECK(chat_error(chat(R"(,"n":1000000000)")).code == "integer_above_max_value");
  CHECK(chat_error(chat(R"(,"n":17)")).param == "n");
  // 2^63 - 1 parses: the context check (api_handler) refuses it, not the parser.
  auto big = parse_completion_request(endpoint_kind::chat_completions,
                                      chat(R"(,"max_tokens":9223372036854775807,"n":16)"));
  REQUIRE(big.ok());
  CHECK(big->max_tokens == INT64_MAX);
  CHECK(big->n == 16);
  request_limits tight;
  tight.n_max = 2;
  CHECK_FALSE(parse_completion_request(endpoint_kind::chat_completions, chat(R"(,"n":3)"), tight));
}

TEST_CASE("best_of and prompt arrays are bounded") {
  const auto completion_error = [](const std::string& body) {
    auto r = parse_completion_request(endpoint_kind::completions, body);
    REQUIRE_FALSE(r.ok());
    return r.error();
  };
  auto r = parse_completion_request(endpoint_kind::completions,
                                    R"({"model":"m","prompt":["a","b"],"n":2,"best_of":3})");
  REQUIRE(r.ok());
  CHECK(r->n == 2);
  CHECK(r->best_of == 3);
  CHECK(completion_error(R"({"model":"m","prompt":"a","n":3,"best_of":2})").param == "best_of");
  CHECK(completion_error(R"({"model":"m","prompt":"a","best_of":0})").param == "best_of");
  std::string many = R"({"model":"m","prompt":[)";
  for (int i = 0; i < 100000; ++i) many += i ? ",\"a\"" : "\"a\"";
  many += "]}";
  CHECK(completion_error(many).code == "array_above_max_length");
  // One prompt of many token ids is one prompt, not many.
  std::string ids = R"({"model":"m","prompt":[)";
  for (int i = 0; i < 5000; ++i) ids += i ? ",1" : "1";
  ids += "]}";
  CHECK(parse_completion_request(endpoint_kind::completions, ids).ok());
  CHECK(completion_error(R"({"model":"m","prompt":[1,"a"]})").param == "prompt");
}

TEST_CASE("messages need content unless an assistant calls tools") {
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user"}]})").param == "messages[0].content");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"user","content":null}]})").param ==
        "messages[0].content");
  CHECK(chat_error(R"({"model":"m","messages":[{"role":"system"}]})").param == "messages[0].content");
  CHECK(parse_completion_request(
            endpoint_kind::chat_completions,
            R"({"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant",
               "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]})")
            .ok());
}

TEST_CASE("duplicate members are refused") {
  const auto e = chat_error(
      R"({"model":"cheap","model":"dear","messages":[{"role":"user","content":"x"}]})");
  CHECK(e.param == "model");
  CHECK(e.code == "duplicate_parameter");
}

TEST_CASE("stream_options is rewritten whatever the client sent") {
  for (const std::string options : {R"("stream_options":null,)", R"("stream_options":{},)",
                                    R"("stream_options":{"include_usage":false,"x":1},)", ""}) {
    const std::string body =
        R"({"model":"m","stream":true,)" + options + R"("messages":[{"role":"user","content":"x"}]})";
    auto r = parse_completion_request(endpoint_kind::chat_completions, body);
    REQUIRE(r.ok());
    CHECK_FALSE(r->client_wants_usage);
    const auto sent = njson::parse(upstream_body(*r, body, "m"));
    CHECK(sent["stream_options"]["include_usage"] == true);
    // nlohmann keeps the last of duplicate keys: there must be exactly one member.
    CHECK(upstream_body(*r, body, "m").find("stream_options") ==
          upstream_body(*r, body, "m").rfind("stream_options"));
  }
}
