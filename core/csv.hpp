// CSV fields as RFC 4180 writes them: as they are unless they hold a comma, a quote or a line
// break, else in quotes with quotes doubled. For the usage, invoice and export CSVs.
#pragma once
#include <string>
#include <string_view>

namespace tollgate {

inline void append_csv_field(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\n\r") == std::string_view::npos) {
    out += v;
    return;
  }
  out.push_back('"');
  for (char c : v) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace tollgate
