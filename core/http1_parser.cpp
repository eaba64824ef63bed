// The strict HTTP/1.1 request parser: see http1_parser.hpp. Grammar from RFC 9110/9112.
#include "core/http1_parser.hpp"

#include <cstring>

namespace tollgate::http1 {
namespace {

// tchar: "!#$%&'*+-.^_`|~", digits and letters.
constexpr std::array<bool, 256> token_chars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_token_char(char c) {
  return token_chars[static_cast<unsigned char>(c)];
}
// A field value's characters: HTAB, SP, VCHAR, obs-text.
bool is_value_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}
bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  return v;
}

// 1*DIGIT without sign or whitespace, at most 18 digits (no overflow possible).
bool parse_content_length(std::string_view v, std::uint64_t& out) {
  if (v.empty() || v.size() > 18) return false;
  std::uint64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = n;
  return true;
}

// Reads one line ending at CRLF from `in` at `pos`. False with `need_more` when no line end is
// there yet; false without it when the line ends in a bare LF or holds a bare CR.
bool next_line(std::string_view in, std::size_t& pos, std::string_view& line, bool& need_more) {
  const void* lf = std::memchr(in.data() + pos, '\n', in.size() - pos);
  if (lf == nullptr) {
    need_more = true;
    return false;
  }
  const auto end = static_cast<std::size_t>(static_cast<const char*>(lf) - in.data());
  if (end == pos || in[end - 1] != '\r') return false;  // bare LF
  line = in.substr(pos, end - 1 - pos);
  pos = end + 1;
  return true;
}

parse_result refuse(request_head& head, std::string_view why) {
  head.error = why;
  return {outcome::bad_request, 0};
}

bool parse_request_line(std::string_view line, request_head& head) {
  const auto sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return false;
  head.method = line.substr(0, sp1);
  for (const char c : head.method) {
    if (!is_token_char(c)) return false;
  }
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return false;
  head.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (const char c : head.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;  // visible ASCII only
  }
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    head.version = 11;
  } else if (version == "HTTP/1.0") {
    head.version = 10;
  } else {
    return false;
  }
  return true;
}

// The framing and connection fields, once all fields are read.
parse_result apply_fields(request_head& head, std::size_t consumed) {
  bool seen_te = false;
  bool seen_host = false;
  bool close = false;
  bool keep = false;
  for (const field& f : head.headers()) {
    if (iequals(f.name, "content-length")) {
      if (head.has_content_length) return refuse(head, "more than one Content-Length");
      if (!parse_content_length(f.value, head.content_length)) {
        return refuse(head, "a malformed Content-Length");
      }
      head.has_content_length = true;
    } else if (iequals(f.name, "transfer-encoding")) {
      if (seen_te) return refuse(head, "more than one Transfer-Encoding");
      seen_te = true;
      if (!iequals(f.value, "chunked")) {
        return refuse(head, "a Transfer-Encoding other than chunked");
      }
      head.chunked = true;
    } else if (iequals(f.name, "host")) {
      if (seen_host) return refuse(head, "more than one Host");
      seen_host = true;
    } else if (iequals(f.name, "connection")) {
      std::string_view rest = f.value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view option = trim_ows(rest.substr(0, comma));
        if (iequals(option, "close")) close = true;
        if (iequals(option, "keep-alive")) keep = true;
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
    } else if (iequals(f.name, "expect")) {
      head.expect_continue = iequals(f.value, "100-continue");
    }
  }
  if (head.chunked && head.has_content_length) {
    return refuse(head, "both Content-Length and Transfer-Encoding");
  }
  if (head.chunked && head.version == 10) return refuse(head, "Transfer-Encoding in HTTP/1.0");
  head.keep_alive = !close && (head.version == 11 || keep);
  return {outcome::done, consumed};
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view request_head::find(std::string_view name) const {
  for (const field& f : headers()) {
    if (iequals(f.name, name)) return f.value;
  }
  return {};
}

parse_result parse_head(std::string_view in, std::size_t head_limit, request_head& head) {
  // Everything but the field array (only its first field_count entries are ever read).
  head.method = head.target = head.error = {};
  head.version = 11;
  head.field_count = 0;
  head.has_content_length = head.chunked = head.expect_continue = false;
  head.content_length = 0;
  head.keep_alive = true;
  const std::string_view window = in.substr(0, head_limit);
  const auto incomplete = [&]() -> parse_result {
    return {in.size() >= head_limit ? outcome::head_too_large : outcome::need_more, 0};
  };
  std::size_t pos = 0;
  std::string_view line;
  bool need_more = false;
  // Empty lines before the request line are ignored (RFC 9112 section 2.2).
  for (;;) {
    if (!next_line(window, pos, line, need_more)) {
      return need_more ? incomplete() : refuse(head, "a line that does not end in CRLF");
    }
    if (!line.empty()) break;
  }
  if (!parse_request_line(line, head)) return refuse(head, "a malformed request line");
  for (;;) {
    if (!next_line(window, pos, line, need_more)) {
      return need_more ? incomplete() : refuse(head, "a line that does not end in CRLF");
    }
    if (line.empty()) return apply_fields(head, pos);
    if (is_ows(line.front())) return refuse(head, "a folded header line");
    const auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return refuse(head, "a malformed header");
    const std::string_view name = line.substr(0, colon);
    for (const char c : name) {
      if (!is_token_char(c)) return refuse(head, "a malformed header name");
    }
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (const char c : value) {
      if (!is_value_char(c)) return refuse(head, "a control character in a header");
    }
    if (head.field_count == header_fields_max) return {outcome::head_too_large, 0};
    head.fields[head.field_count++] = field{name, value};
  }
}

parse_result chunked_decoder::feed(std::string_view in, std::string& body) {
  std::size_t i = 0;
  const auto bad = [] { return parse_result{outcome::bad_request, 0}; };
  while (i < in.size() && at_ != state::done) {
    const char c = in[i];
    switch (at_) {
      case state::size: {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit >= 0) {
          if (++digits_ > 15) return bad();  // sizes past 2^60 are not chunk sizes
          remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(digit);
        } else if (digits_ == 0) {
          return bad();
        } else if (c == ';') {
          at_ = state::extension;
        } else if (c == '\r') {
          at_ = state::size_lf;
        } else {
          return bad();
        }
        ++i;
        break;
      }
      case state::extension:
        if (c == '\r') {
          at_ = state::size_lf;
        } else if (!is_value_char(c) || ++extension_bytes_ > chunk_extension_bytes_max) {
          return bad();
        }
        ++i;
        break;
      case state::size_lf:
        if (c != '\n') return bad();
        ++i;
        digits_ = 0;
        extension_bytes_ = 0;
        if (remaining_ == 0) {
          at_ = state::trailer_start;
        } else {
          if (remaining_ > body_limit_bytes_ - total_) return {outcome::body_too_large, 0};
          total_ += remaining_;
          at_ = state::data;
        }
        break;
      case state::data: {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - i));
        body.append(in.data() + i, n);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) at_ = state::data_cr;
        break;
      }
      case state::data_cr:
        if (c != '\r') return bad();
        ++i;
        at_ = state::data_lf;
        break;
      case state::data_lf:
        if (c != '\n') return bad();
        ++i;
        at_ = state::size;
        break;
      case state::trailer_start:
        ++i;
        if (c == '\r') {
          at_ = state::final_lf;
        } else if (is_token_char(c)) {
          trailer_colon_ = false;
          if (++trailer_bytes_ > trailer_bytes_max) return bad();
          at_ = state::trailer;
        } else {
          return bad();
        }
        break;
      case state::trailer:
        ++i;
        if (++trailer_bytes_ > trailer_bytes_max) return bad();
        if (c == '\r') {
          if (!trailer_colon_) return bad();
          at_ = state::trailer_lf;
        } else if (c == ':') {
          trailer_colon_ = true;
        } else if (trailer_colon_ ? !is_value_char(c) : !is_token_char(c)) {
          return bad();
        }
        break;
      case state::trailer_lf:
        if (c != '\n') return bad();
        ++i;
        at_ = state::trailer_start;
        break;
      case state::final_lf:
        if (c != '\n') return bad();
        ++i;
        at_ = state::done;
        break;
      case state::done:
        break;
    }
  }
  return {at_ == state::done ? outcome::done : outcome::need_more, i};
}

}  // namespace tollgate::http1
