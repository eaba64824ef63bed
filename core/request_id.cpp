// Request id generation and validation: see request_id.hpp.
#include "core/request_id.hpp"

#include <random>

#include "core/limits.hpp"

namespace tollgate {

std::string new_request_id() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  static constexpr char hex[] = "0123456789abcdef";
  // Filled in place and copied once, not a push_back per digit.
  char text[4 + 32] = {'r', 'e', 'q', '_'};
  char* out = text + 4;
  for (int word = 0; word < 2; ++word) {
    std::uint64_t v = rng();
    for (int i = 0; i < 16; ++i) {
      *out++ = hex[v & 0xF];
      v >>= 4;
    }
  }
  std::string id(text, sizeof text);
  return id;
}

bool is_valid_client_request_id(std::string_view id) {
  if (id.empty() || id.size() > limits::request_id_chars_max) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tollgate
