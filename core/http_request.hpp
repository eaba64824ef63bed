// The request a handler sees: the method, target, version and header fields of a parsed request
// head, copied once into one buffer and looked up by a scan of that request's few fields (no
// field container, no allocation per field), and the body.
#pragma once
#include <ostream>  // before Boost: its string_view writes to streams

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::http1 {
struct request_head;
}

namespace tollgate::http {

class request {
 public:
  request() = default;
  // A request built by hand (tests, internal callers); fields are added with set().
  request(boost::beast::http::verb method, std::string_view target, unsigned version);
  // A copy of a parsed head (its views die with the read buffer's next use); the body is empty.
  explicit request(const http1::request_head& head);

  boost::beast::http::verb method() const { return method_; }
  std::string_view method_string() const { return view(method_at_); }
  std::string_view target() const { return view(target_at_); }
  unsigned version() const { return version_; }
  void version(unsigned v) { version_ = v; }
  std::string& body() { return body_; }
  const std::string& body() const { return body_; }

  // The value of the first field named `name` (compared without case), or "" when none is.
  std::string_view operator[](std::string_view name) const;
  std::string_view operator[](boost::beast::http::field name) const;
  // Every field as (name, value), in the order received.
  std::vector<std::pair<std::string_view, std::string_view>> fields() const;
  // Sets a field, replacing those of the same name. The text may move: views taken from this
  // request before (target(), a field's value) are invalid after.
  void set(std::string_view name, std::string_view value);
  void set(boost::beast::http::field name, std::string_view value);

 private:
  struct span {
    std::uint32_t at = 0;
    std::uint32_t size = 0;
  };
  struct field_spans {
    span name;
    span value;
  };
  std::string_view view(span s) const { return {text_.data() + s.at, s.size}; }
  span append(std::string_view s);

  boost::beast::http::verb method_ = boost::beast::http::verb::unknown;
  unsigned version_ = 11;
  std::string text_;  // the method, the target, then each field's name and value
  span method_at_;
  span target_at_;
  std::vector<field_spans> fields_;
  std::string body_;
};

}  // namespace tollgate::http
