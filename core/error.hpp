// API errors as values, in the OpenAI error shape:
//   {"error":{"message":...,"type":...,"param":...,"code":...}}
// Every stage of the request path returns either its result or one of these; nothing on the
// data plane throws.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace tollgate {

struct api_error {
  unsigned status = 500;  // HTTP status to answer with
  std::string type;       // invalid_request_error, authentication_error, api_error, ...
  std::string message;    // human-readable, says what to fix
  std::string param;      // offending parameter; empty serializes as null
  std::string code;       // machine-readable code; empty serializes as null
  std::int64_t retry_after_s = 0;  // > 0: answered with a Retry-After header (429, 503)

  std::string to_json() const;
};

// Constructors for the errors the gateway answers with.
api_error invalid_request(std::string message, std::string param = {}, std::string code = {});
api_error not_found_error(std::string message, std::string code = {});
// 401: missing or wrong credentials (an API key, the admin or finance token).
api_error unauthorized_error(std::string message, std::string code = "invalid_api_key");
// 403: the credentials are good but may not do this (the read-only finance token).
api_error forbidden_error(std::string message, std::string code = "insufficient_permissions");
api_error method_not_allowed(std::string message);
api_error request_too_large(std::uint64_t limit_bytes);
api_error upstream_unavailable(std::string message);
api_error upstream_timeout(std::string message);
api_error internal_error(std::string message);
// 503: a dependency (database, Redis, the ledger) cannot take the request now; retry later.
api_error service_unavailable(std::string message, std::string code = "service_unavailable",
                              std::int64_t retry_after_s = 0);

// A value or an error (an api_error on the request path). Small on purpose.
template <class T, class E>
class basic_result {
 public:
  // Default: an error of E's default value (Asio's co_spawn needs default-constructible results).
  basic_result() : v_(std::in_place_index<1>) {}
  basic_result(T value) : v_(std::move(value)) {}
  basic_result(E error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

template <class T>
using result = basic_result<T, api_error>;

}  // namespace tollgate
