// The ledger's tag sets: see tag_sets.hpp.
#include "billing/tag_sets.hpp"

#include <unordered_set>

#include "core/json_dom.hpp"

namespace tollgate::billing {

std::optional<std::pair<std::size_t, std::size_t>> tags_field_of(std::string_view copy_line) {
  // Found from the line's end: fewer bytes to look at than the 25 fields before it.
  std::size_t end = copy_line.size();
  for (std::size_t i = 0; i < usage_columns_after_tags; ++i) {
    const std::size_t tab = copy_line.rfind('\t', end - 1);
    if (tab == std::string_view::npos || tab == 0) return std::nullopt;
    end = tab;
  }
  const std::size_t tab = copy_line.rfind('\t', end - 1);
  if (tab == std::string_view::npos) return std::nullopt;
  return std::pair{tab + 1, end - tab - 1};
}

std::optional<std::string> tag_object_of_field(std::string_view field) {
  if (field == "\\N") return std::nullopt;
  // COPY text's escapes, as pg::append_copy_text writes them (and the octal and hex forms
  // another writer could use are not JSON, so they fail the parse below).
  std::string text;
  text.reserve(field.size());
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\' || i + 1 == field.size()) {
      text.push_back(field[i]);
      continue;
    }
    switch (const char c = field[++i]) {
      case 't': text.push_back('\t'); break;
      case 'n': text.push_back('\n'); break;
      case 'r': text.push_back('\r'); break;
      default: text.push_back(c);
    }
  }
  const auto doc = json::document::parse(text);
  if (!doc || !doc->root().is_object()) return std::nullopt;
  bool strings = true;
  doc->root().for_each_member([&](std::string_view, json::value v) {
    if (!v.is_string()) strings = false;
  });
  if (!strings) return std::nullopt;
  return text;
}

const std::int32_t* tag_set_ids::find(std::string_view field) const {
  if (const auto it = ids_.find(field); it != ids_.end()) return &it->second;
  if (const auto it = pending_.find(field); it != pending_.end()) return &it->second;
  return nullptr;
}

boost::asio::awaitable<pg::db_result<bool>> tag_set_ids::learn(
    pg::connection& conn, const std::vector<std::string_view>& fields) {
  // Each distinct set once, as one JSON array: [{...}, {...}].
  std::unordered_set<std::string_view> seen;
  std::vector<std::string_view> asked;
  std::string sets = "[";
  for (const auto field : fields) {
    if (!seen.insert(field).second) continue;
    const auto object = tag_object_of_field(field);
    if (!object) continue;
    if (asked.size() > 0) sets.push_back(',');
    sets += *object;
    asked.push_back(field);
  }
  sets.push_back(']');
  if (asked.empty()) co_return true;
  std::vector<pg::param> params;
  params.emplace_back(std::move(sets));
  auto r = co_await conn.query(
      "SELECT n, tollgate_tag_set_id(t) FROM jsonb_array_elements($1::jsonb)"
      " WITH ORDINALITY AS x(t, n)",
      std::move(params));
  if (!r) co_return r.error();
  for (int i = 0; i < r->size(); ++i) {
    const std::int64_t n = r->int64(i, 0);
    if (n < 1 || static_cast<std::size_t>(n) > asked.size() || r->is_null(i, 1)) continue;
    pending_.insert_or_assign(std::string(asked[static_cast<std::size_t>(n - 1)]),
                              static_cast<std::int32_t>(r->int64(i, 1)));
  }
  co_return true;
}

void tag_set_ids::commit() {
  if (ids_.size() + pending_.size() > cached_sets_max) ids_.clear();
  ids_.merge(pending_);
  pending_.clear();
}

}  // namespace tollgate::billing
