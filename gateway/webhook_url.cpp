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

namespace {

using v4_bytes = boost::asio::ip::address_v4::bytes_type;

std::optional<std::string_view> v4_reason(const v4_bytes& b) {
  const unsigned a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
  if (a0 == 169 && a1 == 254 && a2 == 169 && a3 == 254) return "cloud metadata";
  if (a0 == 0) return "unspecified";                        // 0.0.0.0/8
  if (a0 == 127) return "loopback";                         // 127.0.0.0/8
  if (a0 == 10) return "private";                           // 10.0.0.0/8
  if (a0 == 172 && (a1 & 0xf0) == 16) return "private";     // 172.16.0.0/12
  if (a0 == 192 && a1 == 168) return "private";             // 192.168.0.0/16
  if (a0 == 169 && a1 == 254) return "link-local";          // 169.254.0.0/16
  if (a0 == 100 && (a1 & 0xc0) == 64) return "shared (carrier-grade NAT)";  // 100.64.0.0/10
  if (a0 == 192 && a1 == 0 && a2 == 0) return "reserved";   // 192.0.0.0/24 (IETF)
  if (a0 == 198 && (a1 & 0xfe) == 18) return "reserved";    // 198.18.0.0/15 (benchmarks)
  if ((a0 == 192 && a1 == 0 && a2 == 2) || (a0 == 198 && a1 == 51 && a2 == 100) ||
      (a0 == 203 && a1 == 0 && a2 == 113)) {
    return "documentation";
  }
  if (a0 >= 224 && a0 <= 239) return "multicast";  // 224.0.0.0/4
  if (a0 >= 240) return "reserved";                // 240.0.0.0/4 and broadcast
  return std::nullopt;
}

}  // namespace

std::optional<std::string_view> non_public_reason(const boost::asio::ip::address& address) {
  if (address.is_v4()) return v4_reason(address.to_v4().to_bytes());
  const auto b = address.to_v6().to_bytes();
  auto zero = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      if (b[i] != 0) return false;
    }
    return true;
  };
  auto embedded = [&](int at) { return v4_bytes{b[at], b[at + 1], b[at + 2], b[at + 3]}; };
  if (zero(0, 16)) return "unspecified";                               // ::
  if (zero(0, 15) && b[15] == 1) return "loopback";                    // ::1
  if (zero(0, 10) && b[10] == 0xff && b[11] == 0xff) return v4_reason(embedded(12));  // ::ffff:v4
  if (zero(0, 12)) return v4_reason(embedded(12));                     // ::v4 (deprecated)
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(4, 12)) {
    return v4_reason(embedded(12));                                    // 64:ff9b::/96 NAT64
  }
  if (b[0] == 0x20 && b[1] == 0x02) return v4_reason(embedded(2));    // 2002::/16 6to4
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00) {
    return "reserved";                                                 // 2001::/32 Teredo
  }
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return "documentation";
  if (b[0] == 0xfd && b[1] == 0x00 && b[2] == 0x0e && b[3] == 0xc2 && zero(4, 14) &&
      b[14] == 0x02 && b[15] == 0x54) {
    return "cloud metadata";                                           // fd00:ec2::254
  }
  if ((b[0] & 0xfe) == 0xfc) return "private";                         // fc00::/7
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";      // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "private";         // fec0::/10 site-local
  if (b[0] == 0xff) return "multicast";                                // ff00::/8
  if (b[0] == 0x01 && b[1] == 0x00 && zero(2, 8)) return "reserved";   // 100::/64 discard
  return std::nullopt;
}

}  // namespace tollgate::gateway
