// Prompt token counting for chat and legacy completion requests: what the model sees.
//  - openai:  OpenAI's published rule for chat models (cookbook "How to count tokens with
//             tiktoken"): 3 tokens per message, each string field's tokens, +1 for `name`,
//             +3 priming the reply; tools/functions by the cookbook's num_tokens_for_tools.
//  - llama3:  the Llama 3 Instruct chat template, rendered and tokenized.
//  - chatml:  ChatML as Qwen2/Qwen3 use it (<|im_start|>role\n...<|im_end|>\n), rendered and
//             tokenized.
// Template formats render to token ids (special tokens as single ids, message text as ordinary
// text) with render_chat_prompt; the bundled backend uses the same function, so the count is the
// prompt it runs.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json_dom.hpp"
#include "metering/tokenizer.hpp"

namespace tollgate::metering {

enum class prompt_format { openai, llama3, chatml };

std::optional<prompt_format> parse_prompt_format(std::string_view name);
std::string_view prompt_format_name(prompt_format format);

class prompt_counter {
 public:
  // Fails if the tokenizer lacks the special tokens the format's template needs.
  static result<prompt_counter> make(std::shared_ptr<const tokenizer> tok, prompt_format format);

  // A validated chat request body (the object with "messages", optional "tools"/"functions").
  std::int64_t count_chat(json::value request) const;
  // A validated legacy completion body ("prompt": string, strings, token ids or arrays of them).
  std::int64_t count_completion(json::value request) const;
  // The same, prompt by prompt: a string or one array of token ids is one prompt; an array of
  // strings or of token-id arrays is one prompt per entry (one completion each).
  void count_completion_prompts(json::value request, std::vector<std::int64_t>& out) const;
  std::int64_t count_text(std::string_view text) const { return std::int64_t(tok_->count(text)); }

  // The chat prompt as token ids (llama3 and chatml formats; openai returns false: its
  // rendering is not published).
  bool render_chat(json::value messages, std::vector<token_id>& out) const;

  const tokenizer& tok() const { return *tok_; }
  prompt_format format() const { return format_; }

 private:
  prompt_counter(std::shared_ptr<const tokenizer> tok, prompt_format format)
      : tok_(std::move(tok)), format_(format) {}
  std::int64_t count_openai_chat(json::value request) const;
  std::int64_t count_openai_tools(json::value tools, bool wrapped) const;

  std::shared_ptr<const tokenizer> tok_;
  prompt_format format_;
  struct template_tokens {
    token_id begin_of_text = 0, start_header = 0, end_header = 0, end_of_turn = 0;  // llama3
    token_id im_start = 0, im_end = 0;                                              // chatml
  } special_;
};

// The text of a message's content: a string, or the text parts of a content-part array joined
// without separator; other part types (images, audio) contribute nothing.
std::string message_text(json::value content);

}  // namespace tollgate::metering
