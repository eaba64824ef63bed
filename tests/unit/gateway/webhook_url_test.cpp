// Unit tests of webhook URL parsing: http and https, default ports, what is refused.
#include <catch2/catch.hpp>

#include "gateway/webhook_url.hpp"

using tollgate::gateway::parse_webhook_url;

TEST_CASE("webhook URLs: http and https with their default ports") {
  const auto plain = parse_webhook_url("http://hooks.example.com/budget?x=1");
  REQUIRE(plain);
  CHECK_FALSE(plain->tls);
  CHECK(plain->host == "hooks.example.com");
  CHECK(plain->port == 80);
  CHECK(plain->target == "/budget?x=1");
  const auto secure = parse_webhook_url("https://hooks.example.com");
  REQUIRE(secure);
  CHECK(secure->tls);
  CHECK(secure->port == 443);
  CHECK(secure->target == "/");
  const auto port = parse_webhook_url("https://127.0.0.1:8443/h");
  REQUIRE(port);
  CHECK(port->tls);
  CHECK(port->host == "127.0.0.1");
  CHECK(port->port == 8443);
}

TEST_CASE("webhook URLs: anything else is refused") {
  for (const char* bad :
       {"ftp://x/", "http://", "https://", "https://:443/", "http://u:p@h/", "https://h:0/",
        "https://h:65536/", "http://h/a b", "HTTP://h/", "https//h/", "http://h_x/", "//h/"}) {
    INFO(bad);
    CHECK_FALSE(parse_webhook_url(bad));
  }
  CHECK_FALSE(parse_webhook_url("https://h/" + std::string(2100, 'a')));
}
