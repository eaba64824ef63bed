// A fast, strict, read-only JSON parser for the request path. It validates the whole document
// (RFC 8259 grammar, UTF-8, paired surrogate escapes, a nesting limit) in one pass and builds a
// flat node array: no allocation per value, strings without escapes point into the input.
// The input text must outlive the document.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::json {

enum class kind : std::uint8_t { null, boolean, number, string, array, object };

class document;

// A view of one value inside a document; cheap to copy.
class value {
 public:
  value() = default;
  value(const document* doc, std::uint32_t index) : doc_(doc), index_(index) {}

  bool valid() const { return doc_ != nullptr; }
  json::kind kind() const;
  bool is_null() const { return kind() == kind::null; }
  bool is_bool() const { return kind() == kind::boolean; }
  bool is_number() const { return kind() == kind::number; }
  bool is_string() const { return kind() == kind::string; }
  bool is_array() const { return kind() == kind::array; }
  bool is_object() const { return kind() == kind::object; }
  // True for numbers written as integers (no fraction or exponent) that fit in int64.
  bool is_int64() const;

  bool as_bool() const;
  std::string_view as_string() const;   // decoded text (escapes resolved)
  std::int64_t as_int64() const;        // requires is_int64()
  std::string_view raw_number() const;  // the number as written

  // Arrays and objects: number of elements or members.
  std::uint32_t size() const;
  // Arrays: the i-th element (i < size()).
  value at(std::uint32_t i) const;
  // Objects: the member value for `key`, or an invalid value. The last one wins on duplicates,
  // as in most parsers.
  value find(std::string_view key) const;

  // Iteration over array elements or object members (key, value).
  template <class F>
  void for_each_element(F&& f) const;
  template <class F>
  void for_each_member(F&& f) const;
  // Like for_each_member, but hands over the key as a value (for its source()).
  template <class F>
  void for_each_member_node(F&& f) const;

  // The value's exact bytes in the input text (strings include their quotes and escapes).
  std::string_view source() const;

 private:
  friend class document;
  const document* doc_ = nullptr;
  std::uint32_t index_ = 0;
};

struct parse_error {
  std::size_t offset = 0;
  std::string message;
};

class document {
 public:
  static constexpr std::uint32_t depth_max = 128;

  // Parses `text`; on failure returns nullopt and fills `error`.
  static std::optional<document> parse(std::string_view text, parse_error* error = nullptr);

  value root() const { return value(this, 0); }

  document(document&&) noexcept;
  document& operator=(document&&) noexcept;
  ~document();

 private:
  friend class value;
  friend class parser;
  struct node {
    json::kind kind;
    bool flag = false;        // boolean value
    std::uint32_t count = 0;  // elements / members of containers
    std::uint32_t next = 0;   // index of the node after this whole subtree
    std::string_view text;    // decoded string, or the number / literal as written
    std::string_view raw;     // the value's exact bytes in the input (strings with quotes)
  };
  document() = default;

  std::vector<node> nodes_;
  // Strings that contained escapes (rare). Not a deque: an empty std::deque allocates.
  std::vector<std::unique_ptr<std::string>> decoded_;
};

template <class F>
void value::for_each_element(F&& f) const {
  const auto& nodes = doc_->nodes_;
  std::uint32_t child = index_ + 1;
  for (std::uint32_t i = 0; i < nodes[index_].count; ++i) {
    f(value(doc_, child));
    child = nodes[child].next;
  }
}

template <class F>
void value::for_each_member_node(F&& f) const {
  const auto& nodes = doc_->nodes_;
  std::uint32_t child = index_ + 1;
  for (std::uint32_t i = 0; i < nodes[index_].count; ++i) {
    const std::uint32_t v = child + 1;  // a key node is a leaf: its value follows directly
    f(value(doc_, child), value(doc_, v));
    child = nodes[v].next;
  }
}

template <class F>
void value::for_each_member(F&& f) const {
  for_each_member_node([&](value key, value v) { f(key.as_string(), v); });
}

}  // namespace tollgate::json
