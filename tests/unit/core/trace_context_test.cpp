// W3C traceparent: valid headers are continued, every malformed kind starts a new trace, and
// the header forwarded downstream keeps the trace id with a new span id.
#include <catch2/catch.hpp>

#include "core/trace_context.hpp"

using namespace tollgate;

namespace {
const std::string good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

bool is_lower_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}
}  // namespace

TEST_CASE("traceparent: the specification's example parses") {
  const auto t = parse_traceparent(good);
  REQUIRE(t);
  CHECK(t->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(t->parent_id == "00f067aa0ba902b7");
  CHECK(t->flags == "01");
  // A later version may append fields; it is read as version 00.
  const auto future = parse_traceparent("cc" + good.substr(2) + "-what-follows");
  REQUIRE(future);
  CHECK(future->trace_id == t->trace_id);
}

TEST_CASE("traceparent: malformed headers are refused") {
  const std::string_view bad[] = {
      "",
      "00",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // short flags
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 with more
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // not hex
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    // not hex
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",    // flags not hex
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",   // later version, no dash
  };
  for (std::string_view h : bad) {
    INFO(h);
    CHECK_FALSE(parse_traceparent(h));
  }
}

TEST_CASE("traceparent: a missing or bad header starts a new trace; valid ones continue") {
  const trace_context kept = trace_of(good);
  CHECK(kept.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  const trace_context a = trace_of("");
  const trace_context b = trace_of("00-garbage");
  for (const auto& t : {a, b}) {
    CHECK(t.trace_id.size() == 32);
    CHECK(is_lower_hex(t.trace_id));
    CHECK(t.trace_id != std::string(32, '0'));
    CHECK(t.flags == "01");
  }
  CHECK(a.trace_id != b.trace_id);
}

TEST_CASE("traceparent: the child keeps the trace id and the sampled flag, with a new span") {
  const trace_context t = *parse_traceparent(good);
  const std::string c1 = child_traceparent(t);
  const std::string c2 = child_traceparent(t);
  const auto p1 = parse_traceparent(c1);
  REQUIRE(p1);
  CHECK(c1.size() == 55);
  CHECK(p1->trace_id == t.trace_id);
  CHECK(p1->parent_id != t.parent_id);
  CHECK(p1->flags == "01");
  CHECK(c1 != c2);  // a new span id each time
  // Only the sampled bit passes on; an unsampled trace stays unsampled.
  trace_context odd = t;
  odd.flags = "0b";
  CHECK(child_traceparent(odd).ends_with("-01"));
  odd.flags = "fe";
  CHECK(child_traceparent(odd).ends_with("-00"));
}
