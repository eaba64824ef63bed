// The Batch API on the OpenAI listener (:8080), for API keys (docs/BATCH.md):
//   POST /v1/files (multipart, purpose=batch), GET /v1/files, GET|DELETE /v1/files/{id},
//   GET /v1/files/{id}/content;
//   POST /v1/batches, GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.
// An upload is checked line by line before it is stored; a batch is checked (every line a
// valid request for its endpoint and model, its worst case within the hard budgets) before it
// is created. The lines then run in the batch worker (gateway/batch_worker.hpp).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string>

#include "billing/batch_store.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "gateway/auth.hpp"
#include "gateway/billing_context.hpp"

namespace tollgate::gateway {

class api_handler;

// The id of a batch line's request: "req_" and 32 hex digits of SHA-256(batch id, custom_id),
// so a line run again after a restart carries the same id (and is stored in the ledger once).
std::string batch_line_request_id(std::string_view batch_id, std::string_view custom_id);

class batch_api {
 public:
  batch_api(const gateway_config& config, const billing_context& billing,
            billing::batch_store& store, api_handler& api)
      : config_(config), billing_(billing), store_(store), api_(api) {}

  // Serves one request to /v1/files... or /v1/batches... from an authenticated caller.
  boost::asio::awaitable<void> handle(http::exchange& ex, const std::string& request_id,
                                      const caller& who);

  // Whether a request may carry a body up to the upload limit (POST /v1/files), and that limit.
  static bool is_upload(std::string_view target, bool post) {
    return post && target.substr(0, target.find('?')) == "/v1/files";
  }
  std::uint64_t upload_body_limit() const { return config_.batches.max_file_bytes + 64 * 1024; }

 private:
  boost::asio::awaitable<void> upload(http::exchange& ex, const std::string& request_id,
                                      const caller& who);
  boost::asio::awaitable<void> create_batch(http::exchange& ex, const std::string& request_id,
                                            const caller& who);
  boost::asio::awaitable<void> send_json(http::exchange& ex, const std::string& request_id,
                                         billing::store_result outcome);

  const gateway_config& config_;
  const billing_context& billing_;
  billing::batch_store& store_;
  api_handler& api_;
};

}  // namespace tollgate::gateway
