// libFuzzer target: query strings never crash the parser, and what it decodes re-encodes to a
// query that parses to the same pairs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/query_params.hpp"

using tollgate::gateway::query_params;

namespace {
std::string encode(const std::string& s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    out += '%';
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string target = "/p?" + std::string(reinterpret_cast<const char*>(data), size);
  const auto q = query_params::parse(target);
  if (!q) return 0;
  std::string again = "/p?";
  for (const auto& [k, v] : q->all()) {
    again += encode(k) + "=" + encode(v) + "&";
  }
  const auto q2 = query_params::parse(again);
  if (!q2 || q2->all().size() != q->all().size()) std::abort();
  for (std::size_t i = 0; i < q->all().size(); ++i) {
    // Empty names are kept only when they came with a value; re-encoded they always do.
    if (q2->all()[i] != q->all()[i]) std::abort();
  }
  for (const auto& [k, v] : q->all()) (void)q->list(k);
  return 0;
}
