// Input parsing for the Batch API, with no I/O (fuzzed by tests/fuzz/fuzz_batch_input.cpp):
// the multipart/form-data body of POST /v1/files, and the JSONL of a batch input file, checked
// line by line. Every error names what to fix, and for a file the line (1-based) it is on.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tollgate::gateway {

// One part of a multipart/form-data body; views into the body.
struct form_part {
  std::string name;      // the Content-Disposition name
  std::string filename;  // the Content-Disposition filename ("" when absent)
  bool has_filename = false;
  std::string_view content;
};

// Parses `body` by the boundary named in `content_type` (RFC 7578). Errors are 400s.
result<std::vector<form_part>> parse_multipart(std::string_view content_type,
                                               std::string_view body);

// One line of a batch input file, as validated.
struct batch_input_line {
  int line_no = 0;
  std::string_view text;  // the line as uploaded, its line end included
  std::string_view json;  // the line without its line end
  std::string custom_id;
  std::string url;        // "/v1/chat/completions" or "/v1/completions"
  std::string model;      // body.model
  std::string_view body;  // the request body: the `body` object's JSON text
};

struct batch_file_limits {
  std::size_t max_lines = 50000;
  std::size_t max_custom_id_bytes = 512;
};

// Splits `content` into lines (LF or CRLF; a last line without a line end counts) and checks
// each: a JSON object with a non-empty string `custom_id` (unique in the file), `method`
// "POST", `url` one of the two completion endpoints, and a `body` object naming a `model`
// without `stream: true`. Blank lines are errors; an empty file is an error.
result<std::vector<batch_input_line>> parse_batch_file(std::string_view content,
                                                       const batch_file_limits& limits);

}  // namespace tollgate::gateway
