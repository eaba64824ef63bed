// Structured logging: one JSON object per line, each written with a single write(2) on the
// underlying descriptor, so lines from different threads never interleave and no lock is held
// across the system call (appends to a regular file are atomic per write; so are pipe writes up
// to PIPE_BUF bytes). A logger may instead buffer its lines (buffer_for): a thread of its own
// then writes them in batches of whole lines, so the threads that log make no write(2).
//   {"ts":"2026-11-22T06:10:00.123Z","level":"info","msg":"listening","addr":"127.0.0.1:8080"}
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

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
  // Writes what is buffered before it goes.
  ~logger();
  logger(const logger&) = delete;
  logger& operator=(const logger&) = delete;

  // From now on lines are buffered and written about `interval` later (sooner once
  // buffer_bytes are waiting, later while a slow output holds the write before) by a thread
  // of this logger, each write(2) holding whole lines only, and at most PIPE_BUF bytes unless
  // `out` is a regular file. A line is lost if the process dies before its write. Call once,
  // before the logger is shared, and after count_write_failures.
  void buffer_for(std::chrono::milliseconds interval);
  // Writes what is buffered and stops buffering: later lines are written as they come. Call it
  // before closing `out`, and only once nothing logs through this logger any more.
  void finish_buffering();
  static constexpr std::size_t buffer_bytes = 64 * 1024;
  // Lines waiting beyond this (the output blocks: a full pipe nobody reads) are dropped and
  // counted as failed writes, so a stuck output costs neither the request path nor memory (a
  // shutdown still waits for the write in progress).
  static constexpr std::size_t max_pending_bytes = 8 * 1024 * 1024;

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
  void write_out(std::string_view text);
  void write_batches(std::string_view text);
  void run_flusher();

  std::FILE* out_;
  log_level min_level_;
  metrics::counter* write_failures_ = nullptr;
  // Buffered mode (buffer_for): lines wait in pending_ until the flusher takes them.
  bool buffered_ = false;
  bool pipe_like_ = false;  // `out` is not a regular file: writes of at most PIPE_BUF bytes
  std::chrono::milliseconds interval_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  std::string pending_;
  bool stopping_ = false;
  std::thread flusher_;
};

}  // namespace tollgate
