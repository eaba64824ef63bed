// Prompt counting and the worst case, per endpoint: see request_count.hpp.
#include "gateway/request_count.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "gateway/embeddings_request.hpp"
#include "gateway/responses_request.hpp"

namespace tollgate::gateway {
namespace {

// A chat or completion request's worst case under the model's context, or the 400 for a
// prompt that cannot fit (OpenAI's wording for the same refusal).
result<metering::worst_case_tokens> completion_worst_case(const model_config& model,
                                                          const completion_request& req,
                                                          std::span<const std::int64_t> prompts) {
  metering::worst_case_request w;
  w.prompt_tokens = prompts;
  w.max_tokens = req.max_tokens;
  w.copies = std::max(req.n, req.best_of);
  w.context_tokens = static_cast<std::int64_t>(model.context_tokens);
  std::size_t at = 0;
  if (auto worst = metering::worst_case_of(w, &at)) return *worst;
  const std::int64_t prompt = prompts[at];
  const std::string where = prompts.size() > 1 ? "prompt " + std::to_string(at) : "the messages";
  std::string message = "This model's maximum context length is " +
                        std::to_string(model.context_tokens) + " tokens. However, you requested ";
  if (req.max_tokens >= 0) {
    const __int128 total = static_cast<__int128>(prompt) + req.max_tokens;
    message += std::to_string(static_cast<std::uint64_t>(total)) + " tokens (" +
               std::to_string(prompt) + " in " + where + ", " + std::to_string(req.max_tokens) +
               " in the completion).";
  } else {
    message += std::to_string(prompt) + " tokens in " + where + ".";
  }
  message += " Please reduce the length of the messages or completion.";
  return invalid_request(std::move(message), req.max_tokens >= 0 ? "max_tokens" : "messages",
                         "context_length_exceeded");
}

}  // namespace

result<metering::worst_case_tokens> count_request(const model_config& model,
                                                  const metering::prompt_counter& counter,
                                                  const completion_request& req,
                                                  std::int64_t& counted_prompt_tokens) {
  const json::value body = req.body->root();
  thread_local std::vector<std::int64_t> prompts;
  prompts.clear();
  switch (req.kind) {
    case endpoint_kind::chat_completions:
      prompts.push_back(counter.count_chat(body));
      break;
    case endpoint_kind::completions:
      counter.count_completion_prompts(body, prompts);
      break;
    case endpoint_kind::embeddings:
      count_embedding_inputs(counter, body, prompts);
      break;
    case endpoint_kind::responses:
      prompts.push_back(count_responses_prompt(counter, body));
      break;
  }
  std::int64_t counted = 0;
  for (const std::int64_t p : prompts) counted = metering::saturating_add(counted, p);
  counted_prompt_tokens = counted;
  if (req.kind == endpoint_kind::embeddings) return embeddings_worst_case(model, prompts);
  if (req.kind == endpoint_kind::responses) return responses_worst_case(model, req, counted);
  return completion_worst_case(model, req, prompts);
}

}  // namespace tollgate::gateway
