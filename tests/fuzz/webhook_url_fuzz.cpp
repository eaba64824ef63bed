// libFuzzer target: webhook URLs never crash the parser, and an accepted one, written back out,
// parses to the same scheme, host, port and target.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/webhook_url.hpp"

using tollgate::gateway::parse_webhook_url;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const std::string& url : {text, "http://" + text, "https://" + text}) {
    const auto t = parse_webhook_url(url);
    if (!t) continue;
    if (t->host.empty() || t->port == 0 || t->target.empty() || t->target[0] != '/') std::abort();
    const std::string again = std::string(t->tls ? "https://" : "http://") + t->host + ":" +
                              std::to_string(t->port) + t->target;
    const auto u = parse_webhook_url(again);
    if (!u || u->tls != t->tls || u->host != t->host || u->port != t->port ||
        u->target != t->target) {
      std::abort();
    }
  }
  return 0;
}
