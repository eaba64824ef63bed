// The ledger's tag sets: each usage event stores the integer id of its set of tags
// (usage_events.tag_set_id -> usage_tag_sets, sql/017_usage_tag_sets.sql) instead of its own
// jsonb copy. The journal keeps the tags as JSON (ledger record version 3); the ledger writer
// swaps them for their id on the way into the database, from a cache of the sets it has seen,
// asking PostgreSQL only for new ones.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "billing/pg.hpp"

namespace tollgate::billing {

// For a query over `usage_events e`: joins each event's tag set, as `ts` (ts.tags, NULL for an
// event without tags). A join PostgreSQL drops when the query reads nothing from it.
inline constexpr const char* join_tag_sets = " LEFT JOIN usage_tag_sets ts ON ts.id = e.tag_set_id";

// How many of usage_event_columns follow tag_set_id (a unit test holds the two together).
inline constexpr std::size_t usage_columns_after_tags = 9;

// Where the tags are in a usage_events COPY line of the journal in the current layout (older
// records' lines completed first): offset and length, or nullopt for a line with too few fields.
std::optional<std::pair<std::size_t, std::size_t>> tags_field_of(std::string_view copy_line);

// The JSON text of a COPY text field (its escapes undone), when it is a JSON object whose
// values are strings; nullopt otherwise (NULL, damage).
std::optional<std::string> tag_object_of_field(std::string_view field);

class tag_set_ids {
 public:
  // Sets kept in memory; past this many the cache starts over (a tenant has a few dozen).
  static constexpr std::size_t cached_sets_max = 100'000;

  // Replaces the tags field of each line in `lines` (views; a changed line is kept in
  // `rewritten`, which must keep its elements' addresses: a deque) by its set's id. Sets not
  // known yet are looked up or made with one statement on `conn`, inside the caller's
  // transaction: they stay pending until commit() (a rolled-back set must not be cached).
  // A field that is not a JSON object of strings is left as it is, so the COPY refuses the
  // batch as it refuses other damage.
  template <class Deque>
  boost::asio::awaitable<pg::db_result<bool>> substitute(pg::connection& conn,
                                                          std::vector<std::string_view>& lines,
                                                          const std::vector<bool>& has_tags,
                                                          Deque& rewritten);
  // The transaction that made the pending sets committed / rolled back.
  void commit();
  void rollback() { pending_.clear(); }

  std::size_t size() const { return ids_.size(); }

 private:
  struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using id_map = std::unordered_map<std::string, std::int32_t, text_hash, std::equal_to<>>;

  const std::int32_t* find(std::string_view field) const;
  // Looks up or makes the sets of `fields` (COPY text), adding them to pending_.
  boost::asio::awaitable<pg::db_result<bool>> learn(pg::connection& conn,
                                                    const std::vector<std::string_view>& fields);

  id_map ids_;      // committed sets, by the tags field as the journal wrote it
  id_map pending_;  // sets made or found in the open transaction
};

template <class Deque>
boost::asio::awaitable<pg::db_result<bool>> tag_set_ids::substitute(
    pg::connection& conn, std::vector<std::string_view>& lines, const std::vector<bool>& has_tags,
    Deque& rewritten) {
  std::vector<std::pair<std::size_t, std::size_t>> spans(lines.size(), {0, 0});
  std::vector<std::string_view> unknown;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (!has_tags[i]) continue;
    const auto span = tags_field_of(lines[i]);
    if (!span || lines[i].substr(span->first, span->second) == "\\N") continue;
    spans[i] = *span;
    if (find(lines[i].substr(span->first, span->second)) == nullptr) {
      unknown.push_back(lines[i].substr(span->first, span->second));
    }
  }
  if (!unknown.empty()) {
    auto learned = co_await learn(conn, unknown);
    if (!learned) co_return learned.error();
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto [at, length] = spans[i];
    if (length == 0) continue;
    const std::int32_t* id = find(lines[i].substr(at, length));
    if (id == nullptr) continue;  // not a tag object: the database refuses it
    std::string line;
    line.reserve(lines[i].size());
    line.append(lines[i].substr(0, at)).append(std::to_string(*id)).append(lines[i].substr(at + length));
    rewritten.push_back(std::move(line));
    lines[i] = rewritten.back();
  }
  co_return true;
}

}  // namespace tollgate::billing
