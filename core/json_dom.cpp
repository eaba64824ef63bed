// Strict single-pass JSON parser into a flat node array: see json_dom.hpp.
#include "core/json_dom.hpp"

#include <charconv>

#include "core/byte_words.hpp"

namespace tollgate::json {

class parser {
 public:
  parser(std::string_view in, document& doc)
      : begin_(in.data()), p_(in.data()), end_(in.data() + in.size()), doc_(doc) {}

  bool run(parse_error* error) {
    skip_ws();
    bool ok = parse_value(0);
    if (ok) {
      skip_ws();
      if (p_ != end_) ok = fail("unexpected text after the JSON value");
    }
    if (!ok && error != nullptr) {
      error->offset = static_cast<std::size_t>(err_at_ - begin_);
      error->message = err_;
    }
    return ok;
  }

 private:
  using node = document::node;

  bool fail(const char* message) {
    if (err_.empty()) {
      err_ = message;
      err_at_ = p_;
    }
    return false;
  }

  void skip_ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool parse_value(std::uint32_t depth) {
    if (p_ == end_) return fail("unexpected end of input");
    switch (*p_) {
      case '{':
        return parse_object(depth);
      case '[':
        return parse_array(depth);
      case '"':
        return parse_string();
      case 't':
        return parse_literal("true", kind::boolean, true);
      case 'f':
        return parse_literal("false", kind::boolean, false);
      case 'n':
        return parse_literal("null", kind::null, false);
      default:
        if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) return parse_number();
        return fail("unexpected character");
    }
  }

  bool parse_literal(std::string_view word, kind k, bool flag) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::string_view(p_, word.size()) != word) {
      return fail("invalid literal");
    }
    const auto index = static_cast<std::uint32_t>(doc_.nodes_.size());
    const std::string_view text(p_, word.size());
    doc_.nodes_.push_back(node{k, flag, 0, index + 1, text, text});
    p_ += word.size();
    return true;
  }

  bool parse_number() {
    const char* start = p_;
    bool integer = true;
    if (*p_ == '-') ++p_;
    if (p_ == end_) return fail("invalid number");
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    } else {
      return fail("invalid number");
    }
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9')
        return fail("invalid number: digits expected after '.'");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9')
        return fail("invalid number: digits expected in exponent");
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    const auto index = static_cast<std::uint32_t>(doc_.nodes_.size());
    const std::string_view text(start, static_cast<std::size_t>(p_ - start));
    doc_.nodes_.push_back(node{kind::number, integer, 0, index + 1, text, text});
    return true;
  }

  // Validates one UTF-8 sequence at p_ (first byte >= 0x80) and advances past it.
  bool skip_utf8() {
    const auto b0 = static_cast<unsigned char>(*p_);
    std::size_t len;
    std::uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      cp = b0 & 0x07;
    } else {
      return fail("invalid UTF-8");
    }
    if (static_cast<std::size_t>(end_ - p_) < len) return fail("invalid UTF-8: truncated sequence");
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(p_[k]);
      if ((b & 0xC0) != 0x80) return fail("invalid UTF-8");
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return fail("invalid UTF-8: overlong, surrogate or out of range");
    }
    p_ += len;
    return true;
  }

  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool read_hex4(std::uint32_t& out) {
    if (end_ - p_ < 4) return fail("invalid \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const int d = hex_digit(p_[i]);
      if (d < 0) return fail("invalid \\u escape");
      out = (out << 4) | static_cast<std::uint32_t>(d);
    }
    p_ += 4;
    return true;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // p_ is at the opening quote. Appends one string node.
  bool parse_string() {
    quote_ = p_;
    ++p_;
    const char* start = p_;
    // Fast path: no escapes. Plain bytes are crossed a word at a time, then one at a time.
    while (p_ != end_) {
      while (end_ - p_ >= 8 && byte_words::any_json_string_stop(byte_words::load(p_)) == 0) {
        p_ += 8;
      }
      while (p_ != end_ && !byte_words::json_string_stop[static_cast<unsigned char>(*p_)]) ++p_;
      if (p_ == end_) break;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        push_string(std::string_view(start, static_cast<std::size_t>(p_ - 1 - start)));
        return true;
      }
      if (c == '\\') break;
      if (c < 0x20) return fail("unescaped control character in string");
      if (c >= 0x80) {
        if (!skip_utf8()) return false;
      } else {
        ++p_;
      }
    }
    if (p_ == end_) return fail("unterminated string");

    // Slow path: decode into an owned string.
    std::string decoded(start, p_ - start);
    while (p_ != end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        doc_.decoded_.push_back(std::make_unique<std::string>(std::move(decoded)));
        push_string(*doc_.decoded_.back());
        return true;
      }
      if (c < 0x20) return fail("unescaped control character in string");
      if (c >= 0x80) {
        const char* seq = p_;
        if (!skip_utf8()) return false;
        decoded.append(seq, p_ - seq);
        continue;
      }
      if (c != '\\') {
        decoded.push_back(static_cast<char>(c));
        ++p_;
        continue;
      }
      ++p_;
      if (p_ == end_) return fail("unterminated string");
      const char e = *p_++;
      switch (e) {
        case '"':
          decoded.push_back('"');
          break;
        case '\\':
          decoded.push_back('\\');
          break;
        case '/':
          decoded.push_back('/');
          break;
        case 'b':
          decoded.push_back('\b');
          break;
        case 'f':
          decoded.push_back('\f');
          break;
        case 'n':
          decoded.push_back('\n');
          break;
        case 'r':
          decoded.push_back('\r');
          break;
        case 't':
          decoded.push_back('\t');
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!read_hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t low = 0;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
              return fail("lone high surrogate in \\u escape");
            }
            p_ += 2;
            if (!read_hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return fail("lone high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(decoded, cp);
          break;
        }
        default:
          --p_;
          return fail("invalid escape in string");
      }
    }
    return fail("unterminated string");
  }

  // Called with p_ just past the closing quote of the string that began at quote_.
  void push_string(std::string_view text) {
    const auto index = static_cast<std::uint32_t>(doc_.nodes_.size());
    doc_.nodes_.push_back(node{kind::string, false, 0, index + 1, text,
                               std::string_view(quote_, static_cast<std::size_t>(p_ - quote_))});
  }

  bool parse_array(std::uint32_t depth) {
    return parse_container(depth, kind::array, ']', [&] { return parse_value(depth + 1); });
  }

  bool parse_object(std::uint32_t depth) {
    return parse_container(depth, kind::object, '}', [&] {
      if (p_ == end_ || *p_ != '"') return fail("expected a string key in object");
      if (!parse_string()) return false;
      skip_ws();
      if (p_ == end_ || *p_ != ':') return fail("expected ':' after object key");
      ++p_;
      skip_ws();
      return parse_value(depth + 1);
    });
  }

  // p_ is at the opening bracket. Parses `item` separated by commas up to `close`, then fills in
  // the container node's count, end and source span.
  template <class ParseItem>
  bool parse_container(std::uint32_t depth, kind k, char close, ParseItem&& item) {
    if (depth >= document::depth_max) return fail("nesting too deep");
    const char* start = p_;
    const auto index = static_cast<std::uint32_t>(doc_.nodes_.size());
    doc_.nodes_.push_back(node{k, false, 0, 0, {}, {}});
    ++p_;
    skip_ws();
    std::uint32_t count = 0;
    if (p_ != end_ && *p_ == close) {
      ++p_;
    } else {
      for (;;) {
        skip_ws();
        if (!item()) return false;
        ++count;
        skip_ws();
        if (p_ == end_)
          return fail(k == kind::array ? "unterminated array" : "unterminated object");
        if (*p_ == ',') {
          ++p_;
          continue;
        }
        if (*p_ == close) {
          ++p_;
          break;
        }
        return fail(k == kind::array ? "expected ',' or ']' in array"
                                     : "expected ',' or '}' in object");
      }
    }
    auto& n = doc_.nodes_[index];
    n.count = count;
    n.next = static_cast<std::uint32_t>(doc_.nodes_.size());
    n.raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  document& doc_;
  std::string err_;
  const char* err_at_ = nullptr;
  const char* quote_ = nullptr;  // opening quote of the string being parsed
};

document::document(document&&) noexcept = default;
document& document::operator=(document&&) noexcept = default;
document::~document() = default;

std::optional<document> document::parse(std::string_view text, parse_error* error) {
  document doc;
  doc.nodes_.reserve(16 + text.size() / 16);
  parser p{text, doc};
  if (!p.run(error)) return std::nullopt;
  return doc;
}

json::kind value::kind() const {
  return doc_->nodes_[index_].kind;
}

bool value::is_int64() const {
  const auto& n = doc_->nodes_[index_];
  if (n.kind != kind::number || !n.flag) return false;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(n.text.data(), n.text.data() + n.text.size(), v);
  return ec == std::errc() && end == n.text.data() + n.text.size();
}

bool value::as_bool() const {
  return doc_->nodes_[index_].flag;
}
std::string_view value::as_string() const {
  return doc_->nodes_[index_].text;
}
std::string_view value::raw_number() const {
  return doc_->nodes_[index_].text;
}

std::int64_t value::as_int64() const {
  const auto& n = doc_->nodes_[index_];
  std::int64_t v = 0;
  std::from_chars(n.text.data(), n.text.data() + n.text.size(), v);
  return v;
}

std::uint32_t value::size() const {
  return doc_->nodes_[index_].count;
}

value value::at(std::uint32_t i) const {
  std::uint32_t child = index_ + 1;
  for (std::uint32_t k = 0; k < i; ++k) child = doc_->nodes_[child].next;
  return value(doc_, child);
}

value value::find(std::string_view key) const {
  value found;
  for_each_member([&](std::string_view k, value v) {
    if (k == key) found = v;
  });
  return found;
}

std::string_view value::source() const {
  return doc_->nodes_[index_].raw;
}

}  // namespace tollgate::json
