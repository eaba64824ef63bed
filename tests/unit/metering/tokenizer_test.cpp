// Tokenizers: pre-tokenizer pieces, round trips, NFC, loader errors, and prompt counting
// (the OpenAI cookbook's examples). Uses the real data files `make deps` puts in
// .cache/tokenizers; bulk parity with the reference implementations is tests/tokenizers/.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "core/json_dom.hpp"
#include "metering/prompt_count.hpp"
#include "metering/completion_text.hpp"
#include "metering/tokenizer_registry.hpp"
#include "metering/unicode.hpp"

using namespace tollgate;
using namespace tollgate::metering;

namespace {

tokenizer_registry& registry() {
  static tokenizer_registry r(TOLLGATE_SOURCE_DIR "/.cache/tokenizers");
  return r;
}

std::shared_ptr<const tokenizer> load(const std::string& name) {
  auto t = registry().get(name);
  INFO((t ? std::string() : t.error().message));
  REQUIRE(t);
  return *t;
}

std::vector<std::string> pieces(split_rule rule, std::string_view text) {
  std::vector<std::string> out;
  for (auto p : split_pieces(rule, text)) out.emplace_back(p);
  return out;
}

using strings = std::vector<std::string>;

// A random valid UTF-8 string mixing ASCII, whitespace, marks and characters from all planes.
std::string random_text(std::mt19937_64& rng, std::size_t chars) {
  std::string s;
  std::uniform_int_distribution<int> kind(0, 9);
  for (std::size_t i = 0; i < chars; ++i) {
    char32_t cp;
    switch (kind(rng)) {
      case 0: cp = char32_t(std::uniform_int_distribution<int>(0, 0x7F)(rng)); break;
      case 1: cp = U" \t\n\r\u00A0\u3000\u2028\u0085"[rng() % 8]; break;
      case 2: cp = char32_t(0x300 + rng() % 0x70); break;  // combining marks
      case 3: cp = char32_t(0x10000 + rng() % 0x100000); break;
      default: cp = char32_t(0x80 + rng() % (0xD800 - 0x80)); break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    if (cp > 0x10FFFF) cp = 'y';
    unicode::append_utf8(s, cp);
  }
  return s;
}

json::document parse(std::string_view text) {
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  return std::move(*doc);
}

// The OpenAI cookbook's example conversation ("How to count tokens with tiktoken").
constexpr std::string_view cookbook_messages = R"({"messages": [
  {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
  {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
  {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
  {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
  {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
  {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
]})";

// The cookbook's tools example (num_tokens_for_tools).
constexpr std::string_view cookbook_tools = R"({
  "tools": [{"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
      "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
      "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]}},
      "required": ["location"]}}}],
  "messages": [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"}]})";

}  // namespace

TEST_CASE("cl100k pre-tokenizer follows the regex alternatives") {
  const auto r = split_rule::cl100k;
  CHECK(pieces(r, "Hello   world") == strings{"Hello", "  ", " world"});
  CHECK(pieces(r, "don't I'LL we'Re") == strings{"don", "'t", " I", "'LL", " we", "'Re"});
  CHECK(pieces(r, "x'ſ") == strings{"x", "'ſ"});  // U+017F folds to s
  CHECK(pieces(r, "abc1234567") == strings{"abc", "123", "456", "7"});
  CHECK(pieces(r, "a\r\n\r\n  b") == strings{"a", "\r\n\r\n", " ", " b"});
  CHECK(pieces(r, "end  \n") == strings{"end", "  \n"});
  CHECK(pieces(r, "x   ") == strings{"x", "   "});
  CHECK(pieces(r, " !!?\n\nx") == strings{" !!?\n\n", "x"});
  CHECK(pieces(r, "\tfoo") == strings{"\tfoo"});
  CHECK(pieces(r, "\u00A0\u00A0bar") == strings{"\u00A0", "\u00A0bar"});
  CHECK(pieces(r, "\u0085x") == strings{"\u0085x"});  // U+0085 is White_Space, and a prefix
  CHECK(pieces(r, "\uFEFFx") == strings{"\uFEFFx"});  // U+FEFF is not whitespace in Rust's \s
  CHECK(pieces(split_rule::qwen2, "abc123") == strings{"abc", "1", "2", "3"});
}

TEST_CASE("o200k pre-tokenizer splits on case and keeps contractions with their word") {
  const auto r = split_rule::o200k;
  CHECK(pieces(r, "HelloWorld") == strings{"Hello", "World"});
  CHECK(pieces(r, "HTTPServer") == strings{"HTTPServer"});
  CHECK(pieces(r, "don't YOU'LL") == strings{"don't", " YOU'LL"});
  CHECK(pieces(r, "path/to/file\n") == strings{"path", "/to", "/file", "\n"});
  CHECK(pieces(r, "a+/\n/b") == strings{"a", "+/\n/", "b"});
  CHECK(pieces(r, "1234567") == strings{"123", "456", "7"});
  CHECK(pieces(r, "\u0301abc") == strings{"\u0301abc"});  // a leading mark is a prefix
}

TEST_CASE("encode then decode gives back the text, for every tokenizer") {
  std::mt19937_64 rng(42);
  for (const char* name : {"cl100k_base", "o200k_base", "llama3", "qwen3"}) {
    const auto t = load(name);
    for (int i = 0; i < 300; ++i) {
      std::string text = random_text(rng, std::size_t(rng() % 200));
      if (std::string(name) == "qwen3") text = unicode::to_nfc(text);  // Qwen normalizes first
      const auto ids = t->encode(text);
      const auto back = t->decode(ids);
      REQUIRE(back);
      REQUIRE(*back == text);
      REQUIRE(t->count(text) == ids.size());
    }
  }
}

TEST_CASE("very long words take the heap merge path and round-trip") {
  const auto t = load("cl100k_base");
  // Pieces over 64 bytes merge with a heap. Their ids are checked against tiktoken by the
  // parity tests (the corpus has words of 65-3000 characters); here: they decode back and merge
  // far below one token per byte.
  const std::string word(300, 'a');
  const auto ids = t->encode(word);
  CHECK(*t->decode(ids) == word);
  CHECK(ids.size() < 100);
  std::string spaced;
  for (int i = 0; i < 5; ++i) spaced += " " + word;
  const auto spaced_ids = t->encode(spaced);
  CHECK(*t->decode(spaced_ids) == spaced);
}

TEST_CASE("special tokens are found by text, and plain text never produces them") {
  const auto t = load("cl100k_base");
  CHECK(t->special_token("<|endoftext|>") == std::optional<token_id>(100257));
  CHECK(!t->special_token("<|nope|>"));
  const auto ids = t->encode("<|endoftext|>");
  CHECK(ids.size() > 1);
  const auto q = load("qwen3");
  CHECK(q->special_token("<|im_start|>") == std::optional<token_id>(151644));
  CHECK(!t->decode(std::vector<token_id>{999999999}));
}

TEST_CASE("NFC normalization") {
  CHECK(unicode::to_nfc("e\u0301") == "\u00E9");
  CHECK(unicode::to_nfc("\u212B") == "\u00C5");                      // singleton decomposition
  CHECK(unicode::to_nfc("\u1100\u1161\u11A8") == "\uAC01");          // Hangul L V T
  CHECK(unicode::to_nfc("a\u0301\u0323") == "\u1EA1\u0301");         // reordered, then composed
  CHECK(unicode::to_nfc("plain ascii") == "plain ascii");
  CHECK(unicode::is_nfc_quick("caf\u00E9"));
  CHECK(!unicode::is_nfc_quick("cafe\u0301"));
  // Qwen's tokenizer normalizes: decomposed and composed text encode the same.
  const auto q = load("qwen3");
  CHECK(q->encode("cafe\u0301") == q->encode("caf\u00E9"));
}

TEST_CASE("the ASCII class fast path agrees with the full table") {
  for (int c = 0; c < 128; ++c) CHECK(unicode::ascii_flags(static_cast<unsigned char>(c)) == unicode::flags_of(char32_t(c)));
  CHECK((unicode::flags_of(0x13460) & unicode::letter));  // Egyptian hieroglyph, new in Unicode 16.0
  CHECK(!(unicode::flags_of(0x323B0) & unicode::letter));  // CJK Extension J, Unicode 17.0: not yet
  CHECK((unicode::flags_of(0x85) & unicode::space));
  CHECK(!(unicode::flags_of(0xFEFF) & unicode::space));
}

TEST_CASE("UTF-8 validation and decoding") {
  CHECK(unicode::valid_utf8("h\u00E9llo \U0001F600"));
  CHECK(!unicode::valid_utf8("\xC0\xAF"));          // overlong
  CHECK(!unicode::valid_utf8("\xED\xA0\x80"));      // surrogate
  CHECK(!unicode::valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK(!unicode::valid_utf8("\xE2\x82"));          // truncated
  // Invalid bytes still tokenize (as single bytes) and round-trip.
  const auto t = load("o200k_base");
  const std::string bad = "ok\xFF\xC3(";
  CHECK(*t->decode(t->encode(bad)) == bad);
}

TEST_CASE("tokenizer.json loader refuses what it does not support, naming it") {
  const auto error_of = [](std::string_view json) {
    auto t = tokenizer::parse_hugging_face(json, "test.json");
    REQUIRE(!t);
    return t.error().message;
  };
  CHECK_THAT(error_of("{"), Catch::Contains("not a JSON object"));
  CHECK_THAT(error_of(R"({"model":{"type":"WordPiece"}})"), Catch::Contains("only BPE"));
  CHECK_THAT(error_of(R"({"model":{"type":"BPE","byte_fallback":true}})"), Catch::Contains("byte_fallback"));
  CHECK_THAT(error_of(R"({"model":{"type":"BPE"},"normalizer":{"type":"NFKC"}})"),
             Catch::Contains("normalizer"));
  CHECK_THAT(error_of(R"({"model":{"type":"BPE"},"pre_tokenizer":{"type":"Sequence","pretokenizers":[
               {"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated","invert":false},
               {"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}})"),
             Catch::Contains("unsupported Split pattern: \\w+"));
  CHECK_THAT(error_of(R"({"model":{"type":"BPE"},"pre_tokenizer":{"type":"ByteLevel","use_regex":true}})"),
             Catch::Contains("pre_tokenizer"));
  const std::string dup = "/tmp/tollgate-dup-" + std::to_string(::getpid()) + ".tiktoken";
  {
    std::FILE* f = std::fopen(dup.c_str(), "w");
    REQUIRE(f);
    std::fputs("YQ== 0\nYg== 0\n", f);
    std::fclose(f);
  }
  auto twice = tokenizer::load_tiktoken("cl100k_base", dup);
  REQUIRE(!twice);
  CHECK_THAT(twice.error().message, Catch::Contains("rank 0 appears twice"));
  std::remove(dup.c_str());
  auto missing = tokenizer::load_tiktoken("cl100k_base", "/nonexistent.tiktoken");
  CHECK_THAT(missing.error().message, Catch::Contains("/nonexistent.tiktoken"));
  CHECK(!tokenizer::load_tiktoken("p50k_base", "/dev/null"));
  CHECK(!registry().get("no-such-tokenizer"));
}

TEST_CASE("cookbook example conversation: 129 tokens with cl100k, 124 with o200k") {
  const auto doc = parse(cookbook_messages);
  const auto cl100k = prompt_counter::make(load("cl100k_base"), prompt_format::openai);
  const auto o200k = prompt_counter::make(load("o200k_base"), prompt_format::openai);
  REQUIRE(cl100k);
  REQUIRE(o200k);
  CHECK(cl100k->count_chat(doc.root()) == 129);
  CHECK(o200k->count_chat(doc.root()) == 124);
}

TEST_CASE("cookbook tools example: 105 tokens with cl100k, 101 with o200k") {
  const auto doc = parse(cookbook_tools);
  CHECK(prompt_counter::make(load("cl100k_base"), prompt_format::openai)->count_chat(doc.root()) == 105);
  CHECK(prompt_counter::make(load("o200k_base"), prompt_format::openai)->count_chat(doc.root()) == 101);
}

TEST_CASE("content-part arrays count their text parts") {
  const auto counter = prompt_counter::make(load("o200k_base"), prompt_format::openai);
  const auto as_string = parse(R"({"messages":[{"role":"user","content":"Hello there, friend"}]})");
  const auto as_parts = parse(R"({"messages":[{"role":"user","content":[
      {"type":"text","text":"Hello there,"},{"type":"image_url","image_url":{"url":"x"}},
      {"type":"text","text":" friend"}]}]})");
  CHECK(counter->count_chat(as_parts.root()) == counter->count_chat(as_string.root()));
}

TEST_CASE("legacy completion prompts: strings, string arrays and token arrays") {
  const auto counter = prompt_counter::make(load("cl100k_base"), prompt_format::openai);
  CHECK(counter->count_completion(parse(R"({"prompt":"Hello world"})").root()) == 2);
  CHECK(counter->count_completion(parse(R"({"prompt":["Hello world","Hi"]})").root()) == 3);
  CHECK(counter->count_completion(parse(R"({"prompt":[1,2,3]})").root()) == 3);
  CHECK(counter->count_completion(parse(R"({"prompt":[[1,2],[3]]})").root()) == 3);
  CHECK(counter->count_completion(parse(R"({})").root()) == 0);
}

TEST_CASE("template formats render special tokens as single ids") {
  const auto llama = prompt_counter::make(load("llama3"), prompt_format::llama3);
  REQUIRE(llama);
  const auto doc = parse(R"({"messages":[{"role":"system","content":"  Be brief. "},{"role":"user","content":"Hi"}]})");
  std::vector<token_id> ids;
  REQUIRE(llama->render_chat(doc.root().find("messages"), ids));
  const auto text = llama->tok().decode(ids);
  CHECK(*text ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(llama->count_chat(doc.root()) == std::int64_t(ids.size()));

  const auto qwen = prompt_counter::make(load("qwen3"), prompt_format::chatml);
  REQUIRE(qwen);
  ids.clear();
  REQUIRE(qwen->render_chat(doc.root().find("messages"), ids));
  CHECK(*qwen->tok().decode(ids) ==
        "<|im_start|>system\n  Be brief. <|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // A chat template needs its special tokens.
  CHECK(!prompt_counter::make(load("cl100k_base"), prompt_format::chatml));
}

TEST_CASE("the fallback completion count includes reasoning text, streamed or whole") {
  const auto counter = prompt_counter::make(load("cl100k_base"), prompt_format::openai);
  REQUIRE(counter);
  const std::int64_t answer = counter->count_text("The answer is 4.");
  const std::int64_t thinking = counter->count_text("Two plus two makes four.");
  completion_text whole;
  whole.add_response(R"({"choices":[{"index":0,"message":{"role":"assistant",
      "reasoning_content":"Two plus two makes four.","content":"The answer is 4."}}]})");
  CHECK(whole.count(*counter) == counter->count_text("The answer is 4.Two plus two makes four."));
  CHECK(whole.count(*counter) >= answer + thinking - 1);
  completion_text streamed;
  streamed.add_stream_event(R"({"choices":[{"index":0,"delta":{"reasoning":"Two plus two"}}]})");
  streamed.add_stream_event(R"({"choices":[{"index":0,"delta":{"reasoning":" makes four."}}]})");
  streamed.add_stream_event(R"({"choices":[{"index":0,"delta":{"content":"The answer is 4."}}]})");
  streamed.add_stream_event("[DONE]");
  CHECK(streamed.count(*counter) > answer);
  CHECK(streamed.count(*counter) == counter->count_text("Two plus two makes four.The answer is 4."));
}
