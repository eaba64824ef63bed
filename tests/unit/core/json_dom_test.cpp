// The request-path JSON parser: values, strictness, and differential fuzzing against nlohmann.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "core/json_dom.hpp"

using namespace tollgate;

namespace {

bool accepts(std::string_view text) {
  return json::document::parse(text).has_value();
}

// Compares a parsed value with nlohmann's reading of the same text.
bool same_value(json::value v, const nlohmann::json& n) {
  switch (v.kind()) {
    case json::kind::null:
      return n.is_null();
    case json::kind::boolean:
      return n.is_boolean() && n.get<bool>() == v.as_bool();
    case json::kind::string:
      return n.is_string() && n.get<std::string>() == v.as_string();
    case json::kind::number:
      if (v.is_int64()) return n.is_number_integer() && n.get<std::int64_t>() == v.as_int64();
      return n.is_number();
    case json::kind::array: {
      if (!n.is_array() || n.size() != v.size()) return false;
      bool ok = true;
      std::uint32_t i = 0;
      v.for_each_element([&](json::value e) { ok = ok && same_value(e, n[i++]); });
      return ok;
    }
    case json::kind::object: {
      if (!n.is_object()) return false;
      bool ok = true;
      v.for_each_member([&](std::string_view k, json::value) {
        // nlohmann keeps the last duplicate too; compare through find() for that reason.
        ok = ok && n.contains(std::string(k)) && same_value(v.find(k), n[std::string(k)]);
      });
      return ok;
    }
  }
  return false;
}

// nlohmann refuses numbers beyond double's range (1e999); the JSON grammar allows them and so
// do we (they are passed upstream untouched).
bool nlohmann_overflows(const std::string& text) {
  try {
    const auto parsed = nlohmann::json::parse(text);
    return parsed.is_discarded();
  } catch (const nlohmann::json::exception& e) {
    return std::string(e.what()).find("number overflow") != std::string::npos;
  }
  return false;
}

}  // namespace

TEST_CASE("values and navigation") {
  const std::string text =
      R"( {"model":"m","n":-12,"f":1.5e3,"t":true,"z":null,"a":[1,[2],{"k":"v"}],
           "esc":"a\"b\\c\/\n\u00e9\ud83d\ude00","dup":1,"dup":2} )";
  auto doc = json::document::parse(text);
  REQUIRE(doc);
  auto root = doc->root();
  REQUIRE(root.is_object());
  CHECK(root.size() == 9);
  CHECK(root.find("model").as_string() == "m");
  CHECK(root.find("n").is_int64());
  CHECK(root.find("n").as_int64() == -12);
  CHECK_FALSE(root.find("f").is_int64());
  CHECK(root.find("f").raw_number() == "1.5e3");
  CHECK(root.find("t").as_bool());
  CHECK(root.find("z").is_null());
  CHECK_FALSE(root.find("missing").valid());
  auto a = root.find("a");
  CHECK(a.size() == 3);
  CHECK(a.at(1).at(0).as_int64() == 2);
  CHECK(a.at(2).find("k").as_string() == "v");
  CHECK(a.source() == R"([1,[2],{"k":"v"}])");
  CHECK(root.find("esc").source().substr(0, 6) == R"("a\"b\)");
  CHECK(root.find("model").source() == "\"m\"");
  CHECK(root.find("f").source() == "1.5e3");
  CHECK(root.find("t").source() == "true");
  std::string keys;
  root.for_each_member_node([&](json::value k, json::value) { keys += k.source(); });
  CHECK(keys.substr(0, 10) == R"("model""n")");
  CHECK(root.find("esc").as_string() == "a\"b\\c/\n\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(root.find("dup").as_int64() == 2);
  CHECK_FALSE(json::value(&*doc, 0).find("n").is_string());
}

TEST_CASE("strict grammar, UTF-8 and surrogates") {
  for (const char* bad : {"",
                          " ",
                          "{",
                          "}",
                          "[1,]",
                          "{\"a\":1,}",
                          "{'a':1}",
                          "{\"a\" 1}",
                          "01",
                          "1.",
                          ".5",
                          "-",
                          "1e",
                          "+1",
                          "tru",
                          "nul",
                          "\"abc",
                          "\"a\\x\"",
                          "\"\\u12\"",
                          "\"\\ud800\"",
                          "\"\\udc00\"",
                          "\"\\ud800\\u0041\"",
                          "\"\x01\"",
                          "\"\xff\"",
                          "\"\xc3\"",
                          "\"\xc0\xaf\"",
                          "\"\xed\xa0\x80\"",
                          "\"\xf4\x90\x80\x80\"",
                          "[1] 2",
                          "NaN",
                          "[-]"}) {
    CHECK_FALSE(accepts(bad));
  }
  for (const char* good : {"0", "-0", "1e5", "1E+5", "-1.25e-3", "\"\"", "[]", "{}", "[[]]",
                           "\"\\ud83d\\ude00\"", "\"\xe2\x82\xac\"", " \t\r\n[ 1 , 2 ]\n"}) {
    CHECK(accepts(good));
  }
  std::string deep(200, '[');
  deep += std::string(200, ']');
  json::parse_error err;
  CHECK_FALSE(json::document::parse(deep, &err));
  CHECK(err.message == "nesting too deep");
  CHECK_FALSE(json::document::parse("{\"a\":tx}", &err));
  CHECK(err.offset == 5);
}

// A string of 19 bytes with one byte of every value at every offset, so at every place in and
// across the eight-byte words the string scan crosses at once: a quote ends the string early,
// a backslash starts an escape that `\q` is not, a control character or a lone byte of 0x80
// or more is refused; any other byte is the string's.
TEST_CASE("each byte of a string is read wherever it stands in a word") {
  for (int c = 0; c < 256; ++c) {
    for (std::size_t at = 0; at < 19; ++at) {
      std::string s(19, 'q');
      s[at] = static_cast<char>(c);
      const std::string text = "\"" + s + "\"";  // the document's strings point into it
      const auto doc = json::document::parse(text);
      const bool plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
      INFO("byte " << c << " at " << at);
      REQUIRE(doc.has_value() == plain);
      if (plain) CHECK(doc->root().as_string() == s);
    }
  }
  // Random strings with several stop bytes, and plain and two-byte UTF-8 neighbours, in a word:
  // read as nlohmann reads them (a backslash may start a valid escape here). One piece in
  // sixteen cannot stand in a string as it is, so that both answers are common.
  const std::string_view plain[] = {" ", "a", "\x7f", "\xc3\xa9", "\\n", "\\\\", "\\\""};
  const std::string_view stops[] = {"\"", "\\", "\x01", "\x1f", "\xff"};
  std::mt19937 rng(5);
  int accepted = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string text = "\"";
    for (std::size_t n = rng() % 30; n > 0; --n) {
      const bool stop = rng() % 16 == 0;
      text.append(stop ? stops[rng() % std::size(stops)] : plain[rng() % std::size(plain)]);
    }
    text += "\"";
    const bool valid = nlohmann::json::accept(text);
    accepted += valid ? 1 : 0;
    const auto doc = json::document::parse(text);
    INFO(text);
    REQUIRE(doc.has_value() == valid);
    if (valid) CHECK(doc->root().as_string() == nlohmann::json::parse(text).get<std::string>());
  }
  CHECK(accepted > 1000);
  CHECK(accepted < 4000);
}

TEST_CASE("big integers are numbers but not int64") {
  auto doc = json::document::parse("[9223372036854775807, 9223372036854775808]");
  REQUIRE(doc);
  CHECK(doc->root().at(0).is_int64());
  CHECK_FALSE(doc->root().at(1).is_int64());
}

TEST_CASE("differential fuzz: accepts exactly what nlohmann accepts, with the same values") {
  std::mt19937 rng(11);
  const std::vector<std::string> seeds = {
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9llo \ud83d\ude00"}],"stream":true,"max_tokens":12,"temperature":0.5})",
      R"([1,-2.5e-3,true,false,null,"x\n\t\"",{"a":{"b":[[],{}]}}])",
      "{\"k\":\"\xe4\xb8\xad\xe6\x96\x87 \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\"}",
  };
  const std::string alphabet =
      std::string("{}[]\",:0123456789-+.eEtrufalsn\\u/ \n") + "\xc3\xa9\xff\x01" + "dD8";
  int agreed = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string text = seeds[rng() % seeds.size()];
    const int edits = static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.erase(at, 1 + rng() % 3);
          break;
        default:
          text = text.substr(0, at) + c + text.substr(at);
          break;
      }
    }
    const auto ours = json::document::parse(text);
    const auto theirs = nlohmann::json::parse(text, nullptr, false);
    INFO(text);
    if (ours && theirs.is_discarded() && nlohmann_overflows(text)) continue;
    REQUIRE(ours.has_value() == !theirs.is_discarded());
    if (ours) {
      REQUIRE(same_value(ours->root(), theirs));
      ++agreed;
    }
  }
  CHECK(agreed > 1000);  // the mutations leave plenty of valid documents to compare
}
