// POST /v1/embeddings request parsing, input counting and worst case: see
// embeddings_request.hpp.
#include "gateway/embeddings_request.hpp"

#include <optional>
#include <string>

#include "core/limits.hpp"
#include "gateway/request_checks.hpp"

namespace tollgate::gateway {
namespace {

const char* const input_types =
    "a string, an array of strings, an array of token ids or an array of arrays of token ids";

std::optional<api_error> empty_input(const std::string& param) {
  return invalid_request("Invalid '" + param +
                             "': empty input. Each input must hold at least "
                             "one character or token id.",
                         param, "empty_input");
}

// A non-empty array of non-negative integer token ids, or the error naming it.
std::optional<api_error> check_token_ids(json::value ids, const std::string& param) {
  if (ids.size() == 0) return empty_input(param);
  std::optional<api_error> error;
  std::uint32_t i = 0;
  ids.for_each_element([&](json::value id) {
    if (!error && (!id.is_int64() || id.as_int64() < 0)) {
      error = invalid_request("Invalid '" + param + "[" + std::to_string(i) + "]': token ids " +
                                  "are non-negative integers, but got " + type_name(id) +
                                  (id.is_int64() ? " below 0" : "") + " instead.",
                              param, "invalid_value");
    }
    ++i;
  });
  return error;
}

std::optional<api_error> check_input(json::value input, std::int64_t inputs_max) {
  if (input.is_string()) {
    return input.as_string().empty() ? empty_input("input") : std::nullopt;
  }
  if (!input.is_array()) return invalid_type("input", input_types, input);
  if (input.size() == 0) {
    return invalid_request(
        "Invalid 'input': empty array. Expected an array with minimum length "
        "1, but got an empty array instead.",
        "input", "empty_array");
  }
  bool any_id = false, any_input = false;
  input.for_each_element([&](json::value e) {
    any_id = any_id || e.is_int64();
    any_input = any_input || !e.is_int64();
  });
  if (any_id && !any_input) return check_token_ids(input, "input");  // one input of token ids
  if (any_id) {
    return invalid_request(
        "Invalid 'input': an array holds either token ids (one input) or "
        "inputs (strings or arrays of token ids), not both.",
        "input", "invalid_value");
  }
  if (static_cast<std::int64_t>(input.size()) > inputs_max) {
    return invalid_request(
        "Invalid 'input': array too long. Expected an array with maximum "
        "length " +
            std::to_string(inputs_max) +
            ", but got an array with "
            "length " +
            std::to_string(input.size()) + " instead.",
        "input", "array_above_max_length");
  }
  std::optional<api_error> error;
  std::uint32_t i = 0;
  input.for_each_element([&](json::value e) {
    if (error) return;
    const std::string at = "input[" + std::to_string(i++) + "]";
    if (e.is_string()) {
      if (e.as_string().empty()) error = empty_input(at);
    } else if (e.is_array()) {
      error = check_token_ids(e, at);
    } else {
      error = invalid_type(at, "a string or an array of token ids", e);
    }
  });
  return error;
}

}  // namespace

result<completion_request> parse_embeddings_request(std::string_view body,
                                                    const request_limits& limits) {
  auto parsed = parse_request_body(body);
  if (!parsed) return parsed.error();
  completion_request req;
  req.kind = endpoint_kind::embeddings;
  req.body = std::move(*parsed);
  req.max_tokens = 0;
  const json::value j = req.body->root();
  auto model = required_model(j);
  if (!model) return model.error();
  req.model = std::move(*model);

  const json::value input = j.find("input");
  if (!given(input)) return missing("input");
  if (auto e = check_input(input, limits.prompts_max)) return *e;
  if (const json::value f = j.find("encoding_format"); given(f)) {
    if (!f.is_string()) return invalid_type("encoding_format", "a string", f);
    if (f.as_string() != "float" && f.as_string() != "base64") {
      return invalid_request("Invalid value: '" + std::string(f.as_string()) +
                                 "'. Supported values are: 'float' and 'base64'.",
                             "encoding_format", "invalid_value");
    }
  }
  std::int64_t dimensions = 0;
  if (auto e = check_count(j.find("dimensions"), "dimensions", INT64_MAX, dimensions)) return *e;
  if (const json::value s = j.find("stream"); given(s)) {
    if (!s.is_bool()) return invalid_type("stream", "a boolean", s);
    if (s.as_bool()) {
      return invalid_request("Embeddings are not streamed: 'stream' must be false or absent.",
                             "stream", "invalid_value");
    }
  }
  if (auto e = parse_user_and_metadata(j, req.end_user, req.tags)) return *e;
  return req;
}

void count_embedding_inputs(const metering::prompt_counter& counter, json::value request,
                            std::vector<std::int64_t>& out) {
  out.clear();
  const json::value input = request.find("input");
  if (!input.valid()) return;
  if (input.is_string()) {
    out.push_back(counter.count_text(input.as_string()));
    return;
  }
  if (!input.is_array()) return;
  bool token_ids = input.size() > 0;
  input.for_each_element([&](json::value e) { token_ids = token_ids && e.is_int64(); });
  if (token_ids) {
    out.push_back(input.size());
    return;
  }
  input.for_each_element([&](json::value e) {
    out.push_back(e.is_string()  ? counter.count_text(e.as_string())
                  : e.is_array() ? std::int64_t{e.size()}
                                 : 1);
  });
}

result<metering::worst_case_tokens> embeddings_worst_case(const model_config& model,
                                                          std::span<const std::int64_t> inputs) {
  const auto context = static_cast<std::int64_t>(model.context_tokens);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i] > context) {
      const std::string at = inputs.size() > 1 ? "input[" + std::to_string(i) + "]" : "input";
      return invalid_request("This model's maximum context length is " + std::to_string(context) +
                                 " tokens, but '" + at + "' has " + std::to_string(inputs[i]) +
                                 " tokens. Please reduce the length of the input.",
                             "input", "context_length_exceeded");
    }
    total = metering::saturating_add(total, inputs[i]);
  }
  if (total > limits::embedding_request_tokens_max) {
    return invalid_request("The inputs of one request may hold at most " +
                               std::to_string(limits::embedding_request_tokens_max) +
                               " tokens together, but these hold " + std::to_string(total) +
                               ". Please send them in several requests.",
                           "input", "max_tokens_per_request");
  }
  metering::worst_case_tokens worst;
  worst.prompt_tokens = total;
  return worst;
}

}  // namespace tollgate::gateway
