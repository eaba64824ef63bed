// Routing decisions, pure functions (the request path applies them: gateway/fallback.cpp):
// - a virtual model's rules, evaluated in order over the counted prompt tokens, whether tools
//   or images are present, the caller's default tags and a request header; the first that
//   matches (else `default`) names a target, or a weighted split between targets decided by a
//   stable hash of the request id (or the end user);
// - fallback models: whether an upstream's failure or status lets a request move to the next
//   model of its model's fallback chain, and which one (skipping models the key may not use).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "gateway/auth.hpp"
#include "gateway/openai_request.hpp"

namespace tollgate::gateway {

// A request header's value by its lower-case name ("" when absent). Batch lines have none.
using header_lookup = std::function<std::string_view(std::string_view)>;

// What a routing rule can look at.
struct route_inputs {
  std::int64_t prompt_tokens = 0;  // counted with the virtual model's count_with model
  bool tools = false;
  bool images = false;
  const metering::tag_set* caller_tags = nullptr;  // the key's default tags over its project's
  const header_lookup* header = nullptr;           // null: no headers (a batch line)
  std::string_view split_key;  // what a weighted split hashes (request id or end user)
};

// The rule that chose and the model it chose.
struct route_choice {
  const routing_rule_config* rule = nullptr;
  const std::string* model = nullptr;
  std::string label;  // "<virtual model>/<rule name>": the ledger's routing_rule
};

// Tools (`tools` or `functions`, non-empty) and image inputs (chat: content parts of type
// image_url; responses: input_image) in a validated request.
struct request_features {
  bool tools = false;
  bool images = false;
};
request_features features_of(const completion_request& req);

bool rule_matches(const routing_rule_config& rule, const route_inputs& in);
// The split's bucket of a key, 0..99: FNV-1a (64 bit) of "<virtual model>\n<key>", mod 100.
// Stable across gateways and restarts, so a request id (or end user) always splits the same way.
std::uint64_t split_bucket(std::string_view virtual_model, std::string_view key);
// The target of `targets` whose cumulative weight range holds the key's bucket.
const route_target& split_target(const std::vector<route_target>& targets,
                                 std::string_view virtual_model, std::string_view key);
route_choice choose_route(const virtual_model_config& vm, const route_inputs& in);

// Whether the caller may have `model` serve its request: named in its allowlist, or reached
// through a virtual model of its allowlist that routes to it (`via`, null when none).
bool may_serve(const caller& who, const virtual_model_config* via, std::string_view model);

// Why a request for `model` may move to a fallback: its exchange failed before anything
// reached the client (`failure_label`, the failure's metrics label such as "connect_error" or
// "overloaded"; "" when the upstream answered), or the upstream answered one of
// fallback_on_status ("status_503"). nullopt: it may not (answered otherwise, or the client
// has gone).
std::optional<std::string> fallback_reason(const model_config& model,
                                           std::string_view failure_label, unsigned status,
                                           bool client_gone);

// The next model of `primary`'s fallback chain not tried yet that the caller may use; null
// when none is left.
const model_config* next_fallback(const gateway_config& config, const model_config& primary,
                                  const std::vector<const model_config*>& tried, const caller& who,
                                  const virtual_model_config* via);

}  // namespace tollgate::gateway
