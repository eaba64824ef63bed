// Step 3 of the request path for every endpoint: count a validated request's prompt with the
// model's tokenizer (chat: messages and tools by the model's prompt format; completions: each
// prompt; embeddings: each input; responses: instructions and input as the equivalent chat
// request) and work out its worst case within the model's context (metering/worst_case.hpp).
#pragma once
#include <cstdint>

#include "core/config.hpp"
#include "core/error.hpp"
#include "gateway/openai_request.hpp"
#include "metering/prompt_count.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {

// The worst case of `req` for `model`, or the 400 for a prompt that does not fit the model's
// context (or embeddings inputs over their limit). `counted_prompt_tokens` gets the gateway's
// count of the whole prompt (every prompt or input summed), also when the answer is a 400.
result<metering::worst_case_tokens> count_request(const model_config& model,
                                                  const metering::prompt_counter& counter,
                                                  const completion_request& req,
                                                  std::int64_t& counted_prompt_tokens);

}  // namespace tollgate::gateway
