// The checks the OpenAI request parsers share: see request_checks.hpp. Messages follow
// OpenAI's own wording for the same mistakes, so clients see familiar errors.
#include "gateway/request_checks.hpp"

#include <algorithm>
#include <vector>

namespace tollgate::gateway {
namespace {

// The first top-level member name that appears twice, if any.
std::optional<std::string> duplicate_member(json::value object) {
  std::vector<std::string_view> names;
  object.for_each_member([&](std::string_view key, json::value) { names.push_back(key); });
  std::sort(names.begin(), names.end());
  const auto twice = std::adjacent_find(names.begin(), names.end());
  if (twice == names.end()) return std::nullopt;
  return std::string(*twice);
}

}  // namespace

std::string type_name(json::value v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::boolean:
      return "a boolean";
    case json::kind::number:
      return v.is_int64() ? "an integer" : "a decimal";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "an unknown type";
}

api_error invalid_type(const std::string& param, const char* expected, json::value got) {
  return invalid_request("Invalid type for '" + param + "': expected " + expected + ", but got " +
                             type_name(got) + " instead.",
                         param, "invalid_type");
}

api_error missing(const std::string& param) {
  return invalid_request("Missing required parameter: '" + param + "'.", param,
                         "missing_required_parameter");
}

result<std::shared_ptr<const json::document>> parse_request_body(std::string_view body) {
  // The parser rejects invalid UTF-8 and unpaired surrogate escapes, so every string that gets
  // through is valid text.
  json::parse_error parse_error;
  auto parsed = json::document::parse(body, &parse_error);
  if (!parsed) {
    return invalid_request(
        "We could not parse the JSON body of your request: " + parse_error.message + " at byte " +
        std::to_string(parse_error.offset) +
        ". The API expects a JSON payload (valid UTF-8, no unpaired surrogates).");
  }
  auto doc = std::make_shared<const json::document>(std::move(*parsed));
  const json::value j = doc->root();
  if (!j.is_object()) return invalid_type("body", "an object", j);
  if (const auto twice = duplicate_member(j)) {
    return invalid_request("The body names '" + *twice + "' more than once.", *twice,
                           "duplicate_parameter");
  }
  return doc;
}

result<std::string> required_model(json::value body) {
  const json::value model = body.find("model");
  if (!given(model)) {
    return invalid_request("You must provide a model parameter.", "model",
                           "missing_required_parameter");
  }
  if (!model.is_string()) return invalid_type("model", "a string", model);
  return std::string(model.as_string());
}

std::optional<api_error> check_count(json::value v, const char* key, std::int64_t max,
                                     std::int64_t& out) {
  if (!given(v)) return std::nullopt;
  if (!v.is_int64()) return invalid_type(key, "an integer", v);
  const std::int64_t n = v.as_int64();
  if (n < 1) {
    return invalid_request("Invalid '" + std::string(key) +
                               "': integer below minimum value. Expected a value >= 1, but got " +
                               std::to_string(n) + " instead.",
                           key, "integer_below_min_value");
  }
  if (n > max) {
    return invalid_request("Invalid '" + std::string(key) +
                               "': integer above maximum value. Expected a value <= " +
                               std::to_string(max) + ", but got " + std::to_string(n) + " instead.",
                           key, "integer_above_max_value");
  }
  out = n;
  return std::nullopt;
}

std::optional<api_error> parse_user_and_metadata(json::value body, std::string& end_user,
                                                 metering::tag_set& tags) {
  if (const json::value user = body.find("user"); given(user)) {
    if (!user.is_string()) return invalid_type("user", "a string", user);
    if (auto bad = metering::check_end_user(user.as_string())) {
      return invalid_request("Invalid 'user': it " + *bad + ".", "user", "invalid_value");
    }
    end_user = std::string(user.as_string());
  }
  if (const json::value metadata = body.find("metadata"); given(metadata)) {
    auto parsed = metering::tags_from_json(metadata);
    if (!parsed.error.empty()) {
      return invalid_request("Invalid 'metadata': it " + parsed.error + ".", "metadata",
                             "invalid_value");
    }
    tags = std::move(parsed.tags);
  }
  return std::nullopt;
}

}  // namespace tollgate::gateway
