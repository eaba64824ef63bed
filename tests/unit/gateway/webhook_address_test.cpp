// Unit tests of the webhook target check: every non-public IPv4 and IPv6 range (and the IPv6
// forms that carry an IPv4 address) is refused with its reason; public addresses pass.
#include <catch2/catch.hpp>

#include "gateway/webhook_url.hpp"

using tollgate::gateway::non_public_reason;

namespace {

std::string reason(const char* text) {
  const auto why = non_public_reason(boost::asio::ip::make_address(text));
  return why ? std::string(*why) : std::string("public");
}

}  // namespace

TEST_CASE("webhook targets: IPv4 ranges", "[webhook_address]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"169.254.169.254", "cloud metadata"},
      {"0.0.0.0", "unspecified"},           {"0.255.255.255", "unspecified"},
      {"127.0.0.1", "loopback"},            {"127.255.255.254", "loopback"},
      {"10.0.0.1", "private"},              {"10.255.255.255", "private"},
      {"172.16.0.1", "private"},            {"172.31.255.255", "private"},
      {"192.168.0.1", "private"},           {"192.168.255.255", "private"},
      {"169.254.0.1", "link-local"},        {"169.254.255.255", "link-local"},
      {"100.64.0.1", "shared (carrier-grade NAT)"},
      {"100.127.255.255", "shared (carrier-grade NAT)"},
      {"192.0.0.8", "reserved"},            {"198.18.0.1", "reserved"},
      {"198.19.255.255", "reserved"},       {"192.0.2.1", "documentation"},
      {"198.51.100.7", "documentation"},    {"203.0.113.9", "documentation"},
      {"224.0.0.1", "multicast"},           {"239.255.255.255", "multicast"},
      {"240.0.0.1", "reserved"},            {"255.255.255.255", "reserved"},
      // Just outside each range: public.
      {"1.1.1.1", "public"},                {"8.8.8.8", "public"},
      {"11.0.0.1", "public"},               {"9.255.255.255", "public"},
      {"126.255.255.255", "public"},        {"128.0.0.1", "public"},
      {"172.15.255.255", "public"},         {"172.32.0.1", "public"},
      {"192.167.255.255", "public"},        {"192.169.0.1", "public"},
      {"169.253.255.255", "public"},        {"169.255.0.1", "public"},
      {"100.63.255.255", "public"},         {"100.128.0.1", "public"},
      {"198.17.255.255", "public"},         {"198.20.0.1", "public"},
      {"223.255.255.255", "public"},        {"192.0.1.1", "public"},
      {"1.0.0.0", "public"},
  };
  for (const auto& [address, expected] : cases) {
    INFO(address);
    CHECK(reason(address) == expected);
  }
}

TEST_CASE("webhook targets: IPv6 ranges and IPv4 inside IPv6", "[webhook_address]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"::", "unspecified"},
      {"::1", "loopback"},
      {"fd00:ec2::254", "cloud metadata"},
      {"fd00:ec2::253", "private"},
      {"fc00::1", "private"},
      {"fdff:ffff::1", "private"},
      {"fe80::1", "link-local"},
      {"febf:ffff::1", "link-local"},
      {"fec0::1", "private"},
      {"ff02::1", "multicast"},
      {"100::1", "reserved"},
      {"2001:db8::1", "documentation"},
      {"2001:0:4136:e378::1", "reserved"},  // Teredo
      // IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms: judged by the IPv4 inside.
      {"::ffff:127.0.0.1", "loopback"},
      {"::ffff:169.254.169.254", "cloud metadata"},
      {"::ffff:10.1.2.3", "private"},
      {"::ffff:100.64.1.1", "shared (carrier-grade NAT)"},
      {"::ffff:0.0.0.0", "unspecified"},
      {"::ffff:8.8.8.8", "public"},
      {"::127.0.0.1", "loopback"},
      {"::8.8.8.8", "public"},
      {"64:ff9b::169.254.169.254", "cloud metadata"},
      {"64:ff9b::7f00:1", "loopback"},
      {"64:ff9b::808:808", "public"},
      {"2002:7f00:1::1", "loopback"},
      {"2002:c0a8:101::1", "private"},
      {"2002:808:808::1", "public"},
      // Public unicast.
      {"2606:4700:4700::1111", "public"},
      {"2a00:1450:4001:80b::200e", "public"},
      {"fbff::1", "public"},
      {"::2", "unspecified"},  // ::0.0.0.2 (IPv4-compatible form of 0.0.0.2)
  };
  for (const auto& [address, expected] : cases) {
    INFO(address);
    CHECK(reason(address) == expected);
  }
}
