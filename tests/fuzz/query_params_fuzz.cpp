// libFuzzer target: query strings never crash the parser, and what it decodes re-encodes to a
// query that parses to the same pairs; usage report parameters (tag keys decoded a second time
// included) never crash their parser, and what it accepts holds its invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/query_params.hpp"
#include "gateway/usage_params.hpp"

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
  for (const auto& [k, v] : q->all()) {
    (void)q->list(k);
    (void)query_params::decode(k, false);
  }
  for (const bool finance : {false, true}) {
    const auto r = tollgate::gateway::parse_usage_request(*q, finance, 1'760'000'000);
    if (!r) {
      if (r.error().status != 400 || r.error().param.empty()) std::abort();
      continue;
    }
    const auto& u = r->query;
    if (u.start_s >= u.end_s || u.group_limit < 0 || r->page_start_s < u.start_s) std::abort();
    for (std::size_t i = 0; i < u.group_by.size(); ++i) {
      for (std::size_t j = i + 1; j < u.group_by.size(); ++j) {
        if (u.group_by[i] == u.group_by[j]) std::abort();
      }
      if (u.group_by[i] == "tag:") std::abort();
    }
    for (const auto& [key, value] : u.tag_filters) {
      if (key.empty()) std::abort();
    }
  }
  return 0;
}
