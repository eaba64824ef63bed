// Webhook addresses: see webhook_url.hpp.
#include "gateway/webhook_url.hpp"

#include <charconv>

namespace tollgate::gateway {

std::optional<webhook_target> parse_webhook_url(std::string_view url) {
  constexpr std::string_view http = "http://";
  constexpr std::string_view https = "https://";
  if (url.size() > 2048) return std::nullopt;
  webhook_target t;
  if (url.substr(0, http.size()) == http) {
    url.remove_prefix(http.size());
  } else if (url.substr(0, https.size()) == https) {
    url.remove_prefix(https.size());
    t.tls = true;
    t.port = 443;
  } else {
    return std::nullopt;
  }
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  t.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.find('@') != std::string_view::npos) return std::nullopt;  // no credentials
  if (const std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      return std::nullopt;
    }
    t.port = static_cast<std::uint16_t>(value);
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return std::nullopt;
  for (char c : authority) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
    if (!ok) return std::nullopt;
  }
  for (char c : t.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  }
  t.host = std::string(authority);
  return t;
}

}  // namespace tollgate::gateway
