// JSON text writer: escaping, invalid UTF-8 replacement, object and array building.
#include <catch2/catch.hpp>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "core/json_text.hpp"

using namespace tollgate;

TEST_CASE("strings are escaped so any input gives valid JSON") {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\t\x01\x7f", 9));
  CHECK(out == "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\"");
  out.clear();
  append_json_string(out, "h\xC3\xA9 \xF0\x9F\x98\x80");  // valid UTF-8 passes through
  CHECK(out == "\"h\xC3\xA9 \xF0\x9F\x98\x80\"");
  out.clear();
  append_json_string(out, "bad\xC3 \xED\xA0\x80 \xFF");  // truncated, surrogate, invalid byte
  CHECK(nlohmann::json::parse(out).get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("random bytes always produce parseable JSON strings") {
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    std::string out;
    append_json_string(out, s);
    CHECK_NOTHROW(nlohmann::json::parse(out));
  }
}

// Every byte value at every offset of a 19-byte ASCII string (so at every place in and across
// the words the escaping crosses eight bytes at a time) against the escape JSON defines for it;
// a lone byte of 0x80 or more is not UTF-8 and becomes U+FFFD.
TEST_CASE("each byte is escaped wherever it stands in a word") {
  auto expected_for = [](unsigned char c) -> std::string {
    switch (c) {
      case '"':
        return "\\\"";
      case '\\':
        return "\\\\";
      case '\n':
        return "\\n";
      case '\r':
        return "\\r";
      case '\t':
        return "\\t";
      default:
        break;
    }
    if (c >= 0x80) return "\xEF\xBF\xBD";
    if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      return buf;
    }
    return std::string(1, static_cast<char>(c));
  };
  for (int c = 0; c < 256; ++c) {
    for (std::size_t at = 0; at < 19; ++at) {
      std::string s(19, 'q');
      s[at] = static_cast<char>(c);
      std::string out;
      append_json_string(out, s);
      const std::string want =
          "\"" + std::string(at, 'q') + expected_for(c) + std::string(18 - at, 'q') + "\"";
      INFO("byte " << c << " at " << at);
      CHECK(out == want);
    }
  }
}

// Random text with several bytes to escape, their plain neighbours and valid UTF-8 sequences
// (which may cross a word's end) in a word, against a piece-by-piece escape.
TEST_CASE("strings with many bytes to escape match a byte-by-byte escape") {
  const std::string_view pieces[] = {"\"",   "\\",       std::string_view("\0", 1),
                                     "\x01", "\x1f",     " ",
                                     "a",    "\x7f",     "\n",
                                     "\t",   "\xc3\xa9", "\xe2\x82\xac"};
  std::mt19937 rng(3);
  for (int round = 0; round < 5000; ++round) {
    std::string text;
    std::string want = "\"";
    for (std::size_t n = rng() % 30; n > 0; --n) {
      const std::string_view piece = pieces[rng() % std::size(pieces)];
      text.append(piece);
      const auto c = static_cast<unsigned char>(piece[0]);
      if (c == '"')
        want += "\\\"";
      else if (c == '\\')
        want += "\\\\";
      else if (c == '\n')
        want += "\\n";
      else if (c == '\t')
        want += "\\t";
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        want += buf;
      } else {
        want.append(piece);  // plain ASCII, or a whole UTF-8 sequence
      }
    }
    want += "\"";
    std::string got;
    append_json_string(got, text);
    CHECK(got == want);
  }
}

TEST_CASE("the object writer builds flat objects") {
  json_object_writer w;
  CHECK(w.finish() == "{}");
  w.add("a", "x").add("n", std::int64_t{-7}).add("b", true).add_null("z").add_raw("r", "[1]");
  const auto j = nlohmann::json::parse(w.finish());
  CHECK(j["a"] == "x");
  CHECK(j["n"] == -7);
  CHECK(j["b"] == true);
  CHECK(j["z"].is_null());
  CHECK(j["r"] == nlohmann::json::array({1}));
}

TEST_CASE("the array writer builds arrays of strings, integers and nested values") {
  json_array_writer empty;
  CHECK(empty.finish() == "[]");
  CHECK(empty.empty());
  json_array_writer one;
  one.add(std::int64_t{-9223372036854775807 - 1});
  CHECK(one.finish() == "[-9223372036854775808]");
  json_object_writer obj;
  obj.add("k", "v");
  json_array_writer w;
  w.add("a\"b").add(3).add(7u).add_raw(obj.finish()).add_raw(one.finish());
  CHECK_FALSE(w.empty());
  const auto j = nlohmann::json::parse(w.finish());
  REQUIRE(j.size() == 5);
  CHECK(j[0] == "a\"b");
  CHECK(j[1] == 3);
  CHECK(j[2] == 7);
  CHECK(j[3]["k"] == "v");
  CHECK(j[4][0] == std::numeric_limits<std::int64_t>::min());
}
