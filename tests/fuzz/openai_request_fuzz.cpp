// libFuzzer target: request validation never crashes, and the body it would send upstream for an
// accepted request is always valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/json_dom.hpp"
#include "gateway/openai_request.hpp"

using namespace tollgate::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto kind : {endpoint_kind::chat_completions, endpoint_kind::completions}) {
    auto r = parse_completion_request(kind, body);
    if (!r.ok()) continue;
    for (std::string_view model : {std::string_view(r->model), std::string_view("renamed")}) {
      if (!tollgate::json::document::parse(upstream_body(*r, body, model))) std::abort();
    }
  }
  return 0;
}
