// Structured JSON-lines logger: see log.hpp.
#include "core/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

namespace tollgate {
namespace {

const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "info";
}

// RFC 3339 UTC with milliseconds.
// The "YYYY-MM-DDTHH:MM:SS" part is formatted once per second per thread.
void append_timestamp(std::string& out) {
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[64];
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  const auto secs = static_cast<std::time_t>(ms / 1000);
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_secs = secs;
  }
  out.append(cached, 19);
  const auto milli = static_cast<int>(ms % 1000);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + milli / 100));
  out.push_back(static_cast<char>('0' + milli / 10 % 10));
  out.push_back(static_cast<char>('0' + milli % 10));
  out.push_back('Z');
}

}  // namespace

bool parse_log_level(std::string_view text, log_level& out) {
  if (text == "debug")
    out = log_level::debug;
  else if (text == "info")
    out = log_level::info;
  else if (text == "warn")
    out = log_level::warn;
  else if (text == "error")
    out = log_level::error;
  else
    return false;
  return true;
}

void logger::log(log_level level, std::string_view msg, const json_object_writer& fields) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(64 + msg.size() + fields.members().size());
  line += "{\"ts\":\"";
  append_timestamp(line);
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"msg\":";
  append_json_string(line, msg);
  if (!fields.empty()) {
    line.push_back(',');
    line += fields.members();
  }
  line.push_back('}');
  line.push_back('\n');
  const int fd = fileno(out_);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {  // a short write only happens on pipes under pressure or on signals
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Dropping the line beats blocking the request path; the counter makes it visible.
      if (write_failures_ != nullptr) write_failures_->inc();
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace tollgate
