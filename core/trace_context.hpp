// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header a request
// arrives with is checked and continued; a request without one, or with one that does not
// parse, starts a new trace. The gateway forwards a traceparent with the same trace id and its
// own span id as the parent, and the trace id goes on the usage record (ledger, log lines).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace tollgate {

struct trace_context {
  std::string trace_id;   // 32 lowercase hex digits, not all zero
  std::string parent_id;  // the caller's span: 16 lowercase hex digits, not all zero
  std::string flags;      // 2 lowercase hex digits (01: sampled)
};

// Parses a `traceparent` header value. Version 00 must be exactly 55 characters; a later
// version may carry more fields after the flags (read as version 00, as the specification
// asks). Version ff, upper-case hex, all-zero ids and anything else: nullopt.
std::optional<trace_context> parse_traceparent(std::string_view header);

// A new trace (random trace id; no parent: parent_id empty), flagged sampled.
trace_context new_trace();

// What the request's `traceparent` header says, or a new trace when it is absent or invalid.
trace_context trace_of(std::string_view header);

// The `traceparent` to send downstream: version 00, the same trace id and flags, and a new
// random span id (the gateway's own span) as the parent id.
std::string child_traceparent(const trace_context& t);

}  // namespace tollgate
