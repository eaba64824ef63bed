// Structured logging: one JSON object per line, each written with a single write(2) on the
// underlying descriptor, so lines from different threads never interleave and no lock is held
// across the system call (appends to a regular file are atomic per write; so are pipe writes up
// to PIPE_BUF bytes).
//   {"ts":"2026-11-22T06:10:00.123Z","level":"info","msg":"listening","addr":"127.0.0.1:8080"}
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

#include "core/json_text.hpp"
#include "core/metrics.hpp"

namespace tollgate {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

// Parses "debug" | "info" | "warn" | "error"; returns false for anything else.
bool parse_log_level(std::string_view text, log_level& out);

class logger {
 public:
  // Writes to `out` (not owned). Lines below `min_level` are dropped.
  explicit logger(std::FILE* out = stderr, log_level min_level = log_level::info)
      : out_(out), min_level_(min_level) {}

  bool enabled(log_level level) const { return level >= min_level_; }
  // Counts lines that could not be written (disk full, closed descriptor). Not owned.
  void count_write_failures(metrics::counter* failures) { write_failures_ = failures; }
  void set_level(log_level level) { min_level_ = level; }

  // `fields` holds extra key/values; its keys must not repeat ts/level/msg.
  void log(log_level level, std::string_view msg, const json_object_writer& fields = {});
  void debug(std::string_view msg, const json_object_writer& f = {}) {
    log(log_level::debug, msg, f);
  }
  void info(std::string_view msg, const json_object_writer& f = {}) {
    log(log_level::info, msg, f);
  }
  void warn(std::string_view msg, const json_object_writer& f = {}) {
    log(log_level::warn, msg, f);
  }
  void error(std::string_view msg, const json_object_writer& f = {}) {
    log(log_level::error, msg, f);
  }

 private:
  std::FILE* out_;
  log_level min_level_;
  metrics::counter* write_failures_ = nullptr;
};

}  // namespace tollgate
