// Unit tests of Redis Cluster routing: key slots (CRC16 and hash tags, per the cluster
// specification) and which argument a command is routed by.
#include <catch2/catch.hpp>

#include "metering/redis_client.hpp"

using tollgate::redis::key_slot;
using tollgate::redis::routing_key;

TEST_CASE("key slots follow the cluster specification's CRC16 and hash tags") {
  CHECK(key_slot("123456789") == 0x31C3);  // the specification's CRC16 check value
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("") == 0);
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(key_slot("{user1000}.following") == key_slot("user1000"));
  // An empty tag does not count: the whole key is hashed (CRC16/XMODEM of "foo{}{bar}" is
  // 0xA0AB, 8363 modulo 16384; worked out apart from the code under test).
  CHECK(key_slot("foo{}{bar}") == 8363);
  CHECK(key_slot("foo{}{bar}") != key_slot("bar"));
  CHECK(key_slot("foo{{bar}}zap") == key_slot("{bar"));  // tag runs to the first '}'
  CHECK(key_slot("foo{bar}{zap}") == key_slot("bar"));   // only the first tag counts
  CHECK(key_slot("tg:{ten_a}:b:x:1") == key_slot("tg:{ten_a}:r:req_1"));
  for (int i = 0; i < 1000; ++i) CHECK(key_slot("k" + std::to_string(i)) < 16384);
}

TEST_CASE("commands are routed by their first key") {
  using args = std::vector<std::string>;
  CHECK(routing_key(args{"GET", "a"}) == std::optional<std::string_view>("a"));
  CHECK(routing_key(args{"hset", "h", "f", "v"}) == std::optional<std::string_view>("h"));
  CHECK(routing_key(args{"EVALSHA", "abc", "2", "k1", "k2", "arg"}) ==
        std::optional<std::string_view>("k1"));
  CHECK(routing_key(args{"evalsha", "abc", "0", "arg"}) == std::nullopt);
  CHECK(routing_key(args{"EVAL", "return 1", "1"}) == std::nullopt);  // malformed: no key
  CHECK(routing_key(args{"PING"}) == std::nullopt);
  CHECK(routing_key(args{"PUBLISH", "chan", "msg"}) == std::nullopt);
  CHECK(routing_key(args{"SUBSCRIBE", "chan"}) == std::nullopt);
  CHECK(routing_key(args{"SCRIPT", "LOAD", "return 1"}) == std::nullopt);
  CHECK(routing_key(args{"CLUSTER", "SLOTS"}) == std::nullopt);
  CHECK(routing_key(args{}) == std::nullopt);
}
