// Multipart bodies and batch input files: see batch_input.hpp.
#include "gateway/batch_input.hpp"

#include <unordered_set>

#include "core/json_dom.hpp"

namespace tollgate::gateway {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of parameter `name` in a header value like `form-data; name="file"; filename=x`
// (quoted or token); nullopt when absent.
std::optional<std::string> header_param(std::string_view value, std::string_view name) {
  std::size_t pos = value.find(';');
  while (pos != std::string_view::npos) {
    std::string_view rest = trim(value.substr(pos + 1));
    const std::size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = trim(rest.substr(0, eq));
    rest = trim(rest.substr(eq + 1));
    std::string out;
    std::size_t used = 0;
    if (!rest.empty() && rest.front() == '"') {
      std::size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        out.push_back(rest[i]);
      }
      if (i >= rest.size()) return std::nullopt;  // unterminated quote
      used = i + 1;
    } else {
      used = std::min(rest.find(';'), rest.size());
      out = std::string(trim(rest.substr(0, used)));
    }
    if (iequal(key, name)) return out;
    const std::size_t next = rest.find(';', used);
    if (next == std::string_view::npos) return std::nullopt;
    pos = static_cast<std::size_t>(rest.data() + next - value.data());
  }
  return std::nullopt;
}

api_error bad_form(std::string message) {
  return invalid_request("The multipart/form-data body is malformed: " + std::move(message));
}

api_error bad_line(int line_no, std::string message) {
  return invalid_request("Line " + std::to_string(line_no) + " of the file: " + std::move(message),
                         "file", "invalid_batch_line");
}

}  // namespace

result<std::vector<form_part>> parse_multipart(std::string_view content_type,
                                               std::string_view body) {
  const std::size_t semi = content_type.find(';');
  if (!iequal(trim(content_type.substr(0, semi)), "multipart/form-data")) {
    return invalid_request("Uploads must be multipart/form-data (got `" +
                           std::string(content_type.substr(0, 100)) + "`).");
  }
  const auto boundary = header_param(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->size() > 70) {
    return bad_form("the Content-Type names no valid boundary.");
  }
  const std::string delimiter = "--" + *boundary;
  // The first delimiter may be preceded by a preamble; each later one follows a CRLF.
  std::size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos ||
      (pos != 0 && (pos < 2 || body.substr(pos - 2, 2) != "\r\n"))) {
    return bad_form("the boundary does not occur in the body.");
  }
  const std::string next_delimiter = "\r\n" + delimiter;
  std::vector<form_part> parts;
  for (;;) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") return parts;  // the closing delimiter
    // Transport padding, then CRLF.
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") return bad_form("a boundary line is not followed by CRLF.");
    pos += 2;
    const std::size_t headers_end = body.find("\r\n\r\n", pos);
    // A part without headers starts with the empty line right away.
    std::string_view headers;
    std::size_t content_start = 0;
    if (body.substr(pos, 2) == "\r\n") {
      content_start = pos + 2;
    } else {
      if (headers_end == std::string_view::npos) return bad_form("a part's headers do not end.");
      headers = body.substr(pos, headers_end - pos);
      content_start = headers_end + 4;
    }
    const std::size_t end = body.find(next_delimiter, content_start);
    if (end == std::string_view::npos) return bad_form("a part is not closed by the boundary.");
    form_part part;
    bool disposition = false;
    while (!headers.empty()) {
      const std::size_t eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view{} : headers.substr(eol + 2);
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) return bad_form("a part header has no colon.");
      if (!iequal(trim(line.substr(0, colon)), "content-disposition")) continue;
      const std::string_view value = trim(line.substr(colon + 1));
      if (!iequal(trim(value.substr(0, value.find(';'))), "form-data")) {
        return bad_form("a part's Content-Disposition is not form-data.");
      }
      auto name = header_param(value, "name");
      if (!name) return bad_form("a part's Content-Disposition has no name.");
      part.name = std::move(*name);
      if (auto filename = header_param(value, "filename")) {
        part.filename = std::move(*filename);
        part.has_filename = true;
      }
      disposition = true;
    }
    if (!disposition) return bad_form("a part has no Content-Disposition header.");
    part.content = body.substr(content_start, end - content_start);
    parts.push_back(std::move(part));
    if (parts.size() > 16) return bad_form("too many parts (at most 16).");
    pos = end + 2;
  }
}

result<std::vector<batch_input_line>> parse_batch_file(std::string_view content,
                                                       const batch_file_limits& limits) {
  std::vector<batch_input_line> lines;
  std::unordered_set<std::string_view> custom_ids;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < content.size()) {
    ++line_no;
    if (static_cast<std::size_t>(line_no) > limits.max_lines) {
      return invalid_request("The file has more than " + std::to_string(limits.max_lines) +
                                 " lines, the most a batch may have.",
                             "file", "too_many_lines");
    }
    const std::size_t eol = content.find('\n', pos);
    const std::size_t end = eol == std::string_view::npos ? content.size() : eol + 1;
    batch_input_line line;
    line.line_no = line_no;
    line.text = content.substr(pos, end - pos);
    line.json = line.text;
    if (!line.json.empty() && line.json.back() == '\n') line.json.remove_suffix(1);
    if (!line.json.empty() && line.json.back() == '\r') line.json.remove_suffix(1);
    pos = end;
    if (trim(line.json).empty()) return bad_line(line_no, "the line is blank.");

    json::parse_error error;
    const auto doc = json::document::parse(line.json, &error);
    if (!doc) {
      return bad_line(line_no, "not valid JSON (" + error.message + " at byte " +
                                   std::to_string(error.offset) + ").");
    }
    const json::value root = doc->root();
    if (!root.is_object()) return bad_line(line_no, "not a JSON object.");
    const json::value custom_id = root.find("custom_id");
    if (!custom_id.valid() || !custom_id.is_string() || custom_id.as_string().empty()) {
      return bad_line(line_no, "`custom_id` must be a non-empty string.");
    }
    if (custom_id.as_string().size() > limits.max_custom_id_bytes) {
      return bad_line(line_no, "`custom_id` is longer than " +
                                   std::to_string(limits.max_custom_id_bytes) + " bytes.");
    }
    line.custom_id = std::string(custom_id.as_string());
    const json::value method = root.find("method");
    if (!method.valid() || !method.is_string() || method.as_string() != "POST") {
      return bad_line(line_no, "`method` must be \"POST\".");
    }
    const json::value url = root.find("url");
    if (!url.valid() || !url.is_string() ||
        (url.as_string() != "/v1/chat/completions" && url.as_string() != "/v1/completions")) {
      return bad_line(line_no, "`url` must be \"/v1/chat/completions\" or \"/v1/completions\".");
    }
    line.url = std::string(url.as_string());
    const json::value body = root.find("body");
    if (!body.valid() || !body.is_object()) return bad_line(line_no, "`body` must be an object.");
    const json::value model = body.find("model");
    if (!model.valid() || !model.is_string() || model.as_string().empty()) {
      return bad_line(line_no, "`body.model` must be a non-empty string.");
    }
    line.model = std::string(model.as_string());
    line.body = body.source();
    const json::value stream = body.find("stream");
    if (stream.valid() && stream.is_bool() && stream.as_bool()) {
      return bad_line(line_no, "`body.stream` cannot be true in a batch.");
    }
    lines.push_back(std::move(line));
  }
  if (lines.empty()) return invalid_request("The file is empty.", "file", "empty_file");
  // Views of the stored custom_ids stay valid: the vector no longer grows.
  for (const auto& line : lines) {
    if (!custom_ids.insert(line.custom_id).second) {
      return bad_line(line.line_no, "`custom_id` \"" + line.custom_id +
                                        "\" is used by an earlier line; each must be unique.");
    }
  }
  return lines;
}

}  // namespace tollgate::gateway
