// What every admin and finance handler shares: the token checks, the operator named for the
// audit log, `limit`/`after` of a list, a store failure as an OpenAI error, and body_reader,
// which checks a JSON body's fields one by one (the first problem becomes the 400).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "billing/price_book.hpp"
#include "billing/store_common.hpp"
#include "core/error.hpp"
#include "core/http_server.hpp"
#include "core/json_dom.hpp"
#include "gateway/query_params.hpp"

namespace tollgate::gateway {

// Whether `authorization` is `Bearer <token>` (scheme in any case), compared in constant time;
// never for an empty `token`.
bool token_matches(std::string_view authorization, const std::string& token);

// The operator named in x-tollgate-actor (tollctl sends the login name), for the audit log:
// "admin" or "admin:<name>".
std::string actor_of(const http::request& req);

// A store failure in the OpenAI error shape (shared with the Batch API).
api_error to_api_error(const billing::store_error& s);
// `limit` (1..100) and `after` of a list request.
result<billing::page_request> page_from(const query_params& q);

// A request body's fields, checked one by one; the first problem becomes a 400. An empty body
// reads as {}.
class body_reader {
 public:
  explicit body_reader(std::string_view text);
  bool ok() const { return !error_; }
  const api_error& error() const { return *error_; }
  bool has(std::string_view key) const { return ok() && doc_->root().find(key).valid(); }
  // The member as parsed, for a structured field checked elsewhere (invalid when absent).
  json::value member(std::string_view key) const {
    return ok() ? doc_->root().find(key) : json::value{};
  }

  // A string of 1 to admin_name_bytes_max bytes (absent: nullopt, or a 400 when required).
  std::optional<std::string> name(std::string_view key, bool required);
  // An optional string of 1 to `bytes_max` bytes (absent: nullopt).
  std::optional<std::string> text(std::string_view key, std::uint64_t bytes_max);
  // `status`, one of the two (absent: nullopt).
  std::optional<std::string> status(std::string_view allowed_a, std::string_view allowed_b);
  // One of `allowed` (absent: nullopt, or a 400 when required).
  std::optional<std::string> choice(std::string_view key,
                                    std::initializer_list<std::string_view> allowed, bool required);
  // Absent: nullopt. Null: optional holding nullopt. A number: its value.
  std::optional<std::optional<std::int64_t>> nullable_int(std::string_view key, std::int64_t min,
                                                          std::int64_t max);
  // Model names (absent: nullopt; null: optional holding nullopt).
  std::optional<std::optional<std::vector<std::string>>> models(std::string_view key);
  // The same for other names (ids): `what` names them in the 400.
  std::optional<std::optional<std::vector<std::string>>> name_list(std::string_view key,
                                                                   std::string_view what);
  // Default tags: an object of string values (metering/attribution.hpp's limits), returned in
  // its compact JSON form. Absent: nullopt. Null or {}: optional holding nullopt (no tags).
  std::optional<std::optional<std::string>> tags(std::string_view key);
  // Alert thresholds: an array of at most 10 distinct percents, 1..1000 (absent: nullopt).
  std::optional<std::vector<int>> thresholds(std::string_view key);
  // A price book's `models` (billing/price_book), checked and in canonical JSON.
  std::optional<std::string> prices(billing::tier_mode mode, billing::tier_scope scope);
  // A boolean (absent: false).
  bool flag(std::string_view key);
  // An ISO 4217 currency code: three capital letters.
  std::optional<std::string> currency(std::string_view key);
  // A webhook URL (http[s]://host[:port]/path). Absent: nullopt. Null: optional holding nullopt.
  std::optional<std::optional<std::string>> webhook_url(std::string_view key);
  // A 400 for the first member not in `known`.
  void reject_unknown(std::initializer_list<std::string_view> known);

  // Records a 400 about `param` (the first failure wins).
  void fail(std::string message, std::string_view param);

 private:
  std::optional<json::document> doc_;
  std::optional<api_error> error_;
};

}  // namespace tollgate::gateway
