// Structured JSON-lines logger: see log.hpp.
#include "core/log.hpp"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
  if (!buffered_) {
    write_out(line);
    return;
  }
  bool full = false;
  bool dropped = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.size() + line.size() > max_pending_bytes) {
      dropped = true;
    } else {
      pending_ += line;
      full = pending_.size() >= buffer_bytes;
    }
  }
  if (dropped && write_failures_ != nullptr) write_failures_->inc();
  if (full) wake_.notify_one();
}

// One write(2) loop for `text` (whole lines).
void logger::write_out(std::string_view text) {
  if (text.empty()) return;
  const int fd = fileno(out_);
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {  // a short write only happens on pipes under pressure or on signals
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Dropping the lines beats blocking the request path; the counter makes it visible, a
      // line at a time (a buffered batch holds many).
      if (write_failures_ != nullptr) {
        write_failures_->inc(static_cast<std::uint64_t>(std::count(p, p + left, '\n')));
      }
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// Writes buffered lines: all at once to a regular file (an append is atomic whatever its
// size); to a pipe or terminal in pieces of whole lines of at most PIPE_BUF bytes, so that
// other writers' lines (the process log on the same stderr) never land inside one of ours.
void logger::write_batches(std::string_view text) {
  if (!pipe_like_) {
    write_out(text);
    return;
  }
  while (!text.empty()) {
    std::size_t cut = text.size();
    if (cut > PIPE_BUF) {
      const std::size_t last_end = text.rfind('\n', PIPE_BUF - 1);
      // A single line longer than PIPE_BUF goes alone.
      cut = last_end != std::string_view::npos ? last_end + 1 : text.find('\n') + 1;
      if (cut == 0) cut = text.size();
    }
    write_out(text.substr(0, cut));
    text.remove_prefix(cut);
  }
}

void logger::buffer_for(std::chrono::milliseconds interval) {
  struct stat st {};
  pipe_like_ = fstat(fileno(out_), &st) != 0 || !S_ISREG(st.st_mode);
  interval_ = interval;
  pending_.reserve(buffer_bytes);
  buffered_ = true;
  flusher_ = std::thread([this] { run_flusher(); });
}

void logger::run_flusher() {
  std::string batch;
  batch.reserve(buffer_bytes);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, interval_,
                   [this] { return stopping_ || pending_.size() >= buffer_bytes; });
    const bool last = stopping_;
    batch.clear();
    batch.swap(pending_);  // the two buffers keep their capacity, in turn
    lock.unlock();
    write_batches(batch);
    lock.lock();
    if (last && pending_.empty()) return;
  }
}

void logger::finish_buffering() {
  if (!flusher_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  flusher_.join();
  buffered_ = false;
}

logger::~logger() {
  finish_buffering();
}

}  // namespace tollgate
