// Usage records: one per proxied request, whatever its outcome, handed to a usage_sink.
// Sinks: a JSON log line (always), and the ledger writer (billing/ledger_writer.hpp) that stores
// the records of authenticated requests in PostgreSQL.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_dom.hpp"
#include "core/log.hpp"
#include "metering/attribution.hpp"

namespace tollgate::metering {

struct usage_record {
  std::string request_id;           // the gateway's id: the ledger's idempotency key
  std::string client_request_id;    // the client's x-request-id, if it sent a valid one
  // Who made the request (empty when the gateway runs without a database, or the request was
  // not authenticated): only records with a tenant reach the ledger.
  std::string tenant_id;
  std::string project_id;
  std::string api_key_id;
  // For whom, and with which tags and session (metering/attribution.hpp).
  metering::attribution attribution;
  bool batch = false;               // made through the batch API
  // "/v1/chat/completions", "/v1/completions", "/v1/embeddings" or "/v1/responses"
  std::string endpoint;
  // The model that served: as the client named it, or the target a virtual model's rule
  // chose, or the fallback that took the request over ("" if the request had none).
  std::string model;
  std::string upstream;             // upstream name ("" if the request never got that far)
  // The upstream endpoint that answered (the last one tried): its configured name or base URL,
  // never credentials ("" if no attempt was made), and how many attempts were made (retries
  // on other endpoints included; 0 if none).
  std::string upstream_endpoint;
  std::int64_t attempts = 0;
  // The virtual model's rule that chose the model, "<virtual model>/<rule name>" ("" = none).
  std::string routing_rule;
  // The W3C trace id (32 lowercase hex digits) of the request's trace: the caller's
  // `traceparent`, or a new trace (core/trace_context.hpp); "" for a record without one.
  std::string trace_id;
  std::int64_t occurred_at_ms = 0;  // wall clock when the request was received

  // Token counts as the upstream reported them (zero when it did not: usage_reported false).
  bool usage_reported = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t reasoning_tokens = 0;
  // Parts of the prompt priced as classes of their own (docs/PRICING.md): tokens written to the
  // upstream's prompt cache (Anthropic's cache_creation_input_tokens, where the upstream's
  // `usage_fields.cache_write` says), image and audio input tokens
  // (prompt_tokens_details.image_tokens / audio_tokens), and the completion's audio tokens
  // (completion_tokens_details.audio_tokens).
  std::int64_t cache_write_tokens = 0;
  std::int64_t image_prompt_tokens = 0;
  std::int64_t audio_prompt_tokens = 0;
  std::int64_t audio_completion_tokens = 0;

  // The gateway's own counts with the model's tokenizer: the prompt before forwarding (-1 if
  // the request never got that far), and the completion text when the upstream reported no
  // usage. `estimated`: the upstream reported no usage, so prompt_tokens and completion_tokens
  // above are the gateway's counts.
  std::int64_t counted_prompt_tokens = -1;
  std::int64_t counted_completion_tokens = -1;
  bool estimated = false;

  bool stream = false;
  unsigned status = 0;          // HTTP status the client got
  std::int64_t latency_us = 0;  // request read -> response written (or abandoned)
  std::int64_t ttft_us = -1;    // request read -> first streamed token event; -1 if none
  bool client_disconnected = false;
  std::string error_code;  // the OpenAI error code when the request failed, else ""

  // What the budgets' settlement counted as this request's spend (micro-units; -1: no spend or
  // credit budget held it) and on which Redis counters. The ledger writer, once it has rated
  // the event, sends those counters the difference to what it billed, so spend budgets count
  // what the ledger bills (docs/BUDGETS.md). Journaled with the row, never stored in it.
  std::int64_t settled_spend_micros = -1;
  std::vector<std::string> spend_counters;   // counters of spend budgets
  std::vector<std::string> credit_counters;  // the credit_only mirror's counter
  // A credit hold covered by token bundles (metering/budgets/cover.hpp): what the credit
  // counter was settled with (-1: settled_spend_micros, and no coverage), and the tokens the
  // coverage pools (input, output) were settled with. Journaled, never stored.
  std::int64_t settled_credit_micros = -1;
  std::int64_t cover_tokens[2] = {0, 0};

  std::string to_json() const;
  // Fills the token fields from an OpenAI `usage` object (chat, completions, embeddings:
  // prompt_tokens, completion_tokens and their details; the Responses API: input_tokens,
  // output_tokens and theirs); returns false if it is not one. `cache_write_field`: where the
  // upstream reports cache writes in the usage object, a member name or "parent.member".
  bool set_usage(json::value usage, std::string_view cache_write_field = default_cache_write_field);
  // Fills the token fields from a whole OpenAI response body's top-level `usage`, if any.
  bool set_usage_from_response(std::string_view body,
                               std::string_view cache_write_field = default_cache_write_field);

  // Anthropic's name for the prompt tokens written to the cache, as OpenAI-compatible proxies
  // of it (LiteLLM) report it at the top of `usage`.
  static constexpr std::string_view default_cache_write_field = "cache_creation_input_tokens";
};

class usage_sink {
 public:
  virtual ~usage_sink() = default;
  // Must not block for long: it is called on I/O threads.
  virtual void record(const usage_record& r) = 0;
};

// Writes each record as one JSON log line: {"ts":..,"level":"info","msg":"usage",...}.
class log_usage_sink final : public usage_sink {
 public:
  explicit log_usage_sink(logger& log) : log_(log) {}
  void record(const usage_record& r) override;

 private:
  logger& log_;
};

// Hands each record to several sinks in order (the usage log, then the ledger).
class fanout_usage_sink final : public usage_sink {
 public:
  explicit fanout_usage_sink(std::vector<usage_sink*> sinks) : sinks_(std::move(sinks)) {}
  void record(const usage_record& r) override {
    for (auto* s : sinks_) s->record(r);
  }

 private:
  std::vector<usage_sink*> sinks_;
};

}  // namespace tollgate::metering
