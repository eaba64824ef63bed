// API key authentication for the OpenAI listener: `Authorization: Bearer tg-...`, looked up by
// SHA-256 in PostgreSQL through a short-lived in-process cache (key_cache_ttl_ms), so a revoked
// or expired key stops working within that time. While the database is unreachable, keys seen
// before keep working from the cache for a while (stale_grace) rather than fail every request.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "billing/account_store.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "gateway/billing_context.hpp"

namespace tollgate::gateway {

struct caller {
  std::string key_id;
  std::string tenant_id;
  std::string project_id;
  std::optional<std::vector<std::string>> allowed_models;  // nullopt = all

  bool may_use(std::string_view model) const;
};

class authenticator {
 public:
  authenticator(const billing_context& billing, std::chrono::milliseconds ttl,
                const clock_source& clock, metrics::registry& registry);

  // The caller behind an Authorization header value, or the 401/503 to answer with.
  boost::asio::awaitable<result<caller>> authenticate(std::string_view authorization);

 private:
  struct entry {
    std::optional<billing::key_info> key;  // nullopt: no such key
    std::chrono::steady_clock::time_point fetched;
  };
  result<caller> decide(const std::optional<billing::key_info>& key, std::string_view shown);

  const billing_context& billing_;
  std::chrono::milliseconds ttl_;
  const clock_source& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, entry> cache_;  // by SHA-256 of the key
  metrics::family<metrics::counter>& outcomes_;
};

}  // namespace tollgate::gateway
