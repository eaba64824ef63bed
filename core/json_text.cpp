// JSON text writing helpers: see json_text.hpp.
#include "core/json_text.hpp"

#include <charconv>

#include "core/byte_words.hpp"

namespace tollgate {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  std::uint32_t min = 0;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  std::uint32_t cp = b0 & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    // Copy the longest run of plain bytes at once: whole words while no byte of the word needs
    // care (the word test is exact), then single bytes up to the one that does.
    std::size_t run = i;
    while (run + 8 <= s.size() &&
           byte_words::any_json_string_stop(byte_words::load(s.data() + run)) == 0) {
      run += 8;
    }
    while (run < s.size() && !byte_words::json_string_stop[static_cast<unsigned char>(s[run])])
      ++run;
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      if (i == s.size()) break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(s, i);
      if (len == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

void json_object_writer::key(std::string_view k) {
  if (body_.empty()) {
    body_.reserve(512);
    body_.push_back('{');
  } else {
    body_.push_back(',');
  }
  body_.push_back('"');
  body_.append(k);
  body_ += "\":";
}

json_object_writer& json_object_writer::add(std::string_view k, std::string_view value) {
  key(k);
  append_json_string(body_, value);
  return *this;
}

json_object_writer& json_object_writer::add(std::string_view k, std::int64_t value) {
  key(k);
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  body_.append(buf, end);
  return *this;
}

json_object_writer& json_object_writer::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

json_object_writer& json_object_writer::add_null(std::string_view k) {
  key(k);
  body_ += "null";
  return *this;
}

json_object_writer& json_object_writer::add_raw(std::string_view k, std::string_view json) {
  key(k);
  body_.append(json);
  return *this;
}

void json_array_writer::next() {
  body_.push_back(body_.empty() ? '[' : ',');
}

json_array_writer& json_array_writer::add(std::string_view value) {
  next();
  append_json_string(body_, value);
  return *this;
}

json_array_writer& json_array_writer::add(std::int64_t value) {
  next();
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  body_.append(buf, end);
  return *this;
}

json_array_writer& json_array_writer::add_raw(std::string_view json) {
  next();
  body_.append(json);
  return *this;
}

}  // namespace tollgate
