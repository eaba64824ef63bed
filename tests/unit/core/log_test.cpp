// Logger: one valid JSON object per line, and failed writes are counted, not fatal.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

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
