// Ledger journal records: the current version round-trips its header, and version 1 (the bare
// COPY line written before versions existed) still reads.
#include <catch2/catch.hpp>

#include "billing/ledger_record.hpp"
#include "billing/ledger_writer.hpp"

using namespace tollgate;
using namespace std::literals;

TEST_CASE("ledger records: version 2 carries the settlement beside the row") {
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
  CHECK(rec->version == 2);
  CHECK(rec->settled_spend_micros == 4200);
  CHECK(rec->spend_counters == "tg:{ten_a}:b:bud_1:0,tg:{ten_a}:b:bud_2:0");
  CHECK(rec->credit_counters == "tg:{ten_a}:b:credit:ten_a:0");
  std::string row;
  billing::append_usage_row(row, r);
  CHECK(std::string(rec->copy_line) + "\n" == row);
}

TEST_CASE("ledger records: version 1 lines read as they are; unknown versions do not") {
  const std::string v1 = "ten_a\t2026-12-01 00:00:00.000+00\treq_1";
  const auto rec = billing::parse_ledger_record(v1);
  REQUIRE(rec);
  CHECK(rec->version == 1);
  CHECK(rec->copy_line == v1);
  CHECK(rec->settled_spend_micros == -1);
  // A leading NUL: string literals with "sv" keep it.
  CHECK_FALSE(billing::parse_ledger_record("\0" "3\tx\t\t\trow"sv));
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
