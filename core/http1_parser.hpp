// A strict HTTP/1.1 request parser for the client-facing side: the request head (request line
// and header fields, parsed in place: every name and value is a view into the caller's buffer)
// and a chunked body decoder. No allocation, no I/O, no Boost: the server feeds it bytes.
// Strict where leniency lets requests be smuggled: bare LF, obs-fold, whitespace before a
// colon, duplicate or malformed Content-Length, Transfer-Encoding other than `chunked`, both
// framings at once, bad chunk sizes and control characters are all refused (400, then close).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tollgate::http1 {

// Header fields one request may carry (more is answered 431, as an oversized head).
inline constexpr std::size_t header_fields_max = 100;
// Bytes of chunk extensions on one chunk-size line, and of all trailer fields of a body.
inline constexpr std::size_t chunk_extension_bytes_max = 1024;
inline constexpr std::size_t trailer_bytes_max = 8192;

enum class outcome {
  need_more,       // incomplete: read more bytes and call again
  done,            // complete: `consumed` bytes were the head (or the body)
  bad_request,     // malformed or ambiguous: answer 400 and close
  head_too_large,  // the head exceeds the limit (or header_fields_max): 431 and close
  body_too_large,  // a chunked body exceeds the limit: 413 and close
};

// Whether two field names (or tokens) are equal, ASCII letters compared without case.
bool iequals(std::string_view a, std::string_view b);

struct field {
  std::string_view name;
  std::string_view value;  // without surrounding whitespace
};

struct request_head {
  std::string_view method;
  std::string_view target;
  unsigned version = 11;  // 10 or 11
  std::array<field, header_fields_max> fields{};
  std::size_t field_count = 0;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  bool chunked = false;
  bool keep_alive = true;  // HTTP/1.1 default, or HTTP/1.0 with `Connection: keep-alive`
  bool expect_continue = false;
  std::string_view error;  // why the request was refused (bad_request), for the 400's message

  std::span<const field> headers() const { return {fields.data(), field_count}; }
  // The first field named `name` (case-insensitive), or an empty view.
  std::string_view find(std::string_view name) const;
};

struct parse_result {
  outcome result;
  std::size_t consumed;  // with `done`: the bytes of `in` that were parsed
};

// Parses the request head at the start of `in`. Empty lines before the request line (left by
// clients after a body) are skipped. `head_limit` bounds the head's bytes. On `done`, `head`'s
// views point into `in`.
parse_result parse_head(std::string_view in, std::size_t head_limit, request_head& head);

// Decodes a chunked body fed in pieces, appending the data to `body`. Trailer fields are read
// (within trailer_bytes_max) and dropped.
class chunked_decoder {
 public:
  explicit chunked_decoder(std::uint64_t body_limit_bytes) : body_limit_bytes_(body_limit_bytes) {}
  // Consumes a prefix of `in`; `done` when the last chunk and the trailers have been read (the
  // bytes after them, a pipelined request, are not consumed).
  parse_result feed(std::string_view in, std::string& body);

 private:
  enum class state {
    size,
    extension,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer_start,
    trailer,
    trailer_lf,
    final_lf,
    done
  };
  std::uint64_t body_limit_bytes_;
  std::uint64_t total_ = 0;      // body bytes so far
  std::uint64_t remaining_ = 0;  // of the current chunk (the size while it is being read)
  std::size_t digits_ = 0;       // of the current chunk size
  std::size_t extension_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  bool trailer_colon_ = false;  // the current trailer line has its colon
  state at_ = state::size;
};

}  // namespace tollgate::http1
