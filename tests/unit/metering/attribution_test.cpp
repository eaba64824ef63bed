// Attribution: the limits on end users, sessions and tags, the header and metadata forms of
// tags, and the precedence of a request's sources over the key's and project's defaults.
#include <catch2/catch.hpp>

#include "core/json_dom.hpp"
#include "gateway/openai_request.hpp"
#include "metering/attribution.hpp"

using namespace tollgate;
using metering::tag;

namespace {
metering::tags_or_error from_json(std::string_view text) {
  static std::optional<json::document> doc;
  doc = json::document::parse(text);
  REQUIRE(doc);
  return metering::tags_from_json(doc->root());
}
}  // namespace

TEST_CASE("attribution: end users and sessions within their limits") {
  CHECK_FALSE(metering::check_end_user("cust_42"));
  CHECK_FALSE(metering::check_end_user(std::string(256, 'x')));
  CHECK(metering::check_end_user(std::string(257, 'x')));
  CHECK_FALSE(metering::check_end_user("Zoë Ünicode ✓"));
  // 256 four-byte characters are 1,024 bytes but 256 characters.
  std::string emoji;
  for (int i = 0; i < 256; ++i) emoji += "\xF0\x9F\x98\x80";
  CHECK_FALSE(metering::check_end_user(emoji));
  CHECK(metering::check_end_user(""));
  CHECK(*metering::check_end_user("a\nb") == "holds a control character");
  CHECK(*metering::check_end_user("a\x7f") == "holds a control character");
  CHECK(*metering::check_end_user("\xC3\x28") == "is not valid UTF-8");
  CHECK_FALSE(metering::check_session("task-1:step-3"));
  CHECK(metering::check_session(std::string(129, 's')));
}

TEST_CASE("attribution: tags from metadata objects") {
  auto ok = from_json(R"({"team":"search","feature":"chat","empty":""})");
  REQUIRE(ok.error.empty());
  REQUIRE(ok.tags.size() == 3);
  CHECK(ok.tags[0] == tag{"empty", ""});
  CHECK(ok.tags[1] == tag{"feature", "chat"});
  CHECK(ok.tags[2] == tag{"team", "search"});
  CHECK(from_json(R"({"team":5})").error == "has the key `team` whose value is not a string");
  CHECK(from_json(R"(["team"])").error == "must be an object of string values");
  CHECK(from_json(R"({"":"x"})").error == "has a tag with an empty key");
  CHECK(from_json(R"({"a":"x","a":"y"})").error == "has the key `a` twice");
  std::string many = "{";
  for (int i = 0; i < 17; ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  many += "}";
  CHECK(from_json(many).error == "has more than 16 tags");
  CHECK(!from_json("{\"" + std::string(65, 'k') + "\":\"v\"}").error.empty());
  CHECK(!from_json("{\"k\":\"" + std::string(513, 'v') + "\"}").error.empty());
  CHECK(from_json("{\"k\":\"" + std::string(512, 'v') + "\"}").error.empty());
}

TEST_CASE("attribution: tags from the x-tollgate-tags header") {
  auto t = metering::tags_from_header(" team = search ,feature=chat,, flag");
  REQUIRE(t.error.empty());
  REQUIRE(t.tags.size() == 3);
  CHECK(t.tags[0] == tag{"feature", "chat"});
  CHECK(t.tags[1] == tag{"flag", ""});
  CHECK(t.tags[2] == tag{"team", "search"});
  CHECK(metering::tags_from_header("a=1,a=2").error == "has the key `a` twice");
  CHECK(metering::tags_from_header("=1").error == "has a tag with an empty key");
  CHECK(metering::tags_from_header("").tags.empty());
}

TEST_CASE("attribution: merging keeps the winner's value and every key once, in order") {
  const metering::tag_set winner{{"b", "w"}, {"d", "w"}};
  const metering::tag_set base{{"a", "b"}, {"b", "b"}, {"c", "b"}};
  const auto merged = metering::merge_tags(winner, base);
  REQUIRE(merged.size() == 4);
  CHECK(merged[0] == tag{"a", "b"});
  CHECK(merged[1] == tag{"b", "w"});
  CHECK(merged[2] == tag{"c", "b"});
  CHECK(merged[3] == tag{"d", "w"});
  metering::attribution a;
  a.tags = merged;
  CHECK(a.tags_json() == R"({"a":"b","b":"w","c":"b","d":"w"})");
  CHECK(metering::tags_from_json_text(a.tags_json()) == merged);
  CHECK(metering::attribution{}.tags_json().empty());
}

TEST_CASE("attribution of a request: headers over the body over the key's defaults") {
  const auto parsed = gateway::parse_completion_request(
      gateway::endpoint_kind::chat_completions,
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],"user":"body-user","metadata":{"team":"body","app":"web"}})");
  REQUIRE(parsed);
  CHECK(parsed->end_user == "body-user");
  const metering::tag_set defaults{{"cost_center", "cc1"}, {"team", "default"}};

  auto none = gateway::attribution_of(*parsed, {}, defaults);
  REQUIRE(none);
  CHECK(none->end_user == "body-user");
  CHECK(none->session.empty());
  CHECK(none->tags_json() == R"({"app":"web","cost_center":"cc1","team":"body"})");

  auto headed = gateway::attribution_of(*parsed, {"hdr-user", "team=header,env=prod", "s1"},
                                        defaults);
  REQUIRE(headed);
  CHECK(headed->end_user == "hdr-user");
  CHECK(headed->session == "s1");
  CHECK(headed->tags_json() ==
        R"({"app":"web","cost_center":"cc1","env":"prod","team":"header"})");

  auto bad = gateway::attribution_of(*parsed, {"", "a=1,a=2", ""}, defaults);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().status == 400);
  CHECK(bad.error().param == "x-tollgate-tags");
  auto bad_session = gateway::attribution_of(*parsed, {"", "", std::string(200, 's')}, {});
  REQUIRE_FALSE(bad_session);
  CHECK(bad_session.error().param == "x-tollgate-session");
}

TEST_CASE("attribution of a request: `user` and `metadata` are checked") {
  using gateway::endpoint_kind;
  auto user_number = gateway::parse_completion_request(
      endpoint_kind::chat_completions, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"user":7})");
  REQUIRE_FALSE(user_number);
  CHECK(user_number.error().param == "user");
  auto long_user = gateway::parse_completion_request(
      endpoint_kind::completions,
      R"({"model":"m","prompt":"x","user":")" + std::string(300, 'u') + "\"}");
  REQUIRE_FALSE(long_user);
  CHECK(long_user.error().param == "user");
  auto bad_meta = gateway::parse_completion_request(
      endpoint_kind::chat_completions, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"a":1}})");
  REQUIRE_FALSE(bad_meta);
  CHECK(bad_meta.error().param == "metadata");
  CHECK(bad_meta.error().message ==
        "Invalid 'metadata': it has the key `a` whose value is not a string.");
  auto null_meta = gateway::parse_completion_request(
      endpoint_kind::chat_completions, R"({"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":null,"user":null})");
  REQUIRE(null_meta);
  CHECK(null_meta->tags.empty());
  CHECK(null_meta->end_user.empty());
}
