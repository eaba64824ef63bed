// Attribution: see attribution.hpp.
#include "metering/attribution.hpp"

#include <algorithm>

#include "core/json_text.hpp"
#include "core/limits.hpp"
#include "metering/unicode.hpp"

namespace tollgate::metering {

namespace {

// nullopt when `text` is valid UTF-8 of at most `chars_max` characters without control
// characters (C0, DEL, C1); else why not.
std::optional<std::string> check_text(std::string_view text, std::uint64_t chars_max) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  std::uint64_t chars = 0;
  while (p < end) {
    char32_t cp = 0;
    p += unicode::decode(p, end, cp);
    if (cp == 0xFFFFFFFF) return std::string("is not valid UTF-8");
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return std::string("holds a control character");
    if (++chars > chars_max) {
      return "is longer than " + std::to_string(chars_max) + " characters";
    }
  }
  return std::nullopt;
}

void sort_tags(tag_set& tags) {
  std::sort(tags.begin(), tags.end(), [](const tag& a, const tag& b) { return a.key < b.key; });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Adds a checked tag; an error when the key is there already or a limit is passed.
std::string add_tag(tag_set& tags, std::string_view key, std::string_view value) {
  if (auto bad = check_tag(key, value)) return *bad;
  for (const auto& t : tags) {
    if (t.key == key) return "has the key `" + std::string(key) + "` twice";
  }
  if (tags.size() >= limits::tags_per_source_max) {
    return "has more than " + std::to_string(limits::tags_per_source_max) + " tags";
  }
  tags.push_back({std::string(key), std::string(value)});
  return {};
}

}  // namespace

std::string attribution::tags_json() const {
  if (tags.empty()) return {};
  std::string out = "{";
  for (const auto& t : tags) {
    if (out.size() > 1) out.push_back(',');
    append_json_string(out, t.key);
    out.push_back(':');
    append_json_string(out, t.value);
  }
  out.push_back('}');
  return out;
}

std::optional<std::string> check_end_user(std::string_view v) {
  if (v.empty()) return std::string("is empty");
  return check_text(v, limits::end_user_chars_max);
}

std::optional<std::string> check_session(std::string_view v) {
  if (v.empty()) return std::string("is empty");
  return check_text(v, limits::session_chars_max);
}

std::optional<std::string> check_tag(std::string_view key, std::string_view value) {
  if (key.empty()) return std::string("has a tag with an empty key");
  if (auto bad = check_text(key, limits::tag_key_chars_max)) {
    return "has a tag key that " + *bad;
  }
  if (auto bad = check_text(value, limits::tag_value_chars_max)) {
    return "has the tag `" + std::string(key) + "` whose value " + *bad;
  }
  return std::nullopt;
}

tags_or_error tags_from_json(json::value object) {
  tags_or_error out;
  if (!object.is_object()) {
    out.error = "must be an object of string values";
    return out;
  }
  object.for_each_member([&](std::string_view key, json::value v) {
    if (!out.error.empty()) return;
    if (!v.is_string()) {
      out.error = "has the key `" + std::string(key) + "` whose value is not a string";
      return;
    }
    out.error = add_tag(out.tags, key, v.as_string());
  });
  if (!out.error.empty()) out.tags.clear();
  sort_tags(out.tags);
  return out;
}

tags_or_error tags_from_header(std::string_view header) {
  tags_or_error out;
  std::size_t at = 0;
  while (at <= header.size() && out.error.empty()) {
    const std::size_t comma = std::min(header.find(',', at), header.size());
    const std::string_view pair = trim(header.substr(at, comma - at));
    at = comma + 1;
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    const std::string_view key = trim(pair.substr(0, eq));
    const std::string_view value = eq == std::string_view::npos ? "" : trim(pair.substr(eq + 1));
    out.error = add_tag(out.tags, key, value);
  }
  if (!out.error.empty()) out.tags.clear();
  sort_tags(out.tags);
  return out;
}

tag_set merge_tags(const tag_set& winner, const tag_set& base) {
  tag_set out;
  out.reserve(winner.size() + base.size());
  auto w = winner.begin();
  auto b = base.begin();
  while (w != winner.end() || b != base.end()) {
    if (b == base.end() || (w != winner.end() && w->key <= b->key)) {
      if (b != base.end() && b->key == w->key) ++b;
      out.push_back(*w++);
    } else {
      out.push_back(*b++);
    }
  }
  return out;
}

tag_set tags_from_json_text(std::string_view text) {
  if (text.empty()) return {};
  auto doc = json::document::parse(text);
  if (!doc || !doc->root().is_object()) return {};
  tag_set tags;
  doc->root().for_each_member([&](std::string_view key, json::value v) {
    if (v.is_string()) tags.push_back({std::string(key), std::string(v.as_string())});
  });
  sort_tags(tags);
  return tags;
}

}  // namespace tollgate::metering
