// libFuzzer target: request validation (chat, completions, embeddings, responses) never crashes,
// and the body it would send upstream for an accepted request is always valid JSON; for an
// accepted responses request, so is the chat request the gateway counts in its place. The input
// also goes through the x-tollgate-tags header parser and, as headers, through the attribution
// merge: accepted tags always serialize to a JSON object that reads back as the same tags.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/json_dom.hpp"
#include "gateway/openai_request.hpp"
#include "gateway/responses_request.hpp"

using namespace tollgate::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto kind : {endpoint_kind::chat_completions, endpoint_kind::completions,
                    endpoint_kind::embeddings, endpoint_kind::responses}) {
    auto r = parse_completion_request(kind, body);
    if (!r.ok()) continue;
    if (kind == endpoint_kind::responses) {
      const std::string chat = chat_equivalent(r->body->root());
      const auto doc = tollgate::json::document::parse(chat);
      if (!doc || !doc->root().find("messages").is_array()) std::abort();
    }
    auto attributed = attribution_of(*r, {body, body, body}, {{"k", "v"}});
    if (attributed.ok()) {
      const std::string tags = attributed->tags_json();
      if (tollgate::metering::tags_from_json_text(tags) != attributed->tags) std::abort();
    }
    for (std::string_view model : {std::string_view(r->model), std::string_view("renamed")}) {
      if (!tollgate::json::document::parse(upstream_body(*r, body, model))) std::abort();
    }
  }
  auto header_tags = tollgate::metering::tags_from_header(body);
  if (header_tags.error.empty()) {
    tollgate::metering::attribution a;
    a.tags = header_tags.tags;
    if (tollgate::metering::tags_from_json_text(a.tags_json()) != a.tags) std::abort();
  }
  return 0;
}
