// OpenAI-shaped API errors: serialization and the common constructors.
#include "core/error.hpp"

#include "core/json_text.hpp"

namespace tollgate {

std::string api_error::to_json() const {
  std::string out = "{\"error\":{\"message\":";
  append_json_string(out, message);
  out += ",\"type\":";
  append_json_string(out, type);
  out += ",\"param\":";
  if (param.empty()) {
    out += "null";
  } else {
    append_json_string(out, param);
  }
  out += ",\"code\":";
  if (code.empty()) {
    out += "null";
  } else {
    append_json_string(out, code);
  }
  out += "}}";
  return out;
}

api_error invalid_request(std::string message, std::string param, std::string code) {
  return {400, "invalid_request_error", std::move(message), std::move(param), std::move(code)};
}

api_error not_found_error(std::string message, std::string code) {
  return {404, "invalid_request_error", std::move(message), {}, std::move(code)};
}

api_error unauthorized_error(std::string message, std::string code) {
  return {401, "invalid_request_error", std::move(message), {}, std::move(code)};
}

api_error forbidden_error(std::string message, std::string code) {
  return {403, "invalid_request_error", std::move(message), {}, std::move(code)};
}

api_error method_not_allowed(std::string message) {
  return {405, "invalid_request_error", std::move(message), {}, "method_not_allowed"};
}

api_error request_too_large(std::uint64_t limit_bytes) {
  return {413,
          "invalid_request_error",
          "Request body too large: the limit is " + std::to_string(limit_bytes) + " bytes.",
          {},
          "request_too_large"};
}

api_error upstream_unavailable(std::string message) {
  return {502, "upstream_error", std::move(message), {}, "upstream_unavailable"};
}

api_error upstream_timeout(std::string message) {
  return {504, "upstream_error", std::move(message), {}, "upstream_timeout"};
}

api_error internal_error(std::string message) {
  return {500, "api_error", std::move(message), {}, "internal_error"};
}

api_error service_unavailable(std::string message, std::string code, std::int64_t retry_after_s) {
  api_error e{503, "api_error", std::move(message), {}, std::move(code)};
  e.retry_after_s = retry_after_s;
  return e;
}

}  // namespace tollgate
