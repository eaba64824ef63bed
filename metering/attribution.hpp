// Attribution below the API key: who a request was made for (the tenant's own customer, the
// "end user"), the tags it carries (team, feature, ...) and the agent session or task it is part
// of. Each comes from the request body (OpenAI's `user` and `metadata`), from headers
// (x-tollgate-end-user, x-tollgate-tags, x-tollgate-session: for clients that cannot set body
// fields) and, for tags, from defaults an admin set on the API key and its project. This file
// validates each source and merges them; the usage record carries the result to the ledger.
// Precedence (docs/ATTRIBUTION.md): a header wins over the body; tags merge key by key with the
// request's (header over body) winning over the key's defaults, and the key's over the project's.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/json_dom.hpp"

namespace tollgate::metering {

struct tag {
  std::string key;
  std::string value;
  bool operator==(const tag&) const = default;
};
// Sorted by key, each key once.
using tag_set = std::vector<tag>;

struct attribution {
  std::string end_user;  // "" when none
  tag_set tags;
  std::string session;   // "" when none

  // The tags as one compact JSON object ({"k":"v",...}, keys in order), "" when there are none:
  // the form the ledger stores (jsonb) and the usage log writes.
  std::string tags_json() const;
};

// Each check answers nullopt when the text is acceptable, else what is wrong with it (for a
// 400 that names the field). Text is counted in Unicode characters and must be valid UTF-8
// without control characters.
std::optional<std::string> check_end_user(std::string_view v);
std::optional<std::string> check_session(std::string_view v);
std::optional<std::string> check_tag(std::string_view key, std::string_view value);

// The tags of a JSON object of string values (OpenAI's `metadata`, or admin defaults), sorted;
// or what is wrong with it. At most limits::tags_per_source_max members.
struct tags_or_error {
  tag_set tags;
  std::string error;  // "" when the tags are good
};
tags_or_error tags_from_json(json::value object);
// The tags of an x-tollgate-tags header: `key=value` pairs separated by commas, spaces around
// them ignored; a key without `=` has the empty value. Values cannot hold a comma there.
tags_or_error tags_from_header(std::string_view header);

// `winner`'s tags over `base`'s: the union, `winner`'s value where both have a key.
tag_set merge_tags(const tag_set& winner, const tag_set& base);

// Parses a stored compact tag object (tags_json's form) back; empty on anything else.
tag_set tags_from_json_text(std::string_view text);

}  // namespace tollgate::metering
