// Minimal JSON text writing for hot paths (log lines, usage records) that should not pull in a
// full JSON library: string escaping, an object builder and an array builder.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate {

// Appends s as a quoted JSON string. Control characters are escaped; bytes that are not valid
// UTF-8 are replaced with U+FFFD so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);

// Builds one flat JSON object: {"k":v,...}. Keys must be plain ASCII identifiers.
class json_object_writer {
 public:
  json_object_writer& add(std::string_view key, std::string_view value);
  json_object_writer& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  json_object_writer& add(std::string_view key, std::int64_t value);
  json_object_writer& add(std::string_view key, int value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  json_object_writer& add(std::string_view key, unsigned value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  json_object_writer& add(std::string_view key, bool value);
  json_object_writer& add_null(std::string_view key);
  // Adds an already-serialized JSON value verbatim.
  json_object_writer& add_raw(std::string_view key, std::string_view json);

  // Returns the finished object text; the writer can be reused after clear().
  std::string finish() const { return body_.empty() ? "{}" : body_ + "}"; }
  void clear() { body_.clear(); }
  bool empty() const { return body_.empty(); }
  // The members as written so far, without braces ("" when empty): for splicing into a line.
  std::string_view members() const {
    return body_.empty() ? std::string_view{} : std::string_view(body_).substr(1);
  }

 private:
  void key(std::string_view k);
  std::string body_;
};

// Builds one JSON array: [v,...]. Elements are strings, integers or already-serialized JSON
// (an object from json_object_writer::finish(), a nested array).
class json_array_writer {
 public:
  json_array_writer& add(std::string_view value);
  json_array_writer& add(const char* value) { return add(std::string_view(value)); }
  json_array_writer& add(std::int64_t value);
  json_array_writer& add(int value) { return add(static_cast<std::int64_t>(value)); }
  json_array_writer& add(unsigned value) { return add(static_cast<std::int64_t>(value)); }
  json_array_writer& add_raw(std::string_view json);

  std::string finish() const { return body_.empty() ? "[]" : body_ + "]"; }
  bool empty() const { return body_.empty(); }

 private:
  void next();
  std::string body_;
};

}  // namespace tollgate
