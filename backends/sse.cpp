// Server-Sent Events parser: see sse.hpp. Follows the WHATWG event-stream grammar.
#include "backends/sse.hpp"

namespace tollgate::backends {

void sse_event::append_wire(std::string& out) const {
  if (!event.empty()) {
    out += "event: ";
    out += event;
    out.push_back('\n');
  }
  if (!id.empty()) {
    out += "id: ";
    out += id;
    out.push_back('\n');
  }
  std::size_t start = 0;
  for (;;) {
    const auto nl = data.find('\n', start);
    out += "data: ";
    out.append(data, start, nl == std::string::npos ? std::string::npos : nl - start);
    out.push_back('\n');
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  out.push_back('\n');
}

sse_parser::sse_parser(std::uint64_t line_limit_bytes) : line_limit_bytes_(line_limit_bytes) {}

bool sse_parser::feed(std::string_view bytes, std::vector<sse_event>& out) {
  if (failed_) return false;
  if (at_start_ && !bytes.empty()) {
    // Strip a UTF-8 BOM, which may itself arrive split; hold back a partial one.
    static constexpr std::string_view bom = "\xEF\xBB\xBF";
    line_.append(bytes);
    if (line_.size() < bom.size() && bom.substr(0, line_.size()) == line_) return true;
    at_start_ = false;
    std::string pending = line_.rfind(bom, 0) == 0 ? line_.substr(bom.size()) : line_;
    line_.clear();
    return feed(pending, out);
  }
  std::size_t i = 0;
  if (skip_lf_ && !bytes.empty()) {
    skip_lf_ = false;
    if (bytes[0] == '\n') i = 1;
  }
  while (i < bytes.size()) {
    std::size_t end = i;
    while (end < bytes.size() && bytes[end] != '\n' && bytes[end] != '\r') ++end;
    if (end == bytes.size()) {  // no line end yet: keep the partial line
      line_.append(bytes.substr(i));
      if (line_.size() > line_limit_bytes_) {
        failed_ = true;
        return false;
      }
      return true;
    }
    std::string_view line = bytes.substr(i, end - i);
    if (!line_.empty()) {
      line_.append(line);
      if (line_.size() > line_limit_bytes_) {
        failed_ = true;
        return false;
      }
      process_line(line_, out);
      line_.clear();
    } else {
      process_line(line, out);
    }
    if (bytes[end] == '\r') {
      if (end + 1 == bytes.size()) {
        skip_lf_ = true;
        i = end + 1;
      } else {
        i = bytes[end + 1] == '\n' ? end + 2 : end + 1;
      }
    } else {
      i = end + 1;
    }
  }
  return true;
}

void sse_parser::finish(std::vector<sse_event>& out) {
  if (failed_) return;
  if (!line_.empty()) {
    process_line(line_, out);
    line_.clear();
  }
  process_line({}, out);  // a final blank line dispatches any pending event
}

void sse_parser::process_line(std::string_view line, std::vector<sse_event>& out) {
  if (line.empty()) {
    if (has_data_) {
      out.push_back(std::move(current_));
    }
    current_ = sse_event{};
    has_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment (often a keep-alive)
  std::string_view field = line;
  std::string_view value;
  if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) current_.id.assign(value);
  }
  // "retry" and unknown fields are ignored, as the format says.
}

}  // namespace tollgate::backends
