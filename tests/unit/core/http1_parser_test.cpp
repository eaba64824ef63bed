// The strict HTTP/1.1 request parser: heads parsed in place, framing decided once, smuggling
// shapes refused, chunked bodies decoded however the bytes arrive.
#include <catch2/catch.hpp>
#include <string>

#include "core/http1_parser.hpp"

using namespace tollgate::http1;

namespace {

constexpr std::size_t limit = 8192;

outcome head_of(std::string_view text, request_head& head) {
  return parse_head(text, limit, head).result;
}

outcome head_of(std::string_view text) {
  request_head head;
  return head_of(text, head);
}

// Feeds `wire` to a decoder `step` bytes at a time (the unconsumed rest carried over, as the
// server does); the outcome, with the body and the bytes left after the body.
struct decoded {
  outcome result;
  std::string body;
  std::string rest;
};
decoded decode(std::string_view wire, std::size_t step, std::uint64_t body_limit = 1 << 20) {
  chunked_decoder d{body_limit};
  decoded out{outcome::need_more, {}, {}};
  std::string pending;
  for (std::size_t i = 0; i < wire.size(); i += step) {
    pending += wire.substr(i, step);
    const parse_result r = d.feed(pending, out.body);
    if (r.result == outcome::bad_request || r.result == outcome::body_too_large) {
      out.result = r.result;
      return out;
    }
    pending.erase(0, r.consumed);
    if (r.result == outcome::done) {
      out.result = outcome::done;
      out.rest = pending + std::string(wire.substr(std::min(wire.size(), i + step)));
      return out;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("http1: a request head is parsed in place") {
  const std::string text =
      "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
      "Authorization:   Bearer tg-abc  \r\nContent-Length: 12\r\n\r\n{\"a\":1}rest";
  request_head head;
  const parse_result r = parse_head(text, limit, head);
  REQUIRE(r.result == outcome::done);
  CHECK(text.substr(r.consumed) == "{\"a\":1}rest");
  CHECK(head.method == "POST");
  CHECK(head.target == "/v1/chat/completions?x=1");
  CHECK(head.version == 11);
  CHECK(head.field_count == 4);
  CHECK(head.find("authorization") == "Bearer tg-abc");
  CHECK(head.find("CONTENT-TYPE") == "application/json");
  CHECK(head.find("x-missing").empty());
  CHECK(head.has_content_length);
  CHECK(head.content_length == 12);
  CHECK_FALSE(head.chunked);
  CHECK(head.keep_alive);
  CHECK_FALSE(head.expect_continue);
  CHECK(head.method.data() == text.data());  // a view, not a copy
}

TEST_CASE("http1: keep-alive, HTTP/1.0, Expect and leading empty lines") {
  request_head head;
  REQUIRE(head_of("GET / HTTP/1.0\r\n\r\n", head) == outcome::done);
  CHECK_FALSE(head.keep_alive);
  REQUIRE(head_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", head) == outcome::done);
  CHECK(head.keep_alive);
  REQUIRE(head_of("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n", head) == outcome::done);
  CHECK_FALSE(head.keep_alive);
  REQUIRE(head_of("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", head) ==
          outcome::done);
  CHECK(head.expect_continue);
  REQUIRE(head_of("\r\n\r\nGET /x HTTP/1.1\r\n\r\n", head) == outcome::done);
  CHECK(head.target == "/x");
}

TEST_CASE("http1: an incomplete head asks for more, up to the limit") {
  const std::string full = "GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n";
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO(n);
    CHECK(head_of(full.substr(0, n)) == outcome::need_more);
  }
  CHECK(head_of(full) == outcome::done);
  const std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(limit, 'a') + "\r\n\r\n";
  CHECK(head_of(big) == outcome::head_too_large);
  CHECK(head_of(big.substr(0, limit - 10)) == outcome::need_more);
  std::string many = "GET / HTTP/1.1\r\n";
  for (std::size_t i = 0; i <= header_fields_max; ++i) many += "X-F: 1\r\n";
  CHECK(head_of(many + "\r\n") == outcome::head_too_large);
}

TEST_CASE("http1: malformed heads are refused") {
  for (const char* text : {
           "GET / HTTP/1.1\n\n",                           // bare LF
           "GET / HTTP/1.1\r\nHost: a\n\r\n",              // bare LF in a field
           "GET  / HTTP/1.1\r\n\r\n",                      // two spaces
           "GET / HTTP/2.0\r\n\r\n",                       // not HTTP/1.x
           "GET / http/1.1\r\n\r\n",                       // version is case-sensitive
           "G(T / HTTP/1.1\r\n\r\n",                       // method not a token
           "GET /a b HTTP/1.1\r\n\r\n",                    // space in the target
           "GET /\x01 HTTP/1.1\r\n\r\n",                   // control character in the target
           "GET / HTTP/1.1\r\nHost : a\r\n\r\n",           // whitespace before the colon
           "GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",  // obs-fold
           "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
           "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
           "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",  // control character in a value
           "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",    // bare CR in a value
           "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
       }) {
    INFO(text);
    request_head head;
    CHECK(head_of(text, head) == outcome::bad_request);
    CHECK_FALSE(head.error.empty());
  }
}

TEST_CASE("http1: ambiguous framing (request smuggling) is refused") {
  for (const char* text : {
           "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
           "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
           "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
           "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
       }) {
    INFO(text);
    CHECK(head_of(text) == outcome::bad_request);
  }
  request_head head;
  REQUIRE(head_of("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", head) == outcome::done);
  CHECK(head.chunked);
  CHECK_FALSE(head.has_content_length);
}

TEST_CASE("http1: chunked bodies decode the same however the bytes arrive") {
  const std::string wire =
      "5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
  for (std::size_t step = 1; step <= wire.size(); ++step) {
    INFO(step);
    const decoded d = decode(wire, step);
    REQUIRE(d.result == outcome::done);
    CHECK(d.body == "hello 0123456789");
    CHECK(d.rest == "NEXT");
  }
  CHECK(decode("0\r\n\r\n", 1).body.empty());
  CHECK(decode("0\r\n\r\n", 3).result == outcome::done);
}

TEST_CASE("http1: bad chunk framing and oversized chunked bodies are refused") {
  for (const char* wire : {
           "g\r\nx\r\n0\r\n\r\n",       // not hex
           "\r\n",                      // no size
           "-1\r\n",                    // sign
           " 5\r\nhello\r\n0\r\n\r\n",  // leading whitespace
           "5 \r\nhello\r\n0\r\n\r\n",  // trailing whitespace
           "5\nhello\r\n0\r\n\r\n",     // bare LF after the size
           "5\r\nhelloX\r\n0\r\n\r\n",  // data longer than its size
           "5\r\nhello\n0\r\n\r\n",     // bare LF after the data
           "1000000000000000\r\n",      // 16 hex digits: past any sane size
           "0\r\nX-T: a\n\r\n",         // bare LF in a trailer
           "0\r\nno colon\r\n\r\n",     // trailer without a colon
           "0\r\n\r\r",                 // bad final line
       }) {
    INFO(wire);
    CHECK(decode(wire, 1).result == outcome::bad_request);
    CHECK(decode(wire, 64).result == outcome::bad_request);
  }
  const std::string ext =
      "1;" + std::string(chunk_extension_bytes_max + 1, 'e') + "\r\nx\r\n0\r\n\r\n";
  CHECK(decode(ext, 7).result == outcome::bad_request);
  CHECK(decode("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 4, 9).result == outcome::body_too_large);
  CHECK(decode("5\r\nhello\r\n4\r\nworl\r\n0\r\n\r\n", 4, 9).result == outcome::done);
  CHECK(decode("fffffffffffffff\r\n", 64).result == outcome::body_too_large);
}
