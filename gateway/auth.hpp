// API key authentication for the OpenAI listener: `Authorization: Bearer tg-...`, looked up by
// SHA-256 in PostgreSQL through a short-lived in-process cache (key_cache_ttl_ms), so a revoked
// or expired key stops working within that time. While the database is unreachable, keys seen
// before keep working from the cache for a while (stale_grace) rather than fail every request.
// Unknown keys live in their own bounded LRU cache, and database look-ups of keys that turn out
// unknown are limited per client address: a flood of random keys neither evicts valid keys nor
// reaches the database more than that limit allows.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/verb.hpp>
#include <array>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "billing/tenant_store.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "gateway/billing_context.hpp"

namespace tollgate::gateway {

struct caller {
  std::string key_id;
  std::string tenant_id;
  std::string project_id;
  std::optional<std::vector<std::string>> allowed_models;  // nullopt = all
  metering::tag_set default_tags;  // the key's over its project's

  bool may_use(std::string_view model) const;
};

// The caller a listener's pre-body key check authenticated travels to the request's handler as
// the exchange's `checked()` pointer (core/http_server.hpp), so a key is authenticated once per
// request: `checked_caller` wraps it, `checked_caller_of` reads it back (null when none).
std::shared_ptr<const void> checked_caller(caller who);
const caller* checked_caller_of(const std::shared_ptr<const void>& checked);

// Whether the API listener's handler asks for an API key for this request (the routes and
// methods api_handler authenticates): such a request is authenticated before its body is read.
bool api_request_needs_key(boost::beast::http::verb method, std::string_view path);

// Unknown key hashes, least recently used evicted first, each trusted for `ttl`.
class negative_key_cache {
 public:
  negative_key_cache(std::size_t entries_max, std::chrono::milliseconds ttl)
      : entries_max_(entries_max), ttl_(ttl) {}
  // True (and the entry refreshed as recently used) when `hash` is known unknown at `now`.
  bool contains(const std::string& hash, std::chrono::steady_clock::time_point now);
  void insert(const std::string& hash, std::chrono::steady_clock::time_point now);
  void erase(const std::string& hash);
  std::size_t size() const { return index_.size(); }

 private:
  struct item {
    std::list<std::string>::iterator order;
    std::chrono::steady_clock::time_point fetched;
  };
  std::size_t entries_max_;
  std::chrono::milliseconds ttl_;
  std::list<std::string> order_;  // most recently used first
  std::unordered_map<std::string, item> index_;
};

// A token bucket per client address for database look-ups of unknown keys: `burst` at once,
// refilled at `per_s`. At most `sources_max` addresses are tracked; when full, addresses whose
// bucket is full again are forgotten first (they lose nothing), then all of them.
// The limiter's key for a client address: an IPv4 address (IPv4-mapped IPv6 included) as it
// is, an IPv6 address by its /64, which one host usually holds whole.
std::string lookup_source_of(const boost::asio::ip::address& address);

class key_lookup_limiter {
 public:
  key_lookup_limiter(std::uint64_t per_s, std::uint64_t burst, std::size_t sources_max)
      : per_s_(per_s), burst_(burst), sources_max_(sources_max) {}
  // Takes one token for `source`; false when its bucket is empty.
  bool take(const std::string& source, std::chrono::steady_clock::time_point now);
  // Gives a token back (the look-up found a real key).
  void give_back(const std::string& source);
  std::size_t sources() const { return buckets_.size(); }

 private:
  struct bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };
  void refill(bucket& b, std::chrono::steady_clock::time_point now) const;
  std::uint64_t per_s_;
  std::uint64_t burst_;
  std::size_t sources_max_;
  std::unordered_map<std::string, bucket> buckets_;
};

class authenticator {
 public:
  authenticator(const billing_context& billing, const auth_config& config,
                const clock_source& clock, metrics::registry& registry);

  // The caller behind an Authorization header value, or the 401/503 to answer with.
  boost::asio::awaitable<result<caller>> authenticate(std::string_view authorization);
  // The same for a request from `source`: database look-ups of keys that turn out unknown are
  // limited per source (429 past the limit). Used before a request's body is read.
  boost::asio::awaitable<result<caller>> authenticate(std::string_view authorization,
                                                      const boost::asio::ip::address& source);
  // The key with this id as it stands now (through the cache): its caller, or the 401 a
  // request with it would get (revoked, expired, tenant or project disabled) or a 503 while
  // it cannot be checked. For work that runs on a key long after its request (batches).
  boost::asio::awaitable<result<caller>> check_key_id(std::string key_id);

 private:
  struct entry {
    billing::key_info key;
    std::chrono::steady_clock::time_point fetched;
  };
  struct id_entry {
    billing::key_info key;
    std::string hash;  // "" when looked up by id
    std::chrono::steady_clock::time_point fetched;
  };
  boost::asio::awaitable<result<caller>> authenticate_key(std::string_view authorization,
                                                          const boost::asio::ip::address* source);
  boost::asio::awaitable<pg::db_result<std::optional<billing::key_info>>> fetch_by_id(
      std::string key_id);
  // `key`: null when the key is unknown. `key_or_id`: the key itself (masked in a refusal) or,
  // with `is_key` false, a key id.
  result<caller> decide(const billing::key_info* key, std::string_view key_or_id, bool count = true,
                        bool is_key = true);
  void remember(const std::string& hash, const billing::key_info& key,
                std::chrono::steady_clock::time_point now);

  const billing_context& billing_;
  std::chrono::milliseconds ttl_;
  const clock_source& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, entry> cache_;     // known keys by SHA-256 of the key
  std::unordered_map<std::string, id_entry> by_id_;  // known keys by key id
  negative_key_cache unknown_;                       // unknown keys by SHA-256
  key_lookup_limiter limiter_;
  // tollgate_auth_total's children, looked up once (no family mutex per request).
  enum class outcome { ok, missing, malformed, unknown, revoked, expired, disabled, unavailable,
                       limited };
  static constexpr std::size_t outcome_kinds = 9;
  void count(outcome o) { outcome_counters_[static_cast<std::size_t>(o)]->inc(); }
  metrics::family<metrics::counter>& outcomes_;
  std::array<metrics::counter*, outcome_kinds> outcome_counters_{};
  metrics::family<metrics::counter>& lookups_;
  metrics::counter& hits_;              // served from the cache of known keys
  metrics::counter& negative_hits_;     // served from the cache of unknown keys
  metrics::counter& database_found_;    // looked up, a real key
  metrics::counter& database_unknown_;  // looked up, no such key
  metrics::counter& database_failed_;   // the look-up failed
  metrics::counter& limited_;           // refused: the source's look-up limit was spent
};

}  // namespace tollgate::gateway
