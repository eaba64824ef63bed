// Webhook addresses: the http:// and https:// URLs budget alerts are POSTed to
// (gateway/alert_dispatcher),
// checked when an admin sets one and parsed again for each delivery; and the check that a
// resolved address is a public one (no loopback, private, link-local or metadata targets).
#pragma once
#include <boost/asio/ip/address.hpp>
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

// Why `address` is not a public unicast address a webhook may be delivered to ("loopback",
// "private", "link-local", "cloud metadata", "shared (carrier-grade NAT)", "unspecified",
// "multicast", "reserved", "documentation"), or nullopt for a public one. IPv4-mapped,
// IPv4-compatible, NAT64 and 6to4 IPv6 forms are judged by the IPv4 address inside.
std::optional<std::string_view> non_public_reason(const boost::asio::ip::address& address);

}  // namespace tollgate::gateway
