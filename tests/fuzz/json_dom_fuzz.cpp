// libFuzzer target: the strict JSON parser never crashes, and every accepted document can be
// walked completely, with containers' source spans nested inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/json_dom.hpp"

namespace {

void walk(tollgate::json::value v, std::string_view input) {
  const auto src = v.source();
  if (src.data() < input.data() || src.data() + src.size() > input.data() + input.size()) {
    std::abort();
  }
  if (v.is_array()) {
    v.for_each_element([&](tollgate::json::value e) { walk(e, input); });
  } else if (v.is_object()) {
    v.for_each_member_node([&](tollgate::json::value k, tollgate::json::value m) {
      if (!k.is_string()) std::abort();
      if (!v.find(k.as_string()).valid()) std::abort();
      walk(m, input);
    });
  } else if (v.is_number() && v.is_int64()) {
    (void)v.as_int64();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto doc = tollgate::json::document::parse(input)) walk(doc->root(), input);
  return 0;
}
