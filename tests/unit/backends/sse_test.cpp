// SSE parser: the same events whatever the chunking, line endings, comments and BOM.
#include <catch2/catch.hpp>
#include <random>

#include "backends/sse.hpp"

using namespace tollgate::backends;

namespace {

std::vector<sse_event> parse_in_chunks(const std::string& wire, std::mt19937& rng,
                                       std::size_t max_chunk) {
  sse_parser p{1 << 20};
  std::vector<sse_event> out;
  std::size_t i = 0;
  while (i < wire.size()) {
    const std::size_t n = std::min<std::size_t>(wire.size() - i, 1 + rng() % max_chunk);
    REQUIRE(p.feed(std::string_view(wire).substr(i, n), out));
    i += n;
  }
  p.finish(out);
  return out;
}

bool same(const std::vector<sse_event>& a, const std::vector<sse_event>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].data != b[i].data || a[i].event != b[i].event || a[i].id != b[i].id) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("events parse across line-ending styles, comments and multi-line data") {
  const std::string wire =
      "\xEF\xBB\xBF"
      ": keep-alive comment\r\n"
      "data: {\"a\":1}\r\n\r\n"
      "event: delta\n"
      "id: 7\n"
      "data: line one\n"
      "data:line two\n"
      "retry: 100\n\n"
      "data: cr only\r\r"
      "data\n\n"              // a field with no colon: empty data
      ": only a comment\n\n"  // no data: no event
      "data: [DONE]\n\n";
  std::mt19937 rng(1);
  const auto whole = parse_in_chunks(wire, rng, wire.size());
  REQUIRE(whole.size() == 5);
  CHECK(whole[0].data == "{\"a\":1}");
  CHECK(whole[1].event == "delta");
  CHECK(whole[1].id == "7");
  CHECK(whole[1].data == "line one\nline two");
  CHECK(whole[2].data == "cr only");
  CHECK(whole[3].data == "");
  CHECK(whole[4].data == "[DONE]");

  for (int round = 0; round < 3000; ++round) {
    const auto chunked = parse_in_chunks(wire, rng, 1 + round % 9);
    REQUIRE(same(chunked, whole));
  }
}

TEST_CASE("random event streams survive random chunking and re-serialization") {
  std::mt19937 rng(7);
  const char* endings[] = {"\n", "\r\n", "\r"};
  for (int round = 0; round < 500; ++round) {
    std::vector<sse_event> expected;
    std::string wire;
    // One line-ending style per stream: a CR followed by an LF ending would read as one CRLF.
    const char* eol = endings[rng() % 3];
    const int events = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < events; ++e) {
      sse_event ev;
      const int lines = 1 + static_cast<int>(rng() % 3);
      for (int l = 0; l < lines; ++l) {
        std::string text;
        const int len = static_cast<int>(rng() % 20);
        for (int k = 0; k < len; ++k) text.push_back(static_cast<char>('a' + rng() % 26));
        if (l > 0) ev.data.push_back('\n');
        ev.data += text;
        wire += "data: " + text + eol;
      }
      if (rng() % 4 == 0) wire += std::string(": ping") + eol;
      wire += eol;
      expected.push_back(ev);
    }
    REQUIRE(same(parse_in_chunks(wire, rng, 1 + rng() % 16), expected));

    // Our own wire form parses back to the same events.
    std::string again;
    for (const auto& ev : expected) ev.append_wire(again);
    REQUIRE(same(parse_in_chunks(again, rng, 1 + rng() % 16), expected));
  }
}

TEST_CASE("an unterminated final event is still delivered at end of stream") {
  sse_parser p{1024};
  std::vector<sse_event> out;
  REQUIRE(p.feed("data: tail", out));
  CHECK(out.empty());
  p.finish(out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].data == "tail");
}

TEST_CASE("a line over the limit fails the parser for good") {
  sse_parser p{16};
  std::vector<sse_event> out;
  CHECK(p.feed("data: 0123456789", out));
  CHECK_FALSE(p.feed("abcdef", out));
  CHECK(p.failed());
  CHECK_FALSE(p.feed("\n\n", out));
  CHECK(out.empty());
}
