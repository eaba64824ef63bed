// The OpenAI-compatible API listener (:8080): routes requests and runs the request path for
// the metered endpoints (chat and legacy completions, embeddings, responses) in one straight
// line:
//   authenticate (with a database) -> parse & validate -> route model to upstream (a virtual
//   model's rules choose the model; the key's model allowlist) -> count the prompt -> check
//   the ledger takes usage -> reserve the budgets (prompt + max_tokens, one request) -> forward
//   (to the model's fallbacks, the hold moved, while its upstream is down) -> relay (stream or
//   whole) -> record usage (with the gateway's own completion count when the upstream gave
//   none) to the usage log and the ledger -> settle the budgets to the actual.
// The routing and fallback steps live in api_routing.cpp (decisions: routing.hpp).
// GET /v1/models lists the models and virtual models (those the key may use); GET /v1/usage
// reports the caller's own tenant's usage.
// Every stage either continues or answers with an OpenAI-shaped error.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/upstream_exchange.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/auth.hpp"
#include "gateway/batch_input.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/budget_guard.hpp"
#include "gateway/cost_quote.hpp"
#include "gateway/openai_request.hpp"
#include "gateway/routing.hpp"
#include "metering/prompt_count.hpp"
#include "metering/usage.hpp"
#include "metering/worst_case.hpp"

namespace tollgate::gateway {

class batch_api;
class console_server;
class console_gate;

// What running one batch line came to: the response (status and body, an OpenAI error body
// for a refusal), or retry_after_ms > 0 when a rate-limit window (or a moment's outage of the
// budgets or the ledger) refused it; the line then runs again later and nothing was recorded.
struct batch_line_outcome {
  unsigned status = 0;
  std::string body;
  std::int64_t retry_after_ms = 0;
};

class api_handler {
 public:
  // `pools` holds one upstream pool per I/O thread, indexed by worker index. `billing` and
  // `auth` are null when the gateway runs without a database (no authentication, no ledger).
  api_handler(const gateway_config& config,
              std::vector<std::shared_ptr<backends::upstream_pool>> pools,
              std::unordered_map<std::string, metering::prompt_counter> counters,
              metering::usage_sink& usage, metrics::registry& registry, logger& log,
              const clock_source& clock, const billing_context* billing, authenticator* auth,
              budget_guard* budgets);
  ~api_handler();

  boost::asio::awaitable<void> handle(http::exchange& ex);

  // Runs one batch line through the same path as a live request (count, reserve, forward,
  // record, settle) on I/O thread `worker`, without streaming. Its usage event is flagged batch
  // and keyed by `request_id` and `occurred_at_ms`, which stay the same when the line runs again
  // after a restart, so the ledger stores it once.
  boost::asio::awaitable<batch_line_outcome> run_batch_line(unsigned worker, caller who,
                                                            endpoint_kind kind, std::string body,
                                                            std::string request_id,
                                                            std::int64_t occurred_at_ms);
  // Checks a batch's lines before the batch is created: each is a valid request for the
  // batch's endpoint, naming a model the caller may use; then the batch's worst case must fit
  // the caller's hard budgets. An error names the line (or the budget).
  boost::asio::awaitable<std::optional<api_error>> check_batch(
      unsigned worker, const caller& who, endpoint_kind kind,
      const std::vector<batch_input_line>& lines);
  // Live completion requests in flight now (the batch worker yields to them).
  int live_in_flight() const { return live_in_flight_.load(std::memory_order_relaxed); }
  // The Batch API's handler for /v1/files and /v1/batches (set once a database is configured).
  void set_batch_api(batch_api* batches) { batch_api_ = batches; }
  // The key holders' web console (/console/, and its session on GET /v1/usage, /v1/budgets,
  // /v1/models), when on.
  void set_console(console_server* console, console_gate* gate) {
    console_ = console;
    console_gate_ = gate;
  }
  // The drain timed out: records every request still in flight on I/O thread `worker` with
  // the usage seen so far (error code drain_timeout), before its event loop stops.
  void record_in_flight(unsigned worker);

 private:
  struct proxy_state;  // everything one proxied request accumulates

  // Steps 1-5 of the request path, shared by live requests and batch lines: parse, route,
  // count the prompt, check the ledger takes usage, reserve the budgets. An error: the request
  // is refused with it (st.rec.error_code is set; the caller records and answers).
  // `header`: the request's headers for routing rules (empty for a batch line).
  boost::asio::awaitable<std::optional<api_error>> admit(proxy_state& st, endpoint_kind kind,
                                                         std::string_view body,
                                                         const attribution_headers& headers,
                                                         const header_lookup& header,
                                                         const caller& who, unsigned worker);
  // 2. The model that serves the request: the one it names, or the target the rules of the
  // virtual model it names choose (counting the prompt with the virtual model's count_with
  // model; st.rec.routing_rule says which rule); sets st.model, st.upstream, st.counter. An
  // error: the 404 for a model that does not exist or is not the key's (api_routing.cpp).
  std::optional<api_error> route(proxy_state& st, const caller& who, const header_lookup& header);
  // The model a batch line will be routed to (its split by `split_key`), for the batch's
  // admission; null for a model that does not exist or is not the key's.
  const model_config* batch_line_model(const completion_request& req, const caller& who,
                                       std::string_view split_key);
  // 6 with fallbacks: forward() to st.model's upstream (emplacing `call`); while the exchange
  // fails before anything reached the client, or answers one of the model's
  // fallback_on_status, moves the request to the next fallback the key may use (move_to) and
  // forwards again. An error: as forward()'s, or the fallback's budget refusal (no upstream
  // called for it). Otherwise `call` holds the answer to relay (api_routing.cpp).
  boost::asio::awaitable<std::optional<api_error>> forward_routed(
      proxy_state& st, std::optional<backends::upstream_exchange>& call, endpoint_kind kind,
      std::string_view body_text, const caller& who);
  // Moves the request to fallback `next`: its prompt counted with next's tokenizer and prompt
  // format and checked against its context, the hold released and a new one reserved against
  // next's price and context. false: next cannot take the prompt (its context), nothing
  // changed; an error: the new reservation was refused (the request then holds nothing).
  boost::asio::awaitable<result<bool>> move_to(proxy_state& st, const model_config& next,
                                               const caller& who);
  // Points the request at `model`: st.model, st.upstream, st.counter and the record's fields.
  void serve_with(proxy_state& st, const model_config& model) const;
  // x-tollgate-model (the model that served), x-tollgate-fallback-from (the model a fallback
  // took over from) and x-tollgate-routing-rule (the virtual model's rule that chose).
  static std::vector<std::pair<std::string, std::string>> routing_headers(const proxy_state& st);
  // Counts the prompts of a parsed request (into st.rec) and returns its worst case, or the 400
  // for a prompt that does not fit the model's context (gateway/request_count.hpp).
  result<metering::worst_case_tokens> worst_case_of(proxy_state& st) const;
  boost::asio::awaitable<void> handle_completion(http::exchange& ex, endpoint_kind kind,
                                                 std::string request_id,
                                                 std::string client_request_id, caller who);
  // 6. Sends the admitted request upstream (st.worker's pool), to one of the upstream's
  // endpoints with retries on others (backends/upstream_exchange.hpp); records the endpoint and
  // the attempts. An error: the upstream could not be reached, failed before answering or is
  // at its concurrency cap (counted, st.rec.error_code set); the caller records and answers
  // it. Shared by live requests and batch lines.
  boost::asio::awaitable<std::optional<api_error>> forward(proxy_state& st,
                                                           backends::upstream_exchange& call,
                                                           endpoint_kind kind,
                                                           std::string_view body_text);
  // Reads a whole (not streamed) response into `body` and takes its usage, or its error code
  // when it is not a 200. An error: the read failed (st.rec.error_code set).
  boost::asio::awaitable<std::optional<api_error>> read_whole(proxy_state& st,
                                                              backends::upstream_exchange& call,
                                                              std::string& body);
  boost::asio::awaitable<void> relay_whole(http::exchange& ex, backends::upstream_exchange& call,
                                           proxy_state& st);
  boost::asio::awaitable<void> relay_stream(http::exchange& ex, backends::upstream_exchange& call,
                                            proxy_state& st);
  boost::asio::awaitable<void> handle_models(http::exchange& ex, std::string_view model_id,
                                             const std::string& request_id, const caller& who);
  boost::asio::awaitable<void> handle_usage(http::exchange& ex, const std::string& request_id,
                                            const caller& who);
  // Records the usage event (journaled when this returns) and settles the budgets. Called
  // before the response's last bytes are written: a client never holds a complete response
  // whose usage a crash of the gateway could still lose.
  void finish(proxy_state& st, unsigned status, bool client_gone);

  const gateway_config& config_;
  const request_limits request_limits_;
  std::vector<std::shared_ptr<backends::upstream_pool>> pools_;
  std::unordered_map<std::string, metering::prompt_counter> counters_;  // by model name
  metering::usage_sink& usage_;
  logger& log_;
  const clock_source& clock_;
  const billing_context* billing_;
  authenticator* auth_;
  budget_guard* budgets_;
  std::unique_ptr<cost_quoter> quoter_;  // with a database: the x-tollgate-cost-micros header
  std::int64_t models_created_unix_s_;
  std::atomic<int> live_in_flight_{0};
  // Per I/O thread, the requests in flight there (an intrusive list; touched on that thread).
  struct in_flight_list;
  std::vector<std::unique_ptr<in_flight_list>> in_flight_;
  batch_api* batch_api_ = nullptr;
  console_server* console_ = nullptr;
  console_gate* console_gate_ = nullptr;

  metrics::family<metrics::counter>& upstream_requests_;
  metrics::family<metrics::latency_histogram>& upstream_ttft_;
  metrics::family<metrics::counter>& tokens_;
  struct model_token_counters {
    metrics::counter* prompt;
    metrics::counter* completion;
    metrics::counter* cached;
  };
  std::unordered_map<std::string, model_token_counters> model_tokens_;  // by model name
  metrics::counter& client_disconnects_;
  metrics::family<metrics::counter>& usage_unreported_;
  metrics::counter& usage_records_;
  metrics::family<metrics::counter>& routed_;
  metrics::family<metrics::counter>& fallbacks_;
  struct worker_metrics;
  std::vector<std::unique_ptr<worker_metrics>> worker_metrics_;  // per I/O thread
};

}  // namespace tollgate::gateway
