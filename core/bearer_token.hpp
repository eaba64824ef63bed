// The one parser of `Authorization: Bearer <token>`, shared by API key authentication and the
// admin and finance APIs.
#pragma once
#include <optional>
#include <string_view>

namespace tollgate::http {

// The token of an `Authorization: Bearer <token>` header: the scheme matched without regard to
// case (RFC 7235), the spaces around the token dropped. nullopt when the header is of another
// scheme or carries no token.
inline std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size() || authorization[scheme.size()] != ' ') {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i]) return std::nullopt;
  }
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

}  // namespace tollgate::http
