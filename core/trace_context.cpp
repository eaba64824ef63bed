// W3C traceparent parsing and generation: see trace_context.hpp.
#include "core/trace_context.hpp"

#include "core/assert.hpp"

#include <cstdint>
#include <random>

namespace tollgate {

namespace {

constexpr std::size_t version_00_chars = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2
constexpr std::size_t trace_id_hex = 32;
constexpr std::size_t span_id_hex = 16;

bool lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

void append_random_hex(std::string& out, std::size_t digits) {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  static constexpr char hex[] = "0123456789abcdef";
  // trace_id_hex (32) is the longest id asked for; filled in place and appended once.
  char text[trace_id_hex];
  TOLLGATE_ASSERT(digits <= sizeof text);
  const std::size_t n = digits;
  for (;;) {
    for (std::size_t i = 0; i < n; i += 16) {
      std::uint64_t v = rng();
      for (std::size_t j = 0; j < 16 && i + j < n; ++j) {
        text[i + j] = hex[v & 0xF];
        v >>= 4;
      }
    }
    if (!all_zero(std::string_view(text, n))) break;  // all zero is invalid
  }
  out.append(text, n);
}

}  // namespace

std::optional<trace_context> parse_traceparent(std::string_view h) {
  if (h.size() < version_00_chars) return std::nullopt;
  const std::string_view version = h.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return std::nullopt;
  if (version == "00" && h.size() != version_00_chars) return std::nullopt;
  // A later version: what follows the flags must start a new field.
  if (h.size() > version_00_chars && h[version_00_chars] != '-') return std::nullopt;
  if (h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  const std::string_view trace_id = h.substr(3, trace_id_hex);
  const std::string_view parent_id = h.substr(36, span_id_hex);
  const std::string_view flags = h.substr(53, 2);
  if (!lower_hex(trace_id) || !lower_hex(parent_id) || !lower_hex(flags)) return std::nullopt;
  if (all_zero(trace_id) || all_zero(parent_id)) return std::nullopt;
  return trace_context{std::string(trace_id), std::string(parent_id), std::string(flags)};
}

trace_context new_trace() {
  trace_context t;
  t.trace_id.reserve(trace_id_hex);
  append_random_hex(t.trace_id, trace_id_hex);
  t.flags = "01";
  return t;
}

trace_context trace_of(std::string_view header) {
  if (auto t = parse_traceparent(header)) return std::move(*t);
  return new_trace();
}

std::string child_traceparent(const trace_context& t) {
  std::string out;
  out.reserve(version_00_chars);
  out += "00-";
  out += t.trace_id;
  out.push_back('-');
  append_random_hex(out, span_id_hex);
  out.push_back('-');
  // Only the sampled bit is defined for version 00; other bits are not passed on.
  const char last = t.flags.empty() ? '0' : t.flags.back();
  const int low_digit = last <= '9' ? last - '0' : last - 'a' + 10;
  const bool sampled = (low_digit & 1) != 0;
  out += sampled ? "01" : "00";
  return out;
}

}  // namespace tollgate
