// POST /v1/responses (OpenAI's Responses API): parsing and validation of the request, the count
// of its prompt with the model's tokenizer, its worst case, and where a streamed event carries
// usage. The prompt (`instructions` and `input`) is counted as the equivalent chat request
// would be: each message as a chat message (its text parts), other input items as messages of
// their text, function tools as chat tools; so the model's prompt format (OpenAI rule or chat
// template) applies as it does for chat.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/error.hpp"
#include "gateway/openai_request.hpp"
#include "metering/prompt_count.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {

// `input`: a string or an array of input items (objects; a message has a `role` of user,
// assistant, system or developer and `content`, a string or an array of parts, each an object
// with a string `type`); required unless `previous_response_id`, `conversation` or `prompt`
// give the context. `instructions` a string; `max_output_tokens` an integer >= 1 (max_tokens);
// `stream` a boolean, `stream_options` an object only with it; `tools` an array; `background`
// not true (a background response finishes after the request: the gateway could not meter
// it); `user` and `metadata` as for chat. Context the gateway cannot count
// (previous_response_id, conversation, prompt, item_reference items, images, files, audio,
// encrypted reasoning) sets context_hold. client_wants_usage is always true.
result<completion_request> parse_responses_request(std::string_view body);

// The chat request equivalent to a validated Responses request, as JSON text:
// {"messages":[...],"tools":[...]} (what count_responses_prompt counts).
std::string chat_equivalent(json::value request);

// The prompt tokens of a validated Responses request (instructions, input and function tools).
std::int64_t count_responses_prompt(const metering::prompt_counter& counter, json::value request);

// The worst case of a Responses request whose prompt counts `prompt_tokens`: prompt +
// max_output_tokens (without it, the rest of the context) within the model's context, or the
// 400 context_length_exceeded. A context_hold request holds the whole context: its output at
// most max_output_tokens (or the rest of the context) and the prompt the rest.
result<metering::worst_case_tokens> responses_worst_case(const model_config& model,
                                                         const completion_request& req,
                                                         std::int64_t prompt_tokens);

// The usage object a streamed event carries, if any (invalid otherwise): a chat or completion
// chunk's `usage`, or a Responses event's `response.usage` (response.completed, .incomplete,
// .failed).
json::value stream_event_usage(json::value event);

}  // namespace tollgate::gateway
