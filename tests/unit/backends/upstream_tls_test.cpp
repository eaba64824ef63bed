// TLS contexts of https upstreams: made only for https upstreams, and a file that OpenSSL cannot
// load stops start-up with the setting's name.
#include <catch2/catch.hpp>

#include "backends/upstream_tls.hpp"

using namespace tollgate;

namespace {

upstream_config upstream(std::string name, bool tls) {
  upstream_config u;
  u.name = std::move(name);
  u.host = "127.0.0.1";
  u.port = 443;
  u.tls = tls;
  return u;
}

}  // namespace

TEST_CASE("one TLS context per https upstream, none for http") {
  const backends::upstream_tls_contexts contexts({upstream("plain", false), upstream("s", true)});
  CHECK(contexts.find("plain") == nullptr);
  CHECK(contexts.find("s") != nullptr);
  CHECK(contexts.find("other") == nullptr);
}

TEST_CASE("a CA file that is not PEM stops start-up naming the setting") {
  auto u = upstream("s", true);
  u.tls_ca_file = "/etc/hostname";
  try {
    backends::upstream_tls_contexts contexts({u});
    FAIL("expected a config_error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()).rfind(
              "config /upstreams/s/tls_ca_file: cannot load \"/etc/hostname\"", 0) == 0);
  }
}
