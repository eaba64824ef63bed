// Incremental parser for Server-Sent Events (the text/event-stream format used by OpenAI
// streaming). Bytes may arrive in any chunking: lines split across reads, CRLF split between
// reads, CR-only or LF-only line ends, comment lines, multi-line data, a leading BOM.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::backends {

struct sse_event {
  std::string event;  // "event:" field; empty means the default "message"
  std::string data;   // "data:" lines joined with '\n'
  std::string id;     // "id:" field

  // Serializes the event back to wire form, ending with the blank line.
  void append_wire(std::string& out) const;
};

class sse_parser {
 public:
  explicit sse_parser(std::uint64_t line_limit_bytes);

  // Consumes `bytes` and appends every event completed by them to `out`. Returns false (and
  // stops parsing for good) if a line exceeds the limit.
  bool feed(std::string_view bytes, std::vector<sse_event>& out);
  // Call at end of stream: an event not terminated by a blank line is dispatched, as a
  // browser's EventSource would not, but a proxy should not lose it.
  void finish(std::vector<sse_event>& out);
  bool failed() const { return failed_; }

 private:
  void process_line(std::string_view line, std::vector<sse_event>& out);

  std::uint64_t line_limit_bytes_;
  std::string line_;
  sse_event current_;
  bool has_data_ = false;
  bool skip_lf_ = false;  // the previous chunk ended in CR: a leading LF belongs to it
  bool at_start_ = true;  // a UTF-8 BOM may open the stream
  bool failed_ = false;
};

}  // namespace tollgate::backends
