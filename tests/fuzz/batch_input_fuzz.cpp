// libFuzzer target: multipart bodies and batch input files never crash their parsers; every
// part and line handed back lies inside the input, and the lines cover the file exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/batch_input.hpp"

using namespace tollgate::gateway;

namespace {
bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string_view whole(input);
  // The first line is the Content-Type, the rest the body.
  const std::size_t eol = whole.find('\n');
  const std::string_view type = whole.substr(0, eol);
  const std::string_view body =
      eol == std::string_view::npos ? std::string_view{} : whole.substr(eol + 1);
  if (const auto parts = parse_multipart(type, body)) {
    for (const auto& p : *parts) {
      if (!inside(p.content, body)) std::abort();
    }
  }
  batch_file_limits limits;
  limits.max_lines = 64;
  if (const auto lines = parse_batch_file(whole, limits)) {
    std::size_t covered = 0;
    for (const auto& l : *lines) {
      if (!inside(l.text, whole) || !inside(l.body, whole) || l.custom_id.empty()) std::abort();
      covered += l.text.size();
    }
    if (covered != whole.size()) std::abort();
  }
  return 0;
}
