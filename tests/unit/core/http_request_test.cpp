// The handlers' request (a parsed head copied once, fields found without case) and the
// response fields written as wire text.
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "core/http1_parser.hpp"
#include "core/http_request.hpp"
#include "core/http_server.hpp"

using namespace tollgate;
namespace bhttp = boost::beast::http;

namespace {

http::request parsed(std::string wire) {
  http1::request_head head;
  const auto r = http1::parse_head(wire, 8192, head);
  REQUIRE(r.result == http1::outcome::done);
  http::request req{head};
  // The head's views point into `wire`: the request must not.
  std::fill(wire.begin(), wire.end(), 'x');
  return req;
}

}  // namespace

TEST_CASE("a request copies its head: method, target, version and fields outlive the buffer") {
  const http::request req = parsed(
      "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tg_abc\r\n"
      "X-Client-Request-Id: first\r\nx-client-request-id: second\r\nContent-Length: 0\r\n\r\n");
  CHECK(req.method() == bhttp::verb::post);
  CHECK(req.method_string() == "POST");
  CHECK(req.target() == "/v1/chat/completions?x=1");
  CHECK(req.version() == 11);
  CHECK(req.body().empty());
  // Names compare without case; the first of two is the one found.
  CHECK(req["authorization"] == "Bearer tg_abc");
  CHECK(req[bhttp::field::authorization] == "Bearer tg_abc");
  CHECK(req["X-CLIENT-REQUEST-ID"] == "first");
  CHECK(req[bhttp::field::host] == "gw");
  // A missing field, and names that differ only past a prefix or in length.
  CHECK(req["x-request-id"].empty());
  CHECK(req["Authorizatio"].empty());
  CHECK(req["Authorization2"].empty());
  const auto fields = req.fields();
  REQUIRE(fields.size() == 5);
  CHECK(fields[2].first == "X-Client-Request-Id");
  CHECK(fields[3].second == "second");
}

TEST_CASE("a request's method: a known verb, or unknown with its text kept") {
  CHECK(parsed("GET / HTTP/1.0\r\n\r\n").version() == 10);
  const http::request odd = parsed("PURGE /x HTTP/1.1\r\n\r\n");
  CHECK(odd.method() == bhttp::verb::purge);
  const http::request unknown = parsed("BREW /pot HTTP/1.1\r\n\r\n");
  CHECK(unknown.method() == bhttp::verb::unknown);
  CHECK(unknown.method_string() == "BREW");
}

TEST_CASE("a request built by hand: set adds a field or replaces those of its name") {
  http::request req{bhttp::verb::get, "/admin/v1/tenants", 11};
  CHECK(req.method_string() == "GET");
  CHECK(req.target() == "/admin/v1/tenants");
  req.set(bhttp::field::cookie, "a=1");
  req.set("x-csrf-token", "t1");
  req.set("COOKIE", "b=2");
  CHECK(req[bhttp::field::cookie] == "b=2");
  CHECK(req["X-Csrf-Token"] == "t1");
  CHECK(req.fields().size() == 2);
  req.body() = "{}";
  CHECK(req.body() == "{}");
}

TEST_CASE("response fields are written as wire text; a field that could end the head is not") {
  http::response_fields fields;
  fields.add("Content-Type", "application/json").add("x-request-id", "req_1");
  CHECK(fields.text() == "Content-Type: application/json\r\nx-request-id: req_1\r\n");
  http::response_fields refused;
  refused.add("x-a", "one\r\nInjected: yes");
  refused.add("x-b", "line\nbreak");
  refused.add("x-c", std::string_view("nul\0byte", 8));
  refused.add("bad name", "v");
  refused.add("colon:name", "v");
  refused.add("", "v");
  refused.add("x-\x7f", "v");
  CHECK(refused.text().empty());
  // Values may be empty or hold spaces, tabs and non-ASCII bytes.
  http::response_fields kept;
  kept.add("x-empty", "").add("x-text", "a b\tc \xC3\xA9");
  CHECK(kept.text() == "x-empty: \r\nx-text: a b\tc \xC3\xA9\r\n");
  // CR, LF or NUL refuses a value wherever it stands (the check reads eight bytes at a time);
  // every other byte is kept.
  for (int c = 0; c < 256; ++c) {
    for (std::size_t at = 0; at < 19; ++at) {
      std::string value(19, 'v');
      value[at] = static_cast<char>(c);
      http::response_fields one;
      one.add("x-v", value);
      INFO("byte " << c << " at " << at);
      if (c == '\r' || c == '\n' || c == 0) {
        CHECK(one.text().empty());
      } else {
        CHECK(one.text() == "x-v: " + value + "\r\n");
      }
    }
  }
  // Random values with several such bytes, and their neighbours, in a word.
  const unsigned char alphabet[] = {0, '\r', '\n', '\t', 0x0b, ' ', 'a', 0x80, 0xff};
  std::mt19937 rng(11);
  for (int round = 0; round < 5000; ++round) {
    std::string value(rng() % 41, '\0');
    for (auto& c : value) c = static_cast<char>(alphabet[rng() % sizeof alphabet]);
    const bool breaks = value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos;
    http::response_fields one;
    one.add("x-v", value);
    CHECK(one.text().empty() == breaks);
  }
}
