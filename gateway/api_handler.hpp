// The OpenAI-compatible API listener (:8080): routes requests and runs the request path for
// chat and legacy completions in one straight line:
//   authenticate (with a database) -> parse & validate -> route model to upstream (and check
//   the key's model allowlist) -> count the prompt -> check the ledger takes usage -> reserve
//   the budgets (prompt + max_tokens, one request) -> forward
//   (stream or whole) -> record usage (with the gateway's own completion count when the
//   upstream gave none) to the usage log and the ledger -> settle the budgets to the actual.
// GET /v1/models lists the models (those the key may use); GET /v1/usage reports the caller's
// own tenant's usage.
// Every stage either continues or answers with an OpenAI-shaped error.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/upstream.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "gateway/auth.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/budget_guard.hpp"
#include "gateway/cost_quote.hpp"
#include "gateway/openai_request.hpp"
#include "metering/prompt_count.hpp"
#include "metering/usage.hpp"

namespace tollgate::gateway {

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

  boost::asio::awaitable<void> handle(http::exchange& ex);

 private:
  struct proxy_state;  // everything one proxied request accumulates

  boost::asio::awaitable<void> handle_completion(http::exchange& ex, endpoint_kind kind,
                                                 std::string request_id,
                                                 std::string client_request_id, caller who);
  boost::asio::awaitable<void> relay_whole(http::exchange& ex, backends::upstream_call& call,
                                           proxy_state& st);
  boost::asio::awaitable<void> relay_stream(http::exchange& ex, backends::upstream_call& call,
                                            proxy_state& st);
  boost::asio::awaitable<void> handle_models(http::exchange& ex, std::string_view model_id,
                                             const std::string& request_id, const caller& who);
  boost::asio::awaitable<void> handle_usage(http::exchange& ex, const std::string& request_id,
                                            const caller& who);
  // Records the usage event (journaled when this returns) and settles the budgets. Called
  // before the response's last bytes are written: a client never holds a complete response
  // whose usage a crash of the gateway could still lose.
  void finish(http::exchange& ex, proxy_state& st, unsigned status);

  const gateway_config& config_;
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
  metrics::counter& usage_records_;
};

}  // namespace tollgate::gateway
