// Ledger journal records: the current version round-trips its header, and versions 1 (the bare
// COPY line written before versions existed), 2 (before attribution), 3 (before the upstream
// endpoint and attempts), 4 (before the trace id), 5 (before the cache-write, image and audio
// token columns) and 6 (before a credit hold's bundle coverage) still read.
#include <catch2/catch.hpp>

#include "billing/ledger_record.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/rating.hpp"

using namespace tollgate;
using namespace std::literals;

TEST_CASE("ledger records: version 7 carries the settlement beside the row") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_1";
  r.occurred_at_ms = 1'790'000'000'123;
  r.settled_spend_micros = 4200;
  r.spend_counters = {"tg:{ten_a}:b:bud_1:0", "tg:{ten_a}:b:bud_2:0"};
  r.credit_counters = {"tg:{ten_a}:b:credit:ten_a:0"};
  std::string out;
  billing::append_ledger_record(out, r);
  REQUIRE(out.back() == '\n');
  REQUIRE(out.front() == '\0');
  const auto rec = billing::parse_ledger_record(std::string_view(out).substr(0, out.size() - 1));
  REQUIRE(rec);
  CHECK(rec->version == 7);
  CHECK(rec->settled_credit_micros == -1);  // no bundle coverage
  CHECK_FALSE(billing::lacks_attribution(*rec));
  CHECK(billing::missing_columns_null(*rec).empty());
  CHECK(rec->settled_spend_micros == 4200);
  CHECK(rec->spend_counters == "tg:{ten_a}:b:bud_1:0,tg:{ten_a}:b:bud_2:0");
  CHECK(rec->credit_counters == "tg:{ten_a}:b:credit:ten_a:0");
  std::string row;
  billing::append_usage_row(row, r);
  CHECK(std::string(rec->copy_line) + "\n" == row);
}

TEST_CASE("ledger records: version 7 carries a credit hold's bundle coverage") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_1";
  r.settled_spend_micros = 4200;
  r.credit_counters = {"tg:{ten_a}:b:credit:ten_a:0"};
  r.settled_credit_micros = 1500;
  r.cover_tokens[0] = 70;
  r.cover_tokens[1] = 40;
  std::string out;
  billing::append_ledger_record(out, r);
  const auto rec = billing::parse_ledger_record(std::string_view(out).substr(0, out.size() - 1));
  REQUIRE(rec);
  CHECK(rec->settled_spend_micros == 4200);
  CHECK(rec->settled_credit_micros == 1500);
  CHECK(rec->cover_tokens[0] == 70);
  CHECK(rec->cover_tokens[1] == 40);
  std::string row;
  billing::append_usage_row(row, r);
  CHECK(std::string(rec->copy_line) + "\n" == row);
  // Version 6 records (no coverage field) still read, without coverage.
  const auto v6 = billing::parse_ledger_record("\0" "6\t5\t\tk\trow"sv);
  REQUIRE(v6);
  CHECK(v6->settled_credit_micros == -1);
  CHECK(v6->credit_counters == "k");
  CHECK(v6->copy_line == "row");
  // A damaged coverage field is refused.
  CHECK_FALSE(billing::parse_ledger_record("\0" "7\t5\t\tk\t12,1\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "7\t5\t\tk\t12,1,-2\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "7\t5\t\tk\t12,1,2,3\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "7\t5\t\tk\t12,,2\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "7\t5\t\tk\trow"sv));  // no coverage field
  const auto v7 = billing::parse_ledger_record("\0" "7\t5\t\tk\t12,1,2\trow"sv);
  REQUIRE(v7);
  CHECK(v7->copy_line == "row");
}

TEST_CASE("ledger records: version 1 lines read as they are; unknown versions do not") {
  const std::string v1 = "ten_a\t2026-12-01 00:00:00.000+00\treq_1";
  const auto rec = billing::parse_ledger_record(v1);
  REQUIRE(rec);
  CHECK(rec->version == 1);
  CHECK(rec->copy_line == v1);
  CHECK(rec->settled_spend_micros == -1);
  // A leading NUL: string literals with "sv" keep it.
  CHECK(billing::lacks_attribution(*rec));
  CHECK_FALSE(billing::parse_ledger_record("\0" "3\tx\t\t\trow"sv));
  CHECK_FALSE(
      billing::parse_ledger_record("\0"
                                   "8\t5\t\t\t\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "42\t5\t\t\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "2\t-5\t\t\trow"sv));
  CHECK_FALSE(billing::parse_ledger_record("\0" "2\t5"sv));
  CHECK(billing::parse_ledger_record("\0" "2\t5\t\t\trow"sv));
  metering::usage_record none;
  none.tenant_id = "t";
  std::string out;
  billing::append_ledger_record(out, none);
  const auto n = billing::parse_ledger_record(std::string_view(out).substr(0, out.size() - 1));
  REQUIRE(n);
  CHECK(n->settled_spend_micros == -1);
  CHECK(n->spend_counters.empty());
}

TEST_CASE("ledger records: a version 2 line replays with its attribution columns NULL") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_2";
  r.model = "m";
  r.prompt_tokens = 5;
  r.completion_tokens = 2;
  std::string v3;
  billing::append_usage_row(v3, r);
  v3.pop_back();
  // The same row as version 2 wrote it: without the attribution, attempts, trace and token
  // class columns.
  std::string_view v2_row = v3;
  for (int i = 0; i < 11; ++i) v2_row = v2_row.substr(0, v2_row.rfind('\t'));
  const std::string v2 = "\0"s + "2\t\\N\t\t\t" + std::string(v2_row);
  const auto rec = billing::parse_ledger_record(v2);
  REQUIRE(rec);
  CHECK(rec->version == 2);
  REQUIRE(billing::lacks_attribution(*rec));
  CHECK(std::string(rec->copy_line) + std::string(billing::missing_columns_null(*rec)) == v3);
  const auto event = billing::parse_rating_event(v3);
  REQUIRE(event);
  CHECK(event->input == 5);
  CHECK_FALSE(billing::parse_rating_event(v2_row));
}

TEST_CASE("ledger records: a version 3 line replays with endpoint, attempts and rule NULL") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_3";
  r.model = "m";
  r.prompt_tokens = 7;
  r.attribution.end_user = "u1";
  r.upstream_endpoint = "http://10.0.0.2:8000/v1";
  r.attempts = 2;
  std::string v4;
  billing::append_usage_row(v4, r);
  v4.pop_back();
  CHECK(v4.ends_with("\tu1\t\\N\t\\N\thttp://10.0.0.2:8000/v1\t2\t\\N\t\\N\t0\t0\t0\t0"));
  // As version 3 wrote it: without the last eight columns.
  std::string_view v3_row = v4;
  for (int i = 0; i < 8; ++i) v3_row = v3_row.substr(0, v3_row.rfind('\t'));
  const std::string v3 = "\0"s + "3\t\\N\t\t\t" + std::string(v3_row);
  const auto rec = billing::parse_ledger_record(v3);
  REQUIRE(rec);
  CHECK(rec->version == 3);
  CHECK_FALSE(billing::lacks_attribution(*rec));
  const std::string completed = std::string(rec->copy_line) +
                                std::string(billing::missing_columns_null(*rec));
  CHECK(completed == std::string(v3_row) + "\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0");
  const auto event = billing::parse_rating_event(completed);
  REQUIRE(event);
  CHECK(event->input == 7);
  CHECK_FALSE(billing::parse_rating_event(v3_row));
  // No attempt (refused before forwarding): NULL endpoint and attempts.
  metering::usage_record refused;
  refused.tenant_id = "t";
  std::string row;
  billing::append_usage_row(row, refused);
  CHECK(row.ends_with("\t\\N\t\\N\t\\N\t\\N\t0\t0\t0\t0\n"));
}

TEST_CASE("ledger records: version 5 carries the trace id; a version 4 line replays with NULL") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_5";
  r.model = "m";
  r.prompt_tokens = 3;
  r.upstream_endpoint = "e1";
  r.attempts = 1;
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  std::string v6;
  billing::append_usage_row(v6, r);
  v6.pop_back();
  CHECK(v6.ends_with("\te1\t1\t\\N\t4bf92f3577b34da6a3ce929d0e0e4736\t0\t0\t0\t0"));
  // As version 4 wrote it: without the trace id and the four token class columns.
  std::string_view v4_row = v6;
  for (int i = 0; i < 5; ++i) v4_row = v4_row.substr(0, v4_row.rfind('\t'));
  const std::string v4 = "\0"s + "4\t\\N\t\t\t" + std::string(v4_row);
  const auto rec = billing::parse_ledger_record(v4);
  REQUIRE(rec);
  CHECK(rec->version == 4);
  const std::string completed =
      std::string(rec->copy_line) + std::string(billing::missing_columns_null(*rec));
  CHECK(completed == std::string(v4_row) + "\t\\N\t0\t0\t0\t0");
  const auto event = billing::parse_rating_event(completed);
  REQUIRE(event);
  CHECK(event->input == 3);
  CHECK_FALSE(billing::parse_rating_event(v4_row));
  CHECK(billing::parse_rating_event(v6));
}

TEST_CASE("ledger records: cache-write, image and audio tokens (version 6's columns); 5 replays 0") {
  metering::usage_record r;
  r.tenant_id = "ten_a";
  r.request_id = "req_6";
  r.model = "m";
  r.status = 200;
  r.prompt_tokens = 100;
  r.cached_tokens = 10;
  r.cache_write_tokens = 20;
  r.image_prompt_tokens = 30;
  r.audio_prompt_tokens = 15;
  r.completion_tokens = 50;
  r.audio_completion_tokens = 40;
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  std::string rec6;
  billing::append_ledger_record(rec6, r);
  const auto parsed6 =
      billing::parse_ledger_record(std::string_view(rec6).substr(0, rec6.size() - 1));
  REQUIRE(parsed6);
  CHECK(parsed6->version == billing::ledger_record_version);  // the COPY line of version 6
  const std::string v6(parsed6->copy_line);
  CHECK(v6.ends_with("\t4bf92f3577b34da6a3ce929d0e0e4736\t20\t30\t15\t40"));
  const auto e6 = billing::parse_rating_event(v6);
  REQUIRE(e6);
  // The prompt's parts in order (cached, cache write, image, audio), the rest plain input.
  CHECK(e6->cached_input == 10);
  CHECK(e6->cache_write == 20);
  CHECK(e6->image_input == 30);
  CHECK(e6->audio_input == 15);
  CHECK(e6->input == 25);
  CHECK(e6->audio_output == 40);
  CHECK(e6->output == 10);
  CHECK(e6->prompt_tokens == 100);
  CHECK(e6->answered);
  // As version 5 wrote it: without the four token class columns, which replay as 0.
  std::string_view v5_row = v6;
  for (int i = 0; i < 4; ++i) v5_row = v5_row.substr(0, v5_row.rfind('\t'));
  const std::string v5 = "\0"s + "5\t\\N\t\t\t" + std::string(v5_row);
  const auto rec = billing::parse_ledger_record(v5);
  REQUIRE(rec);
  CHECK(rec->version == 5);
  const std::string completed =
      std::string(rec->copy_line) + std::string(billing::missing_columns_null(*rec));
  CHECK(completed == std::string(v5_row) + "\t0\t0\t0\t0");
  const auto e5 = billing::parse_rating_event(completed);
  REQUIRE(e5);
  CHECK(e5->cached_input == 10);
  CHECK(e5->cache_write == 0);
  CHECK(e5->input == 90);
  CHECK(e5->output == 50);
  CHECK_FALSE(billing::parse_rating_event(v5_row));
}
