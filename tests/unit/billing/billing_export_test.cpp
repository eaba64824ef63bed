// Exports to other billing systems: Stripe invoice items from an invoice, CloudEvents from
// usage events (billing/billing_export.hpp).
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "billing/billing_export.hpp"

using namespace tollgate;
using nlohmann::json;

namespace {

// An invoice as invoice_store answers it: two lines, a late adjustment of the month before,
// one credit. Lines and adjustment round together to total_minor; the credit on its own.
const char* const invoice = R"({"object":"invoice","id":"inv_1","tenant_id":"ten_a",
  "period":"2026-11","status":"finalized","number":"TG-2026-000007","currency":"EUR",
  "price_book_id":"pb_1","minor_digits":2,
  "lines":[{"model":"gpt-4o","token_class":"input","batch":false,"tier":1,"tokens":1200000,
            "amount_micros":3000000,"amount_minor":300},
           {"model":"gpt-4o","token_class":"output","batch":true,"tier":2,"tokens":7,
            "amount_micros":1234567,"amount_minor":123}],
  "adjustments":[{"period":"2026-10","model":"gpt-4o","token_class":"input","batch":false,
                  "tokens":10,"amount_micros":25000,"amount_minor":3}],
  "unpriced":[],"total_micros":4259567,"total_minor":426,
  "credits":[{"period":"2026-11","grant_id":"grant_9","kind":"promotional",
              "amount_micros":1000000,"amount_minor":100}],
  "credits_micros":1000000,"credits_returned_micros":0,
  "total_due_micros":3259567,"total_due_minor":326})";

}  // namespace

TEST_CASE("an invoice becomes Stripe invoice items that sum to what is due") {
  const json items = json::parse(billing::stripe_invoice_items_json(invoice));
  REQUIRE(items["object"] == "list");
  REQUIRE(items["data"].size() == 4);
  std::int64_t sum = 0;
  for (const auto& it : items["data"]) {
    CHECK(it["object"] == "invoiceitem");
    CHECK(it["customer"] == "ten_a");
    CHECK(it["currency"] == "eur");
    CHECK(it["metadata"]["tollgate_invoice_number"] == "TG-2026-000007");
    // Stripe metadata values are strings.
    for (const auto& [k, v] : it["metadata"].items()) CHECK(v.is_string());
    sum += it["amount"].get<std::int64_t>();
  }
  CHECK(sum == 326);
  const auto& line = items["data"][1];
  CHECK(line["amount"] == 123);
  CHECK(line["description"] == "gpt-4o output, batch, tier 2: 7 tokens");
  CHECK(line["metadata"]["amount_micros"] == "1234567");
  CHECK(line["metadata"]["tollgate_kind"] == "line");
  // November 2026 in UTC.
  CHECK(line["period"]["start"] == 1793491200);
  CHECK(line["period"]["end"] == 1796083200);
  const auto& late = items["data"][2];
  CHECK(late["metadata"]["tollgate_kind"] == "adjustment");
  CHECK(late["description"] == "Late usage of 2026-10: gpt-4o input: 10 tokens");
  CHECK(late["period"]["start"] == 1790812800);  // October's own month
  const auto& credit = items["data"][3];
  CHECK(credit["amount"] == -100);
  CHECK(credit["metadata"]["amount_micros"] == "-1000000");
  CHECK(credit["metadata"]["grant_id"] == "grant_9");
  CHECK(credit["description"] == "Credit applied: promotional grant grant_9");
}

TEST_CASE("Stripe invoice items as CSV: one column per parameter, quoted where needed") {
  const std::string csv = billing::stripe_invoice_items_csv(invoice);
  CHECK(csv.rfind("customer,currency,amount,description,period[start],period[end],"
                  "metadata[tollgate_invoice_id],",
                  0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 5);
  CHECK(csv.find("ten_a,eur,300,\"gpt-4o input, tier 1: 1200000 tokens\",1793491200,1796083200,"
                 "inv_1,TG-2026-000007,ten_a,line,2026-11,gpt-4o,input,false,1,1200000,3000000,") !=
        std::string::npos);
  CHECK(csv.find("ten_a,eur,-100,") != std::string::npos);
}

TEST_CASE("an unreadable invoice exports nothing") {
  CHECK(billing::stripe_invoice_items_json("not json") == "{\"object\":\"list\",\"data\":[]}");
  CHECK(billing::stripe_invoice_items_json(R"({"period":"2026-13"})") ==
        "{\"object\":\"list\",\"data\":[]}");
  const std::string header_only = billing::stripe_invoice_items_csv("[]");
  CHECK(std::count(header_only.begin(), header_only.end(), '\n') == 1);
}

TEST_CASE("usage events become a CloudEvents batch, one event per request") {
  const char* const events = R"([{"object":"usage_event","request_id":"req_1","tenant_id":"ten_a",
    "project_id":"proj_1","api_key_id":"key_1","occurred_at":"2026-11-05T10:00:00.123456Z",
    "endpoint":"/v1/chat/completions","model":"gpt-4o","upstream":"u","stream":false,
    "batch":false,"status":200,"prompt_tokens":12,"cached_prompt_tokens":4,
    "completion_tokens":30,"reasoning_tokens":0,"estimated":false,"cost_micros":1234,
    "price_book_id":"pb_1","credit_micros":null,"end_user":"alice","tags":{"team":"search"},
    "session_id":null,"cache_write_tokens":3,"image_prompt_tokens":2,"audio_prompt_tokens":1,
    "audio_completion_tokens":5,"request_fee_micros":700,"context_band":0}, 7])";
  const json batch = json::parse(billing::usage_cloudevents_json(events));
  REQUIRE(batch.is_array());
  REQUIRE(batch.size() == 1);  // the 7 is not an event
  const auto& e = batch[0];
  CHECK(e["specversion"] == "1.0");
  CHECK(e["id"] == "req_1");
  CHECK(e["source"] == "tollgate");
  CHECK(e["type"] == "tollgate.usage");
  CHECK(e["subject"] == "ten_a");
  CHECK(e["time"] == "2026-11-05T10:00:00.123456Z");
  CHECK(e["data"]["input_tokens"] == 12);
  CHECK(e["data"]["cached_input_tokens"] == 4);
  CHECK(e["data"]["output_tokens"] == 30);
  CHECK(e["data"]["cache_write_input_tokens"] == 3);
  CHECK(e["data"]["image_input_tokens"] == 2);
  CHECK(e["data"]["audio_input_tokens"] == 1);
  CHECK(e["data"]["audio_output_tokens"] == 5);
  CHECK(e["data"]["request_fee_micros"] == 700);
  CHECK(e["data"]["context_band"] == 0);
  CHECK(e["data"]["cost_micros"] == 1234);
  CHECK(e["data"]["credit_micros"].is_null());
  CHECK(e["data"]["tags"]["team"] == "search");
  CHECK(billing::usage_cloudevents_json("{") == "[]");
}

TEST_CASE("a plan's money allowance exports as a negative item") {
  const char* const with_included = R"({"object":"invoice","id":"inv_2","tenant_id":"ten_a",
    "period":"2026-11","status":"draft","currency":"USD","price_book_id":"pb_1",
    "minor_digits":2,
    "lines":[{"model":"m","token_class":"input","batch":false,"tier":1,"tokens":3100000,
              "amount_micros":9300000,"amount_minor":930},
             {"model":"*","token_class":"included_usage","batch":false,"tier":0,"tokens":0,
              "amount_micros":-9300000,"amount_minor":-930,"included":true}],
    "adjustments":[],"unpriced":[],"total_micros":0,"total_minor":0,"credits":[],
    "credits_micros":0,"credits_returned_micros":0,"total_due_micros":0,"total_due_minor":0})";
  const json items = json::parse(billing::stripe_invoice_items_json(with_included));
  REQUIRE(items["data"].size() == 2);
  CHECK(items["data"][1]["amount"] == -930);
  CHECK(items["data"][1]["description"] == "Usage included in the plan");
  CHECK(items["data"][0]["amount"].get<std::int64_t>() + items["data"][1]["amount"].get<std::int64_t>() == 0);
}
