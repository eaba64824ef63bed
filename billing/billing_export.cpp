// Exports for other billing systems: see billing_export.hpp.
#include "billing/billing_export.hpp"

#include <cstdint>
#include <utility>
#include <vector>

#include "billing/period_pricing.hpp"
#include "billing/price_book.hpp"
#include "core/csv.hpp"
#include "core/json_dom.hpp"
#include "core/json_text.hpp"

namespace tollgate::billing {

namespace {

// One Stripe invoice item, as the parameters of POST /v1/invoiceitems name its fields.
struct stripe_item {
  std::string customer;
  std::string currency;     // lower case, as Stripe writes currencies
  std::int64_t amount = 0;  // minor units; negative for a credit
  std::string description;
  std::int64_t period_start = 0, period_end = 0;  // unix seconds
  std::vector<std::pair<std::string, std::string>> metadata;  // Stripe: string values
};

// The metadata of every item, in CSV column order; the first four name the invoice.
constexpr const char* line_keys[] = {"period", "model",  "token_class",   "batch",
                                     "tier",   "tokens", "amount_micros", "grant_id"};
constexpr const char* invoice_keys[] = {"tollgate_invoice_id", "tollgate_invoice_number",
                                        "tollgate_tenant_id", "tollgate_kind"};

// A JSON value as the text Stripe's string metadata holds: strings as they are, numbers and
// booleans as written, null and absent as "".
std::string text_of(json::value v) {
  if (!v.valid() || v.is_null()) return "";
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  return std::string(v.source());
}

std::int64_t int_of(json::value v) { return v.valid() && v.is_int64() ? v.as_int64() : 0; }

bool is_true(json::value v) { return v.valid() && v.is_bool() && v.as_bool(); }

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// "gpt-4o input, batch, tier 2: 1200 tokens"; "Usage included in the plan" for the line of
// a money allowance.
std::string usage_description(json::value l) {
  if (text_of(l.find("token_class")) == included_usage_class) return "Usage included in the plan";
  std::string d = text_of(l.find("model")) + " " + text_of(l.find("token_class"));
  if (is_true(l.find("batch"))) d += ", batch";
  if (is_true(l.find("included"))) {
    d += ", included in the allowance";
  } else if (const auto tier = text_of(l.find("tier")); !tier.empty()) {
    d += ", tier " + tier;
  }
  return d + ": " + text_of(l.find("tokens")) + " tokens";
}

// Builds the items of one invoice: its lines, its late adjustments, its fees, then its credits.
class stripe_builder {
 public:
  explicit stripe_builder(json::value inv) : inv_(inv), period_(text_of(inv.find("period"))) {}

  std::vector<stripe_item> build() {
    for_each(inv_.find("lines"), [&](json::value l) {
      add("line", l, usage_description(l), int_of(l.find("amount_minor")), period_);
    });
    for_each(inv_.find("adjustments"), [&](json::value a) {
      const std::string of = text_of(a.find("period"));
      add("adjustment", a, "Late usage of " + of + ": " + usage_description(a),
          int_of(a.find("amount_minor")), of);
    });
    // The plan's fees (docs/PRICING.md, "Plan terms").
    for_each(inv_.find("fees"), [&](json::value f) {
      // A bundle's draw for late usage of an earlier period names that period.
      const std::string of = text_of(f.find("period"));
      add("fee", f, (of.empty() ? "" : "Late usage of " + of + ": ") + fee_description(f),
          int_of(f.find("amount_minor")), of.empty() ? period_ : of);
    });
    for_each(inv_.find("credits"), [&](json::value c) {
      add("credit", c,
          "Credit applied: " + text_of(c.find("kind")) + " grant " + text_of(c.find("grant_id")),
          -int_of(c.find("amount_minor")), period_);
    });
    return std::move(items_);
  }

 private:
  static std::string fee_description(json::value f) {
    const std::string kind = text_of(f.find("kind"));
    const std::string tokens = text_of(f.find("quantity")) + " " + text_of(f.find("model")) +
                               " " + text_of(f.find("token_class")) + " tokens";
    if (kind == "base_fee") return "Base fee";
    if (kind == "seats") return "Seats: " + text_of(f.find("quantity")) + " seat-days";
    if (kind == "token_bundle") {
      return "Token bundle " + text_of(f.find("bundle_id")) + ": " + tokens;
    }
    if (kind == "allowance_rollover_in") return "Rolled-over allowance used: " + tokens;
    if (kind == "allowance_rollover_out") return "Unused allowance rolled over: " + tokens;
    return "Commitment true-up";
  }

  template <class F>
  static void for_each(json::value array, F&& f) {
    for (std::uint32_t i = 0; array.valid() && array.is_array() && i < array.size(); ++i) {
      f(array.at(i));
    }
  }

  void add(std::string kind, json::value from, std::string description, std::int64_t amount,
           const std::string& period) {
    stripe_item it;
    it.customer = text_of(inv_.find("tenant_id"));
    it.currency = lower(text_of(inv_.find("currency")));
    it.amount = amount;
    it.description = std::move(description);
    // The usage's own month (an adjustment's is earlier than the invoice's).
    if (const auto b = period_bounds(period)) {
      it.period_start = b->first;
      it.period_end = b->second;
    }
    const bool credit = kind == "credit";
    it.metadata = {{"tollgate_invoice_id", text_of(inv_.find("id"))},
                   {"tollgate_invoice_number", text_of(inv_.find("number"))},
                   {"tollgate_tenant_id", it.customer},
                   {"tollgate_kind", std::move(kind)}};
    for (const char* key : line_keys) {
      std::string v = text_of(from.find(key));
      if (std::string_view(key) == "period" && v.empty()) v = period;
      if (std::string_view(key) == "amount_micros" && credit && !v.empty()) v = "-" + v;
      it.metadata.emplace_back(key, std::move(v));
    }
    items_.push_back(std::move(it));
  }

  json::value inv_;
  std::string period_;
  std::vector<stripe_item> items_;
};

std::vector<stripe_item> stripe_items(std::string_view invoice_json) {
  const auto doc = json::document::parse(invoice_json);
  if (!doc || !doc->root().is_object()) return {};
  return stripe_builder(doc->root()).build();
}

}  // namespace

std::string stripe_invoice_items_json(std::string_view invoice_json) {
  json_array_writer data;
  for (const auto& it : stripe_items(invoice_json)) {
    json_object_writer period, metadata, item;
    period.add("start", it.period_start).add("end", it.period_end);
    for (const auto& [k, v] : it.metadata) metadata.add(k, v);
    item.add("object", "invoiceitem")
        .add("customer", it.customer)
        .add("currency", it.currency)
        .add("amount", it.amount)
        .add("description", it.description)
        .add_raw("period", period.finish())
        .add_raw("metadata", metadata.finish());
    data.add_raw(item.finish());
  }
  return "{\"object\":\"list\",\"data\":" + data.finish() + "}";
}

std::string stripe_invoice_items_csv(std::string_view invoice_json) {
  std::string out = "customer,currency,amount,description,period[start],period[end]";
  for (const char* k : invoice_keys) out += std::string(",metadata[") + k + "]";
  for (const char* k : line_keys) out += std::string(",metadata[") + k + "]";
  out.push_back('\n');
  for (const auto& it : stripe_items(invoice_json)) {
    append_csv_field(out, it.customer);
    out += "," + it.currency + "," + std::to_string(it.amount) + ",";
    append_csv_field(out, it.description);
    out += "," + std::to_string(it.period_start) + "," + std::to_string(it.period_end);
    for (const auto& [k, v] : it.metadata) {
      out.push_back(',');
      append_csv_field(out, v);
    }
    out.push_back('\n');
  }
  return out;
}

std::string usage_cloudevents_json(std::string_view usage_events_json) {
  json_array_writer events;
  const auto doc = json::document::parse(usage_events_json);
  if (!doc || !doc->root().is_array()) return events.finish();
  // The event's fields carried into `data`, renamed to OpenAI's usage names where they differ.
  static constexpr std::pair<const char*, const char*> data_fields[] = {
      {"model", "model"},
      {"endpoint", "endpoint"},
      {"project_id", "project_id"},
      {"api_key_id", "api_key_id"},
      {"status", "status"},
      {"batch", "batch"},
      {"stream", "stream"},
      {"prompt_tokens", "input_tokens"},
      {"cached_prompt_tokens", "cached_input_tokens"},
      {"completion_tokens", "output_tokens"},
      {"reasoning_tokens", "reasoning_tokens"},
      {"cache_write_tokens", "cache_write_input_tokens"},
      {"image_prompt_tokens", "image_input_tokens"},
      {"audio_prompt_tokens", "audio_input_tokens"},
      {"audio_completion_tokens", "audio_output_tokens"},
      {"estimated", "estimated"},
      {"cost_micros", "cost_micros"},
      {"credit_micros", "credit_micros"},
      {"price_book_id", "price_book_id"},
      {"request_fee_micros", "request_fee_micros"},
      {"context_band", "context_band"},
      {"end_user", "end_user"},
      {"tags", "tags"},
      {"session_id", "session_id"}};
  const json::value all = doc->root();
  for (std::uint32_t i = 0; i < all.size(); ++i) {
    const json::value e = all.at(i);
    if (!e.is_object()) continue;
    json_object_writer data, event;
    for (const auto& [from, to] : data_fields) {
      const json::value v = e.find(from);
      if (v.valid()) data.add_raw(to, v.source());
    }
    event.add("specversion", "1.0")
        .add("id", text_of(e.find("request_id")))
        .add("source", "tollgate")
        .add("type", "tollgate.usage")
        .add("subject", text_of(e.find("tenant_id")))
        .add("time", text_of(e.find("occurred_at")))
        .add("datacontenttype", "application/json")
        .add_raw("data", data.finish());
    events.add_raw(event.finish());
  }
  return events.finish();
}

}  // namespace tollgate::billing
