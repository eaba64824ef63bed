// POST /v1/embeddings and POST /v1/responses: request validation (OpenAI-shaped 400s naming
// the parameter), prompt counting with a real tokenizer, worst cases, usage and output text.
#include <catch2/catch.hpp>
#include <deque>
#include <nlohmann/json.hpp>

#include "core/json_dom.hpp"
#include "gateway/embeddings_request.hpp"
#include "gateway/openai_request.hpp"
#include "gateway/request_count.hpp"
#include "gateway/responses_request.hpp"
#include "metering/completion_text.hpp"
#include "metering/tokenizer_registry.hpp"
#include "metering/usage.hpp"

using namespace tollgate;
using namespace tollgate::gateway;

namespace {

const metering::prompt_counter& o200k() {
  static metering::tokenizer_registry registry(TOLLGATE_SOURCE_DIR "/.cache/tokenizers");
  static const metering::prompt_counter counter = [] {
    auto tok = registry.get("o200k_base");
    REQUIRE(tok);
    auto c = metering::prompt_counter::make(*tok, metering::prompt_format::openai);
    REQUIRE(c);
    return *c;
  }();
  return counter;
}

api_error embeddings_error(const std::string& body) {
  auto r = parse_completion_request(endpoint_kind::embeddings, body);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

api_error responses_error(const std::string& body) {
  auto r = parse_completion_request(endpoint_kind::responses, body);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

// A parsed request's document points into its body text: the texts are kept here.
completion_request parsed(endpoint_kind kind, const std::string& text) {
  static std::deque<std::string> bodies;
  const std::string& body = bodies.emplace_back(text);
  auto r = parse_completion_request(kind, body);
  INFO(body);
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  return std::move(*r);
}

model_config model_with_context(std::uint64_t context) {
  model_config m;
  m.context_tokens = context;
  return m;
}

std::int64_t text_tokens(std::string_view text) {
  return o200k().count_text(text);
}

}  // namespace

TEST_CASE("embeddings: every input shape parses and counts, token ids one each") {
  const auto counted = [](const std::string& body) {
    const auto req = parsed(endpoint_kind::embeddings, body);
    CHECK(req.kind == endpoint_kind::embeddings);
    CHECK(req.max_tokens == 0);
    CHECK_FALSE(req.stream);
    std::vector<std::int64_t> inputs;
    count_embedding_inputs(o200k(), req.body->root(), inputs);
    return inputs;
  };
  const std::string text = "The quick brown fox jumps over the lazy dog, naïvely.";
  CHECK(counted(R"({"model":"m","input":")" + text + R"("})") ==
        std::vector<std::int64_t>{text_tokens(text)});
  CHECK(counted(R"({"model":"m","input":["a b c","日本語"]})") ==
        std::vector<std::int64_t>{text_tokens("a b c"), text_tokens("日本語")});
  CHECK(counted(R"({"model":"m","input":[1,2,3,4]})") == std::vector<std::int64_t>{4});
  CHECK(counted(R"({"model":"m","input":[[1,2],[3],[4,5,6]]})") ==
        std::vector<std::int64_t>{2, 1, 3});
  CHECK(counted(R"({"model":"m","input":"x","encoding_format":"base64","dimensions":256,
      "user":"u-1","stream":false})") == std::vector<std::int64_t>{1});
  const auto req = parsed(endpoint_kind::embeddings, R"({"model":"m","input":"x","user":"u-1"})");
  CHECK(req.end_user == "u-1");
}

TEST_CASE("embeddings: bad input gets a 400 naming it") {
  CHECK(embeddings_error(R"({"model":"m"})").code == "missing_required_parameter");
  CHECK(embeddings_error(R"({"input":"x"})").param == "model");
  CHECK(embeddings_error(R"({"model":"m","input":""})").code == "empty_input");
  CHECK(embeddings_error(R"({"model":"m","input":[]})").code == "empty_array");
  CHECK(embeddings_error(R"({"model":"m","input":["ok",""]})").param == "input[1]");
  CHECK(embeddings_error(R"({"model":"m","input":[[1],[]]})").param == "input[1]");
  CHECK(embeddings_error(R"({"model":"m","input":5})").code == "invalid_type");
  CHECK(embeddings_error(R"({"model":"m","input":{"a":1}})").code == "invalid_type");
  CHECK(embeddings_error(R"({"model":"m","input":["a",5]})").code == "invalid_value");
  CHECK(embeddings_error(R"({"model":"m","input":["a",null]})").param == "input[1]");
  CHECK(embeddings_error(R"({"model":"m","input":[1,-2]})").code == "invalid_value");
  CHECK(embeddings_error(R"({"model":"m","input":[[1,2.5]]})").code == "invalid_value");
  CHECK(embeddings_error(R"({"model":"m","input":"x","encoding_format":"int8"})").param ==
        "encoding_format");
  CHECK(embeddings_error(R"({"model":"m","input":"x","dimensions":0})").code ==
        "integer_below_min_value");
  CHECK(embeddings_error(R"({"model":"m","input":"x","stream":true})").param == "stream");
  CHECK(embeddings_error(R"({"model":"m","input":"x","user":7})").param == "user");
  CHECK(embeddings_error(R"({"model":"m","input":"x","input":"y"})").code == "duplicate_parameter");
  std::string many = R"({"model":"m","input":[)";
  for (int i = 0; i < 2049; ++i) many += i ? ",\"w\"" : "\"w\"";
  CHECK(embeddings_error(many + "]}").code == "array_above_max_length");
  // One input of many token ids is one input, not many.
  std::string ids = R"({"model":"m","input":[)";
  for (int i = 0; i < 3000; ++i) ids += i ? ",7" : "7";
  CHECK(parse_completion_request(endpoint_kind::embeddings, ids + "]}").ok());
}

TEST_CASE("embeddings: the worst case is the inputs' tokens, each within the context") {
  const model_config m = model_with_context(8);
  const std::vector<std::int64_t> fits{8, 3};
  auto worst = embeddings_worst_case(m, fits);
  REQUIRE(worst);
  CHECK(worst->prompt_tokens == 11);
  CHECK(worst->completion_tokens == 0);
  const std::vector<std::int64_t> too_long{3, 9};
  auto refused = embeddings_worst_case(m, too_long);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == "context_length_exceeded");
  CHECK(refused.error().message.find("input[1]") != std::string::npos);
  const std::vector<std::int64_t> too_many(40, 8'000);  // 320,000 tokens in all
  CHECK(embeddings_worst_case(model_with_context(8192), too_many).error().code ==
        "max_tokens_per_request");
}

TEST_CASE("responses: requests parse; uncountable context sets the context hold") {
  auto r = parsed(endpoint_kind::responses,
                  R"({"model":"m","input":"hi","instructions":"be brief","max_output_tokens":50,
                      "stream":true,"stream_options":{"include_obfuscation":false},
                      "user":"u-2","metadata":{"feature":"x"},"tools":[]})");
  CHECK(r.kind == endpoint_kind::responses);
  CHECK(r.max_tokens == 50);
  CHECK(r.stream);
  CHECK(r.client_wants_usage);  // usage reaches the client in response.completed
  CHECK(r.end_user == "u-2");
  CHECK(r.tags.size() == 1);
  CHECK_FALSE(r.context_hold);
  // The body goes upstream untouched: no stream_options.include_usage is added.
  const std::string plain = R"({"model":"m","input":"hi","stream":true})";
  CHECK(upstream_body(parsed(endpoint_kind::responses, plain), plain, "m") == plain);

  for (
      const char* held : {
          R"({"model":"m","previous_response_id":"resp_1"})",
          R"({"model":"m","input":"more","previous_response_id":"resp_1"})",
          R"({"model":"m","input":"more","conversation":"conv_1"})",
          R"({"model":"m","input":"more","conversation":{"id":"conv_1"}})",
          R"({"model":"m","prompt":{"id":"pmpt_1"}})",
          R"({"model":"m","input":[{"type":"item_reference","id":"msg_1"}]})",
          R"({"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"what"},
               {"type":"input_image","image_url":"https://x/y.png"}]}]})",
          R"({"model":"m","input":[{"role":"user",
               "content":[{"type":"input_file","file_id":"f"}]}]})",
          R"({"model":"m","input":[{"type":"reasoning","summary":[],"encrypted_content":"xx"}]})",
      }) {
    INFO(held);
    CHECK(parsed(endpoint_kind::responses, held).context_hold);
  }
  CHECK_FALSE(parsed(endpoint_kind::responses,
                     R"({"model":"m","input":[{"type":"message","role":"assistant","content":[
                         {"type":"output_text","text":"ok"},{"type":"refusal","refusal":"no"}]},
                         {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
                         {"type":"function_call_output","call_id":"c","output":"42"}]})")
                  .context_hold);
}

TEST_CASE("responses: bad input gets a 400 naming it") {
  CHECK(responses_error(R"({"model":"m"})").param == "input");
  CHECK(responses_error(R"({"input":"x"})").param == "model");
  CHECK(responses_error(R"({"model":"m","input":5})").code == "invalid_type");
  CHECK(responses_error(R"({"model":"m","input":[5]})").param == "input[0]");
  CHECK(responses_error(R"({"model":"m","input":[{"content":"x"}]})").param == "input[0].type");
  CHECK(responses_error(R"({"model":"m","input":[{"role":"robot","content":"x"}]})").param ==
        "input[0].role");
  CHECK(responses_error(R"({"model":"m","input":[{"role":"user"}]})").param == "input[0].content");
  CHECK(responses_error(R"({"model":"m","input":[{"role":"user","content":[{"text":"x"}]}]})")
            .param == "input[0].content[0].type");
  CHECK(responses_error(R"({"model":"m","input":"x","max_output_tokens":0})").code ==
        "integer_below_min_value");
  CHECK(responses_error(R"({"model":"m","input":"x","max_output_tokens":"9"})").code ==
        "invalid_type");
  CHECK(responses_error(R"({"model":"m","input":"x","instructions":3})").param == "instructions");
  CHECK(responses_error(R"({"model":"m","input":"x","stream_options":{}})").param ==
        "stream_options");
  CHECK(responses_error(R"({"model":"m","input":"x","background":true})").param == "background");
  CHECK(responses_error(R"({"model":"m","input":"x","tools":{}})").param == "tools");
  CHECK(responses_error(R"({"model":"m","previous_response_id":5})").param ==
        "previous_response_id");
  CHECK(responses_error(R"({"model":"m","input":"x","metadata":{"a":1}})").param == "metadata");
}

TEST_CASE("responses: the prompt counts as the equivalent chat request") {
  const std::string body = R"({"model":"m","instructions":"You are terse.",
      "input":[{"role":"user","content":[{"type":"input_text","text":"Count "},
                                          {"type":"input_text","text":"these: naïve café"}]},
               {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]},
               {"type":"function_call","call_id":"c1","name":"lookup","arguments":"{\"q\":1}"},
               {"type":"function_call_output","call_id":"c1","output":"42"}],
      "tools":[{"type":"function","name":"lookup","description":"Looks up.",
                "parameters":{"type":"object","properties":{"q":{"type":"integer"}}}},
               {"type":"web_search"}]})";
  const auto req = parsed(endpoint_kind::responses, body);
  const auto chat = json::document::parse(R"({"messages":[
      {"role":"system","content":"You are terse."},
      {"role":"user","content":"Count these: naïve café"},
      {"role":"assistant","content":"ok"},
      {"role":"assistant","content":"lookup{\"q\":1}"},
      {"role":"tool","content":"42"}],
      "tools":[{"type":"function","function":{"name":"lookup","description":"Looks up.",
                "parameters":{"type":"object","properties":{"q":{"type":"integer"}}}}}]})");
  REQUIRE(chat);
  const std::int64_t want = o200k().count_chat(chat->root());
  CHECK(count_responses_prompt(o200k(), req.body->root()) == want);
  // A plain string input is one user message: 3 + role + text per message, 3 priming.
  const auto simple = parsed(endpoint_kind::responses, R"({"model":"m","input":"hello there"})");
  CHECK(count_responses_prompt(o200k(), simple.body->root()) ==
        3 + text_tokens("user") + text_tokens("hello there") + 3);
}

TEST_CASE("responses: the worst case bounds output by max_output_tokens or the context") {
  const model_config m = model_with_context(1000);
  std::int64_t counted = 0;
  const auto bounded = parsed(endpoint_kind::responses,
                              R"({"model":"m","input":"hello there","max_output_tokens":100})");
  auto worst = count_request(m, o200k(), bounded, counted);
  REQUIRE(worst);
  CHECK(counted == 3 + text_tokens("user") + text_tokens("hello there") + 3);
  CHECK(worst->prompt_tokens == counted);
  CHECK(worst->completion_tokens == 100);
  const auto open = parsed(endpoint_kind::responses, R"({"model":"m","input":"hello there"})");
  worst = count_request(m, o200k(), open, counted);
  REQUIRE(worst);
  CHECK(worst->completion_tokens == 1000 - counted);
  // Context it cannot count: the whole context is held.
  const auto held = parsed(endpoint_kind::responses,
                           R"({"model":"m","input":"more","previous_response_id":"resp_1",
                               "max_output_tokens":100})");
  worst = count_request(m, o200k(), held, counted);
  REQUIRE(worst);
  CHECK(worst->total() == 1000);
  CHECK(worst->completion_tokens == 100);
  const auto too_big =
      parsed(endpoint_kind::responses, R"({"model":"m","input":"hello","max_output_tokens":999})");
  auto refused = count_request(m, o200k(), too_big, counted);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == "context_length_exceeded");
  CHECK(refused.error().param == "max_output_tokens");
}

TEST_CASE("responses: usage comes from the final event's response.usage") {
  const auto usage_of = [](const char* event) {
    auto doc = json::document::parse(event);
    REQUIRE(doc);
    metering::usage_record rec;
    const bool found = rec.set_usage(stream_event_usage(doc->root()));
    return std::make_pair(found, rec);
  };
  auto [found, rec] = usage_of(R"({"type":"response.completed","sequence_number":9,
      "response":{"id":"r","object":"response","usage":{"input_tokens":36,
      "input_tokens_details":{"cached_tokens":12},"output_tokens":87,
      "output_tokens_details":{"reasoning_tokens":40},"total_tokens":123}}})");
  CHECK(found);
  CHECK(rec.prompt_tokens == 36);
  CHECK(rec.cached_tokens == 12);
  CHECK(rec.completion_tokens == 87);
  CHECK(rec.reasoning_tokens == 40);
  CHECK(usage_of(R"({"type":"response.incomplete","response":{"usage":{"input_tokens":1,
      "output_tokens":2}}})")
            .second.completion_tokens == 2);
  CHECK_FALSE(usage_of(R"({"type":"response.created","response":{"usage":null}})").first);
  CHECK_FALSE(usage_of(R"({"type":"response.output_text.delta","delta":"usage"})").first);
  // Chat chunks keep their top-level usage; embeddings report prompt_tokens only.
  CHECK(usage_of(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}})")
            .second.completion_tokens == 6);
  metering::usage_record e;
  CHECK(e.set_usage_from_response(R"({"object":"list","data":[{"object":"embedding","index":0,
      "embedding":[0.1,0.2]}],"model":"m","usage":{"prompt_tokens":8,"total_tokens":8}})"));
  CHECK(e.prompt_tokens == 8);
  CHECK(e.completion_tokens == 0);
  // A whole Responses object, whose usage is not its last member.
  metering::usage_record w;
  CHECK(w.set_usage_from_response(R"({"id":"r","object":"response","output":[],
      "usage":{"input_tokens":4,"output_tokens":5},"user":null,"metadata":{}})"));
  CHECK(w.prompt_tokens == 4);
  CHECK(w.completion_tokens == 5);
}

TEST_CASE("responses: without usage, the output text is what gets counted") {
  metering::completion_text streamed;
  for (
      const char* e : {
          R"({"type":"response.created",
              "response":{"object":"response","output":[],"usage":null}})",
          R"({"type":"response.output_text.delta","output_index":0,"content_index":0,
              "delta":"Hello"})",
          R"({"type":"response.output_text.delta","output_index":0,"content_index":0,
              "delta":" world, naïve"})",
          R"({"type":"response.output_text.done","output_index":0,"text":"Hello world, naïve"})",
          R"({"type":"response.function_call_arguments.delta","output_index":1,
              "delta":"{\"q\":1}"})",
          R"({"type":"response.completed","response":{"object":"response","output":[
               {"type":"message","content":[{"type":"output_text","text":"Hello world, naïve"}]}],
               "usage":null}})",
      }) {
    streamed.add_stream_event(e);
  }
  CHECK(streamed.count(o200k()) == text_tokens("Hello world, naïve") + text_tokens("{\"q\":1}"));
  metering::completion_text whole;
  whole.add_response(R"({"id":"r","object":"response","output":[
      {"type":"reasoning","summary":[]},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi there"}]},
      {"type":"function_call","name":"f","arguments":"{}"}],"usage":null})");
  CHECK(whole.count(o200k()) == text_tokens("Hi there") + text_tokens("f{}"));
}
