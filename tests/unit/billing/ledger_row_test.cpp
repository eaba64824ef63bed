// Ledger rows in COPY text format, and API key and object id shapes.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "billing/api_keys.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/pg.hpp"
#include "billing/rating.hpp"
#include "billing/tag_sets.hpp"

using namespace tollgate;

TEST_CASE("a usage record becomes one COPY text line in column order") {
  metering::usage_record r;
  r.tenant_id = "ten_1";
  r.occurred_at_ms = 1795346379824;  // 2026-11-22 11:19:39.824 UTC
  r.request_id = "req_abc";
  r.api_key_id = "key_1";
  r.endpoint = "/v1/chat/completions";
  r.model = "m\tx\\y";
  r.upstream = "dev";
  r.stream = true;
  r.status = 200;
  r.prompt_tokens = 9;
  r.completion_tokens = 3;
  r.counted_prompt_tokens = 9;
  r.usage_reported = true;
  r.latency_us = 712;
  std::string line;
  billing::append_usage_row(line, r);
  CHECK(line ==
        "ten_1\t2026-11-22 11:19:39.824+00\treq_abc\t\\N\tkey_1\t/v1/chat/completions\t"
        "m\\tx\\\\y\tdev\tt\tf\t200\t9\t0\t3\t0\t9\t\\N\tt\tf\t712\t\\N\tf\t\\N\t\\N\t"
        "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0\n");
  // One field per column.
  std::size_t tabs = 0;
  for (char c : line) tabs += c == '\t';
  std::size_t commas = 0;
  for (const char* c = billing::usage_event_columns; *c; ++c) commas += *c == ',';
  CHECK(tabs == commas);
}

TEST_CASE("a usage record's time is written as gmtime would, to the millisecond") {
  std::mt19937_64 rng(63);
  std::vector<std::int64_t> times = {0, 999, 951'782'400'000 /* 2000-02-29 */,
                                     1'798'761'599'999 /* 2026-12-31 23:59:59.999 */,
                                     4'102'444'800'000 /* 2100-01-01 */};
  for (int i = 0; i < 2000; ++i) {
    times.push_back(std::uniform_int_distribution<std::int64_t>(0, 4'102'444'800'000)(rng));
  }
  for (const std::int64_t ms : times) {
    INFO(ms);
    metering::usage_record r;
    r.tenant_id = "t";
    r.request_id = "r";
    r.occurred_at_ms = ms;
    std::string line;
    billing::append_usage_row(line, r);
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char expected[48];
    std::snprintf(expected, sizeof expected, "t\t%04d-%02d-%02d %02d:%02d:%02d.%03d+00\t",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    CHECK(line.rfind(expected, 0) == 0);
  }
}

TEST_CASE("a usage record's attribution fills the three columns before the attempts and trace") {
  metering::usage_record r;
  r.tenant_id = "ten_1";
  r.request_id = "req_abc";
  r.attribution.end_user = "cust\t42";
  r.attribution.tags = {{"feature", "chat"}, {"team", "se\\arch"}};
  r.attribution.session = "task-7";
  std::string line;
  billing::append_usage_row(line, r);
  // COPY text escapes the tab and the backslash (the JSON's own escape included).
  const std::string tail =
      "\tcust\\t42\t{\"feature\":\"chat\",\"team\":\"se\\\\\\\\arch\"}\ttask-7"
      "\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0\n";
  REQUIRE(line.size() > tail.size());
  CHECK(line.substr(line.size() - tail.size()) == tail);
}

TEST_CASE("the writer finds a line's tags and reads them back as JSON") {
  metering::usage_record r;
  r.tenant_id = "ten_1";
  r.request_id = "req_abc";
  r.attribution.end_user = "u";
  r.attribution.tags = {{"team", "se\\arch\t\"x\""}};
  std::string line;
  billing::append_usage_row(line, r);
  line.pop_back();
  const auto span = billing::tags_field_of(line);
  REQUIRE(span);
  const std::string field = line.substr(span->first, span->second);
  CHECK(field == "{\"team\":\"se\\\\\\\\arch\\\\t\\\\\"x\\\\\"\"}");
  CHECK(billing::tag_object_of_field(field) == std::optional<std::string>(r.attribution.tags_json()));
  // The fields after it are the session, the endpoint, the attempts, the routing rule and the
  // trace id (NULL here) and the four token class counts, the one before it the end user.
  CHECK(line.substr(span->first + span->second) == "\t\\N\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0");
  CHECK(line.substr(span->first - 2, 2) == "u\t");

  // No tags, a short line, and fields that are not an object of strings.
  r.attribution.tags.clear();
  std::string plain;
  billing::append_usage_row(plain, r);
  plain.pop_back();
  const auto none = billing::tags_field_of(plain);
  REQUIRE(none);
  CHECK(plain.substr(none->first, none->second) == "\\N");
  CHECK(!billing::tag_object_of_field("\\N"));
  CHECK(!billing::tags_field_of("abc"));
  CHECK(!billing::tags_field_of(""));
  // The writer finds the tags from the line's end: the columns after them are counted here.
  const std::string_view columns = billing::usage_event_columns;
  const std::size_t at = columns.find("tag_set_id");
  REQUIRE(at != std::string_view::npos);
  CHECK(static_cast<std::size_t>(std::count(columns.begin() + at, columns.end(), ',')) ==
        billing::usage_columns_after_tags);
  for (const char* bad : {"[1]", "{\"a\":1}", "{\"a\":", "\"s\"", "{\"a\":{\"b\":\"c\"}}", ""}) {
    CHECK(!billing::tag_object_of_field(bad));
  }
  CHECK(billing::tag_object_of_field("{}") == std::optional<std::string>("{}"));
}

TEST_CASE("request-supplied text is capped and stripped of NUL for PostgreSQL") {
  metering::usage_record r;
  r.tenant_id = "t";
  r.model = std::string("bad\0model", 9);
  std::string line;
  billing::append_usage_row(line, r);
  CHECK(line.find("badmodel") != std::string::npos);

  r.model = std::string(300, 'a') + "\xC3\xA9";
  line.clear();
  billing::append_usage_row(line, r);
  CHECK(line.find(std::string(256, 'a') + "\t") != std::string::npos);
  // A cut never leaves half a UTF-8 character.
  r.model = std::string(255, 'a') + "\xC3\xA9" + "bbb";
  line.clear();
  billing::append_usage_row(line, r);
  CHECK(line.find(std::string(255, 'a') + "\t") != std::string::npos);
  // An untouched short name keeps its multi-byte characters.
  r.model = "mod\xC3\xA9le";
  line.clear();
  billing::append_usage_row(line, r);
  CHECK(line.find("mod\xC3\xA9le\t") != std::string::npos);
}

TEST_CASE("COPY text escaping") {
  std::string out;
  pg::append_copy_text(out, "a\\b\tc\nd\re");
  CHECK(out == "a\\\\b\\tc\\nd\\re");
  out.clear();
  pg::append_copy_text(out, "plain");
  pg::append_copy_text(out, "");
  pg::append_copy_text(out, "\\end\\");
  CHECK(out == "plain\\\\end\\\\");
}

// Every byte value at every offset of a 19-byte string, across the eight-byte words the
// escaping skips at once: only backslash, tab, newline and carriage return are escaped.
TEST_CASE("COPY text escapes each byte wherever it stands in a word") {
  for (int c = 0; c < 256; ++c) {
    const char byte = static_cast<char>(c);
    std::string escaped(1, byte);
    if (byte == '\\') escaped = "\\\\";
    if (byte == '\t') escaped = "\\t";
    if (byte == '\n') escaped = "\\n";
    if (byte == '\r') escaped = "\\r";
    for (std::size_t at = 0; at < 19; ++at) {
      std::string s(19, 'x');
      s[at] = byte;
      std::string out = "<";
      pg::append_copy_text(out, s);
      INFO("byte " << c << " at " << at);
      CHECK(out == "<" + std::string(at, 'x') + escaped + std::string(18 - at, 'x'));
    }
  }
  // Two to escape in one word, and a word that ends on one.
  std::string out;
  pg::append_copy_text(out, "ab\tcd\nefghijk\r");
  CHECK(out == "ab\\tcd\\nefghijk\\r");
  // Random text of bytes next to those the word test looks for (controls that are not escaped,
  // non-ASCII bytes), several in a word, against a byte-by-byte escape.
  const unsigned char alphabet[] = {0, 1, 8, 9, 10, 11, 12, 13, 14, '\\', 'a', 0x7f, 0x80, 0xff};
  std::mt19937 rng(7);
  for (int round = 0; round < 5000; ++round) {
    std::string text(rng() % 41, '\0');
    for (auto& c : text) c = static_cast<char>(alphabet[rng() % sizeof alphabet]);
    std::string want;
    for (const char c : text) {
      if (c == '\\')
        want += "\\\\";
      else if (c == '\t')
        want += "\\t";
      else if (c == '\n')
        want += "\\n";
      else if (c == '\r')
        want += "\\r";
      else
        want.push_back(c);
    }
    std::string got;
    pg::append_copy_text(got, text);
    CHECK(got == want);
  }
}

namespace {

// A record's COPY line as the ledger writes it, without its newline.
std::string copy_line_of(const metering::usage_record& r) {
  std::string line;
  billing::append_usage_row(line, r);
  line.pop_back();
  return line;
}

// Sets TZ to UTC for its lifetime and restores the value before (or its absence) when it ends,
// also when a failed REQUIRE ends the test early.
class utc_zone_while_alive {
 public:
  utc_zone_while_alive() {
    const char* const before = std::getenv("TZ");
    if (before != nullptr) before_ = before;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  ~utc_zone_while_alive() {
    if (before_) {
      setenv("TZ", before_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }
  utc_zone_while_alive(const utc_zone_while_alive&) = delete;
  utc_zone_while_alive& operator=(const utc_zone_while_alive&) = delete;

 private:
  std::optional<std::string> before_;
};

}  // namespace

// The event time as the rating reads it from the row: every day of four years around a leap
// year at three times of day, and hand-edited times past a month's or a minute's end, which
// run over into the next one as timegm counts them.
TEST_CASE("the rating reads the event time back to the second") {
  metering::usage_record r;
  r.tenant_id = "t1";
  r.request_id = "req";
  r.model = "m";
  r.status = 200;
  for (std::int64_t day = 19358; day < 19358 + 4 * 366; ++day) {  // 2023-01-01 onwards
    for (const std::int64_t second : {0, 43'210, 86'399}) {
      r.occurred_at_ms = (day * 86'400 + second) * 1000 + 999;
      const auto e = billing::parse_rating_event(copy_line_of(r));
      REQUIRE(e);
      CHECK(e->occurred_at_s == day * 86'400 + second);
    }
  }
  r.occurred_at_ms = 1'700'000'000'000;
  const std::string line = copy_line_of(r);
  const std::size_t at = line.find("2023-11-14 22:13:20");
  REQUIRE(at != std::string::npos);
  // Days 28 to 31 of every month, in leap and common years on both sides of 1970, at the end
  // of a minute and at second 60, against timegm (in UTC without leap seconds, as the ledger
  // counts time).
  const utc_zone_while_alive utc;  // restores TZ however the test ends
  for (const int year : {1969, 1970, 1999, 2000, 2023, 2024, 2100}) {
    for (int month = 1; month <= 12; ++month) {
      for (int day = 28; day <= 31; ++day) {
        for (const int second : {59, 60}) {
          char edited_time[32];
          std::snprintf(edited_time, sizeof edited_time, "%04d-%02d-%02d 23:59:%02d", year, month,
                        day, second);
          std::string edited = line;
          edited.replace(at, 19, edited_time);
          std::tm tm{};
          REQUIRE(strptime(edited_time, "%Y-%m-%d %H:%M:%S", &tm) != nullptr);
          const auto e = billing::parse_rating_event(edited);
          INFO(edited_time);
          REQUIRE(e);
          CHECK(e->occurred_at_s == static_cast<std::int64_t>(timegm(&tm)));
        }
      }
    }
  }
}

TEST_CASE("the rating reads escaped values back as they were") {
  metering::usage_record r;
  r.tenant_id = "t\\\\en\t1\r";
  r.request_id = "\nreq";
  r.model = "m\tx\\y";
  r.occurred_at_ms = 1795346379824;
  r.status = 200;
  r.prompt_tokens = 9;
  const std::string line = copy_line_of(r);
  const auto e = billing::parse_rating_event(line);
  REQUIRE(e);
  CHECK(e->tenant_id == r.tenant_id);
  CHECK(e->request_id == r.request_id);
  CHECK(e->model == r.model);
  // An escape COPY text does not make is refused, as is a lone backslash at the end.
  for (const std::string bad : {"m\\x", "m\\"}) {
    std::string edited = line;
    edited.replace(edited.find("m\\tx\\\\y"), 7, bad);
    CHECK_FALSE(billing::parse_rating_event(edited));
  }
}

TEST_CASE("API keys: tg- and 43 base62 characters, all different; SHA-256 as stored") {
  std::set<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    const std::string k = billing::new_api_key();
    CHECK(k.size() == 46);
    CHECK(billing::is_well_formed_api_key(k));
    keys.insert(k);
  }
  CHECK(keys.size() == 200);
  CHECK_FALSE(billing::is_well_formed_api_key("tg-short"));
  CHECK_FALSE(billing::is_well_formed_api_key("sk-" + std::string(43, 'a')));
  CHECK_FALSE(billing::is_well_formed_api_key("tg-" + std::string(42, 'a') + "!"));
  const std::string h = billing::sha256_bytes("abc");
  REQUIRE(h.size() == 32);
  CHECK(static_cast<unsigned char>(h[0]) == 0xba);
  CHECK(static_cast<unsigned char>(h[31]) == 0xad);
}

TEST_CASE("object ids carry their type and sort in creation order") {
  const std::string a = billing::new_object_id("ten");
  CHECK(a.size() == 4 + 18);
  CHECK(a.rfind("ten_", 0) == 0);
  std::string prev = billing::new_object_id("key");
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const std::string next = billing::new_object_id("key");
    CHECK(next.substr(0, 14) >= prev.substr(0, 14));
    prev = next;
  }
}
