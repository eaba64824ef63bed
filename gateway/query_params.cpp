// URL query strings: see query_params.hpp.
#include "gateway/query_params.hpp"

namespace tollgate::gateway {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> query_params::decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<query_params> query_params::parse(std::string_view target) {
  query_params q;
  const auto mark = target.find('?');
  if (mark == std::string_view::npos) return q;
  std::string_view rest = target.substr(mark + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto name = decode(part.substr(0, eq));
    auto value = decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    q.pairs_.emplace_back(std::move(*name), std::move(*value));
  }
  return q;
}

std::optional<std::string> query_params::get(std::string_view name) const {
  std::optional<std::string> out;
  for (const auto& [k, v] : pairs_) {
    if (k == name) out = v;
  }
  return out;
}

std::vector<std::string> query_params::list(std::string_view name) const {
  std::vector<std::string> out;
  const std::string bracketed = std::string(name) + "[]";
  for (const auto& [k, v] : pairs_) {
    if (k != name && k != bracketed) continue;
    std::size_t at = 0;
    while (at <= v.size()) {
      const auto comma = v.find(',', at);
      std::string item = v.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
      if (!item.empty()) out.push_back(std::move(item));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  return out;
}

}  // namespace tollgate::gateway
