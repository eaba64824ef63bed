// Parsing and validation of OpenAI requests (chat and legacy completions here; embeddings and
// responses in their own files, reached through parse_completion_request): the first stage of
// the request path. Invalid input becomes an OpenAI-shaped 400 naming the parameter.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json_dom.hpp"
#include "metering/attribution.hpp"

namespace tollgate::gateway {

enum class endpoint_kind { chat_completions, completions, embeddings, responses };

// "/chat/completions", "/completions", "/embeddings" or "/responses"
std::string_view endpoint_path(endpoint_kind kind);

// Bounds on what one request may ask for (settings: metering.n_max).
struct request_limits {
  std::int64_t n_max = 16;        // n and best_of
  // Entries of a legacy completion's prompt array, and inputs of one embeddings request
  // (OpenAI's limit for both).
  std::int64_t prompts_max = 2048;
};

// A validated request of any of the four endpoints: what the later stages need to know.
struct completion_request {
  endpoint_kind kind = endpoint_kind::chat_completions;
  std::string model;
  bool stream = false;
  // stream_options.include_usage as the client sent it; always true for responses (the
  // Responses API reports usage in its final event, which reaches the client untouched).
  bool client_wants_usage = false;
  // max_completion_tokens or max_tokens (responses: max_output_tokens); -1 if absent;
  // 0 for embeddings (no output).
  std::int64_t max_tokens = -1;
  std::int64_t n = 1;               // completions per prompt
  std::int64_t best_of = 1;         // completions generated per prompt (legacy completions)
  bool has_stream_options = false;  // the body has a non-null stream_options object
  bool stream_options_member = false;  // the body has a stream_options member, null included
  std::string end_user;      // OpenAI's `user` ("" if absent)
  metering::tag_set tags;    // OpenAI's `metadata`
  // The model will see context the gateway cannot count (responses: previous_response_id,
  // conversation, a stored prompt, item references, images, files or audio): the request is
  // held at the model's whole context.
  bool context_hold = false;
  // The parsed body, kept for the stages after validation (prompt counting).
  std::shared_ptr<const json::document> body;
};

// `stream` and `stream_options` of a request body into `req`: types, stream_options only with
// stream, and (`read_include_usage`) stream_options.include_usage as client_wants_usage.
std::optional<api_error> parse_stream_fields(json::value body, completion_request& req,
                                             bool read_include_usage);

// Duplicate top-level members are refused (400): the gateway and the upstream must not read
// different models or options out of one body. Embeddings and responses go to their parsers
// (embeddings_request.hpp, responses_request.hpp).
result<completion_request> parse_completion_request(endpoint_kind kind, std::string_view body,
                                                    const request_limits& limits = {});

// The attribution headers of a live request (all empty for a batch line); an empty header
// counts as absent.
struct attribution_headers {
  std::string_view end_user;  // x-tollgate-end-user
  std::string_view tags;      // x-tollgate-tags: key=value,...
  std::string_view session;   // x-tollgate-session
};

// Whom a request is for, its tags and session (metering/attribution.hpp): the end user from
// the header or else `user`; the header's tags over `metadata`'s, both over `default_tags` (the
// key's over its project's); the session from its header. A 400 names the header at fault.
result<metering::attribution> attribution_of(const completion_request& request,
                                             const attribution_headers& headers,
                                             const metering::tag_set& default_tags);

// The body to send upstream: the client's bytes when nothing needs changing; otherwise with the
// model renamed and, for streams, stream_options rewritten by the gateway (whatever the client
// sent, null included) with include_usage on, so that usage is always reported (the gateway
// strips that chunk again if the client did not ask for it).
std::string upstream_body(const completion_request& request, std::string_view original,
                          std::string_view upstream_model);

}  // namespace tollgate::gateway
