// Unit tests of the RESP command encoder: byte for byte what hiredis's own formatter makes, for
// random commands (empty, binary and long arguments, many arguments), appended after earlier ones.
#include <hiredis/hiredis.h>

#include <catch2/catch.hpp>
#include <random>

#include "metering/redis_client.hpp"

namespace {

std::string hiredis_format(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const int n =
      redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  std::string out = n > 0 ? std::string(cmd, static_cast<std::size_t>(n)) : std::string();
  redisFreeCommand(cmd);
  return out;
}

}  // namespace

TEST_CASE("RESP commands are framed exactly as hiredis frames them") {
  std::string out;
  tollgate::redis::append_resp_command(out, {"SET", "k", std::string("v\0\r\n", 4)});
  CHECK(out == std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\0\r\n\r\n", 30));
  out.clear();
  tollgate::redis::append_resp_command(out, {"GET", ""});
  CHECK(out == "*2\r\n$3\r\nGET\r\n$0\r\n\r\n");

  // Each command is appended after the one before it, as commands queue up in the outbox.
  std::mt19937 rng(20261205);
  std::string previous;
  for (int round = 0; round < 500; ++round) {
    std::vector<std::string> args(1 + rng() % 90);
    for (auto& a : args) {
      const std::size_t len = rng() % 8 == 0 ? rng() % 70000 : rng() % 40;
      a.resize(len);
      for (auto& c : a) c = static_cast<char>(rng());
    }
    const std::string reference = hiredis_format(args);
    out = previous;
    tollgate::redis::append_resp_command(out, args);
    REQUIRE(out.size() == previous.size() + reference.size());
    REQUIRE(out.compare(0, previous.size(), previous) == 0);
    REQUIRE(out.compare(previous.size(), std::string::npos, reference) == 0);
    previous = reference;
  }
}
