// Logger: one valid JSON object per line, failed writes are counted, not fatal, and a buffered
// logger writes every line whole, late by at most its interval.
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/log.hpp"

using namespace tollgate;

TEST_CASE("log lines are single JSON objects with ts, level, msg and fields") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  logger log{f, log_level::info};
  json_object_writer fields;
  fields.add("request_id", "req_1").add("n", std::int64_t{3});
  log.info("usage", fields);
  log.debug("dropped below the level");
  log.warn("no fields");
  std::rewind(f);
  char buf[4096];
  std::string text(buf, std::fread(buf, 1, sizeof buf, f));
  std::fclose(f);
  const auto nl = text.find('\n');
  REQUIRE(nl != std::string::npos);
  const auto first = nlohmann::json::parse(text.substr(0, nl));
  CHECK(first["msg"] == "usage");
  CHECK(first["level"] == "info");
  CHECK(first["request_id"] == "req_1");
  CHECK(first["n"] == 3);
  CHECK(first["ts"].get<std::string>().size() == 24);  // 2026-11-22T06:10:00.123Z
  const auto second = nlohmann::json::parse(text.substr(nl + 1, text.find('\n', nl + 1) - nl - 1));
  CHECK(second["msg"] == "no fields");
  CHECK(std::count(text.begin(), text.end(), '\n') == 2);
}

TEST_CASE("a line that cannot be written is counted") {
  std::FILE* full = std::fopen("/dev/full", "a");
  REQUIRE(full != nullptr);
  metrics::registry registry;
  auto& failures = registry.add_counter("t_failures_total", "x").get();
  logger log{full, log_level::info};
  log.count_write_failures(&failures);
  log.info("lost");
  log.info("lost too");
  std::fclose(full);
  CHECK(failures.value() == 2);
}

namespace {

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  return text;
}

// A pipe whose read end a thread drains; `writer` is its write end.
struct drained_pipe {
  int fds[2] = {-1, -1};
  std::FILE* writer = nullptr;
  std::string received;
  std::thread reader;
  drained_pipe() {
    REQUIRE(::pipe(fds) == 0);
    writer = fdopen(fds[1], "w");
    REQUIRE(writer != nullptr);
    reader = std::thread([this] {
      char buf[65536];
      for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) {
        received.append(buf, static_cast<std::size_t>(n));
      }
    });
  }
  // Closes the write end and returns everything read, once the reader has seen the end.
  std::string finish() {
    std::fclose(writer);
    reader.join();
    ::close(fds[0]);
    return received;
  }
};

}  // namespace

TEST_CASE("a buffered logger writes nothing until its interval or its end, then every line") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  {
    logger log{f, log_level::info};
    log.buffer_for(std::chrono::seconds(30));
    for (int i = 0; i < 3; ++i)
      log.info("buffered", json_object_writer{}.add("i", std::int64_t{i}));
    CHECK(read_all(f).empty());
  }
  const std::string text = read_all(f);
  std::fclose(f);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 3);
  CHECK(nlohmann::json::parse(text.substr(text.rfind('\n', text.size() - 2) + 1))["i"] == 2);
}

TEST_CASE("a buffered logger writes within its interval, and at once when its buffer fills") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  {
    logger log{f, log_level::info};
    log.buffer_for(std::chrono::milliseconds(50));
    log.info("soon");
    std::string soon;
    for (int tries = 0; tries < 200 && (soon = read_all(f)).empty(); ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(std::count(soon.begin(), soon.end(), '\n') == 1);
  }  // the logger ends before its file is closed
  std::fclose(f);

  std::FILE* g = std::tmpfile();
  REQUIRE(g != nullptr);
  {
    logger slow{g, log_level::info};
    slow.buffer_for(std::chrono::seconds(30));
    const std::string filler(1000, 'x');
    for (std::size_t i = 0; i * 1000 < logger::buffer_bytes; ++i) slow.info(filler);
    // Written long before the 30 s: the whole batch, ending with a whole line (read until the
    // write in progress is complete).
    std::string text;
    for (int tries = 0; tries < 200; ++tries) {
      text = read_all(g);
      if (text.size() >= logger::buffer_bytes && text.back() == '\n') break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(text.size() >= logger::buffer_bytes);
    CHECK(text.back() == '\n');
  }
  std::fclose(g);
}

TEST_CASE("a buffered logger on a pipe writes a line longer than PIPE_BUF whole, alone") {
  drained_pipe pipe;
  std::FILE* w = pipe.writer;
  {
    logger log{w, log_level::info};
    log.buffer_for(std::chrono::milliseconds(5));
    log.info("short");
    log.info(std::string(3 * PIPE_BUF, 'y'));
    log.info("short again");
  }
  const std::string received = pipe.finish();
  REQUIRE(std::count(received.begin(), received.end(), '\n') == 3);
  const std::size_t first = received.find('\n');
  const std::size_t second = received.find('\n', first + 1);
  CHECK(nlohmann::json::parse(received.substr(first + 1, second - first - 1))["msg"]
            .get<std::string>()
            .size() == 3 * PIPE_BUF);
}

TEST_CASE("a buffered logger on a pipe writes whole lines of at most PIPE_BUF bytes at a time") {
  drained_pipe pipe;
  std::FILE* w = pipe.writer;
  constexpr int threads = 4;
  constexpr int lines = 400;
  {
    logger log{w, log_level::info};
    log.buffer_for(std::chrono::milliseconds(5));
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&log, t] {
        for (int i = 0; i < lines; ++i) {
          // Lines of 300 to 3,000 bytes: each fits a write of at most PIPE_BUF, which a pipe
          // keeps whole beside the other writer's.
          const std::size_t size = 300 + (i * 37 + t) % 2700;
          log.info(std::string(size, static_cast<char>('a' + t)),
                   json_object_writer{}.add("t", std::int64_t{t}).add("i", std::int64_t{i}));
        }
      });
    }
    // Another writer of the same pipe, unbuffered, as the process log shares stderr.
    logger direct{w, log_level::info};
    for (int i = 0; i < 200; ++i)
      direct.info("direct", json_object_writer{}.add("i", std::int64_t{i}));
    for (auto& th : writers) th.join();
  }
  const std::string received = pipe.finish();
  std::size_t count = 0;
  std::size_t start = 0;
  for (std::size_t nl; (nl = received.find('\n', start)) != std::string::npos; start = nl + 1) {
    const auto line = nlohmann::json::parse(received.substr(start, nl - start));  // throws if torn
    CHECK(line.contains("msg"));
    ++count;
  }
  CHECK(start == received.size());
  CHECK(count == threads * lines + 200);
}

TEST_CASE("a buffered logger whose output blocks drops lines past its bound and counts them") {
  std::signal(SIGPIPE, SIG_IGN);  // the blocked write ends with EPIPE below, not a signal
  int fds[2];
  REQUIRE(pipe(fds) == 0);  // nobody reads: once the pipe is full, every write blocks
  std::FILE* w = fdopen(fds[1], "w");
  REQUIRE(w != nullptr);
  metrics::registry registry;
  auto& failures = registry.add_counter("t_failures_total", "x").get();
  {
    logger log{w, log_level::info};
    log.count_write_failures(&failures);
    log.buffer_for(std::chrono::milliseconds(1));
    const std::string line(1000, 'x');
    const std::size_t sent = 3 * logger::max_pending_bytes / 1000;
    for (std::size_t i = 0; i < sent; ++i) log.info(line);  // returns: never blocks on the pipe
    CHECK(failures.value() > 0);
    CHECK(failures.value() < sent);
    ::close(fds[0]);  // the blocked write fails (EPIPE), so the logger can end
  }
  std::fclose(w);
}
