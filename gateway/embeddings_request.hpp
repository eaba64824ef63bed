// POST /v1/embeddings: parsing and validation of the request, and the count of its inputs with
// the model's tokenizer. An embeddings request has no output: its worst case is its input
// tokens, each input within the model's context and all of them within
// limits::embedding_request_tokens_max. Never streamed.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/error.hpp"
#include "gateway/openai_request.hpp"
#include "metering/prompt_count.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {

// `input`: a non-empty string, an array of token ids (one input), or an array of at most
// limits.prompts_max inputs, each a non-empty string or a non-empty array of token ids (never
// both kinds of entry in one array); token ids are non-negative integers. `encoding_format`
// "float" or "base64", `dimensions` an integer >= 1, `user` and `metadata` as for chat,
// `stream` absent or false. max_tokens is 0.
result<completion_request> parse_embeddings_request(std::string_view body,
                                                    const request_limits& limits);

// The tokens of each input of a validated request, in order: a string by the tokenizer, an
// array of token ids one token per id.
void count_embedding_inputs(const metering::prompt_counter& counter, json::value request,
                            std::vector<std::int64_t>& out);

// The request's worst case (its inputs' tokens, no output), or the 400 for an input longer than
// the model's context or inputs over limits::embedding_request_tokens_max together.
result<metering::worst_case_tokens> embeddings_worst_case(const model_config& model,
                                                          std::span<const std::int64_t> inputs);

}  // namespace tollgate::gateway
