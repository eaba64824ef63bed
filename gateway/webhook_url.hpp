// Webhook addresses: the http:// and https:// URLs budget alerts are POSTed to
// (gateway/alert_dispatcher),
// checked when an admin sets one and parsed again for each delivery.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::gateway {

struct webhook_target {
  bool tls = false;  // https://
  std::string host;
  std::uint16_t port = 80;  // 80 for http://, 443 for https:// unless given
  std::string target;  // path and query, "/" at least
};

// An http:// or https:// URL of at most 2,048 bytes with a host name or IPv4 address (letters, digits, dots
// and dashes), an optional port 1..65535 and a path without spaces or control bytes; no
// credentials. nullopt for anything else.
std::optional<webhook_target> parse_webhook_url(std::string_view url);

}  // namespace tollgate::gateway
