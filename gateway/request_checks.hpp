// The checks every OpenAI request parser shares (chat, completions, embeddings, responses):
// the strict JSON body, OpenAI's wording for wrong types and missing parameters, integer
// ranges, and the attribution members `user` and `metadata`.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/json_dom.hpp"
#include "metering/attribution.hpp"

namespace tollgate::gateway {

// A member that is absent or JSON null counts as not given, as in OpenAI's API.
inline bool given(json::value v) {
  return v.valid() && !v.is_null();
}

std::string type_name(json::value v);  // "a string", "an integer", ...
api_error invalid_type(const std::string& param, const char* expected, json::value got);
api_error missing(const std::string& param);

// The body as a JSON object with no top-level member named twice (the gateway and the
// upstream must not read different models or options out of one body), or the 400.
result<std::shared_ptr<const json::document>> parse_request_body(std::string_view body);

// The required string `model`, or the 400.
result<std::string> required_model(json::value body);

// An integer parameter in [1, max] into `out` (left alone when not given), or the error
// naming it.
std::optional<api_error> check_count(json::value v, const char* key, std::int64_t max,
                                     std::int64_t& out);

// OpenAI's `user` (the end user) and `metadata` (tags), both optional.
std::optional<api_error> parse_user_and_metadata(json::value body, std::string& end_user,
                                                 metering::tag_set& tags);

}  // namespace tollgate::gateway
