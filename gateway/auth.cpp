// API key authentication: see auth.hpp.
#include "gateway/auth.hpp"

#include <algorithm>

#include "billing/api_keys.hpp"
#include "core/bearer_token.hpp"
#include "core/json_dom.hpp"
#include "core/limits.hpp"

namespace tollgate::gateway {
namespace {

namespace bhttp = boost::beast::http;

// Keys seen before keep working this long past their TTL while the database cannot be asked.
constexpr auto stale_grace = std::chrono::milliseconds(limits::key_cache_stale_grace_ms);
constexpr std::size_t key_cache_entries_max = limits::key_cache_entries_max;
constexpr std::size_t lookup_sources_max = limits::key_lookup_sources_max;

api_error lookups_limited() {
  api_error e;
  e.status = 429;
  e.type = "requests";
  e.message =
      "Too many requests with unknown API keys from this address. Please retry shortly.";
  e.code = "rate_limit_exceeded";
  e.retry_after_s = 1;
  return e;
}

// "tg-abcd****wxyz": enough to recognise a key in an error without repeating it.
std::string shown_key(std::string_view key) {
  if (key.size() < limits::key_shown_chars_min) return "****";
  return std::string(key.substr(0, 7)) + "****" + std::string(key.substr(key.size() - 4));
}

std::string_view status_of(const std::string& object_json) {
  static thread_local std::optional<json::document> doc;
  doc = json::document::parse(object_json);
  if (!doc) return {};
  const json::value v = doc->root().find("status");
  return v.valid() && v.is_string() ? v.as_string() : std::string_view{};
}

}  // namespace

std::shared_ptr<const void> checked_caller(caller who) {
  return std::make_shared<const caller>(std::move(who));
}

const caller* checked_caller_of(const std::shared_ptr<const void>& checked) {
  return static_cast<const caller*>(checked.get());
}

bool caller::may_use(std::string_view model) const {
  if (!allowed_models) return true;
  return std::find(allowed_models->begin(), allowed_models->end(), model) !=
         allowed_models->end();
}

bool api_request_needs_key(bhttp::verb method, std::string_view path) {
  if (path == "/v1/files" || path.starts_with("/v1/files/") || path == "/v1/batches" ||
      path.starts_with("/v1/batches/")) {
    return true;
  }
  if (path == "/v1/chat/completions" || path == "/v1/completions") {
    return method == bhttp::verb::post;
  }
  if (path == "/v1/models" || path.starts_with("/v1/models/") || path == "/v1/usage" ||
      path == "/v1/budgets") {
    return method == bhttp::verb::get;
  }
  return false;
}

// ---- negative_key_cache -------------------------------------------------------------------

bool negative_key_cache::contains(const std::string& hash,
                                  std::chrono::steady_clock::time_point now) {
  auto it = index_.find(hash);
  if (it == index_.end()) return false;
  if (now - it->second.fetched >= ttl_) {
    order_.erase(it->second.order);
    index_.erase(it);
    return false;
  }
  order_.splice(order_.begin(), order_, it->second.order);
  return true;
}

void negative_key_cache::insert(const std::string& hash,
                                std::chrono::steady_clock::time_point now) {
  if (entries_max_ == 0) return;
  if (auto it = index_.find(hash); it != index_.end()) {
    it->second.fetched = now;
    order_.splice(order_.begin(), order_, it->second.order);
    return;
  }
  while (index_.size() >= entries_max_) {
    index_.erase(order_.back());
    order_.pop_back();
  }
  order_.push_front(hash);
  index_.emplace(hash, item{order_.begin(), now});
}

void negative_key_cache::erase(const std::string& hash) {
  if (auto it = index_.find(hash); it != index_.end()) {
    order_.erase(it->second.order);
    index_.erase(it);
  }
}

// ---- key_lookup_limiter -------------------------------------------------------------------

void key_lookup_limiter::refill(bucket& b, std::chrono::steady_clock::time_point now) const {
  if (now <= b.updated) return;
  const double elapsed_s = std::chrono::duration<double>(now - b.updated).count();
  b.tokens = std::min(static_cast<double>(burst_),
                      b.tokens + elapsed_s * static_cast<double>(per_s_));
  b.updated = now;
}

bool key_lookup_limiter::take(const std::string& source,
                              std::chrono::steady_clock::time_point now) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= sources_max_) {
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        refill(b->second, now);
        b = b->second.tokens >= static_cast<double>(burst_) ? buckets_.erase(b) : std::next(b);
      }
      // Still full: every tracked address is limited now. Forgetting them all is the bounded
      // choice; each can then spend one burst again.
      if (buckets_.size() >= sources_max_) buckets_.clear();
    }
    it = buckets_.emplace(source, bucket{static_cast<double>(burst_), now}).first;
  }
  refill(it->second, now);
  if (it->second.tokens < 1.0) return false;
  it->second.tokens -= 1.0;
  return true;
}

void key_lookup_limiter::give_back(const std::string& source) {
  if (auto it = buckets_.find(source); it != buckets_.end()) {
    it->second.tokens = std::min(static_cast<double>(burst_), it->second.tokens + 1.0);
  }
}

// ---- authenticator ------------------------------------------------------------------------

authenticator::authenticator(const billing_context& billing, const auth_config& config,
                             const clock_source& clock, metrics::registry& registry)
    : billing_(billing),
      ttl_(std::chrono::milliseconds(config.key_cache_ttl_ms)),
      clock_(clock),
      unknown_(config.negative_key_cache_entries, ttl_),
      limiter_(config.unknown_key_lookups_per_s, config.unknown_key_lookup_burst,
               lookup_sources_max),
      outcomes_(registry.add_counter("tollgate_auth_total",
                                     "API key checks by outcome (ok, missing, malformed, "
                                     "unknown, revoked, expired, disabled, unavailable, "
                                     "limited).",
                                     {"outcome"})),
      lookups_(registry.add_counter(
          "tollgate_auth_lookups_total",
          "Where API key checks were answered: cache (known keys), negative_cache (unknown "
          "keys), database_found, database_unknown, database_failed, limited (a client address "
          "spent its look-ups of unknown keys).",
          {"result"})),
      hits_(lookups_.with({"cache"})),
      negative_hits_(lookups_.with({"negative_cache"})),
      database_found_(lookups_.with({"database_found"})),
      database_unknown_(lookups_.with({"database_unknown"})),
      database_failed_(lookups_.with({"database_failed"})),
      limited_(lookups_.with({"limited"})) {
  static constexpr std::array<const char*, outcome_kinds> names = {
      "ok", "missing", "malformed", "unknown", "revoked", "expired", "disabled", "unavailable",
      "limited"};
  for (std::size_t i = 0; i < names.size(); ++i) outcome_counters_[i] = &outcomes_.with({names[i]});
}

result<caller> authenticator::decide(const billing::key_info* key, std::string_view key_or_id,
                                     bool count, bool is_key) {
  auto counted = [&](outcome o) {
    if (count) this->count(o);
  };
  // Only a refusal names the key, masked (built here: the common case needs no string).
  const auto shown = [&] { return is_key ? shown_key(key_or_id) : std::string(key_or_id); };
  if (key == nullptr) {
    counted(outcome::unknown);
    return unauthorized_error("Incorrect API key provided: " + shown() + ".");
  }
  if (!key->active) {
    if (key->inactive_reason == "revoked") {
      counted(outcome::revoked);
      return unauthorized_error("The API key " + shown() + " has been revoked.");
    }
    counted(outcome::disabled);
    return unauthorized_error("The " +
                            std::string(key->inactive_reason == "tenant_disabled" ? "account"
                                                                                  : "project") +
                            " of this API key is disabled.",
                        "account_deactivated");
  }
  if (key->expires_at_ms != 0 && unix_ms(clock_.wall_now()) >= key->expires_at_ms) {
    counted(outcome::expired);
    return unauthorized_error("The API key " + shown() + " has expired.");
  }
  counted(outcome::ok);
  return caller{key->key_id, key->tenant_id, key->project_id, key->allowed_models,
                key->default_tags};
}

void authenticator::remember(const std::string& hash, const billing::key_info& key,
                             std::chrono::steady_clock::time_point now) {
  if (cache_.size() >= key_cache_entries_max) cache_.clear();
  if (by_id_.size() >= key_cache_entries_max) by_id_.clear();
  cache_[hash] = entry{key, now};
  by_id_[key.key_id] = id_entry{key, hash, now};
  unknown_.erase(hash);
}

boost::asio::awaitable<result<caller>> authenticator::authenticate(
    std::string_view authorization) {
  co_return co_await authenticate_key(authorization, nullptr);
}

boost::asio::awaitable<result<caller>> authenticator::authenticate(
    std::string_view authorization, const boost::asio::ip::address& source) {
  co_return co_await authenticate_key(authorization, &source);
}

std::string lookup_source_of(const boost::asio::ip::address& address) {
  if (address.is_v6()) {
    const auto v6 = address.to_v6();
    if (v6.is_v4_mapped()) {
      return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
    }
    // One host usually holds a whole /64: its addresses share one bucket.
    auto bytes = v6.to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
  }
  return address.to_string();
}

boost::asio::awaitable<result<caller>> authenticator::authenticate_key(
    std::string_view authorization, const boost::asio::ip::address* source) {
  if (authorization.empty()) {
    count(outcome::missing);
    co_return unauthorized_error(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "missing_api_key");
  }
  const std::optional<std::string_view> token = http::bearer_token(authorization);
  if (!token) {
    count(outcome::malformed);
    co_return unauthorized_error(
        "The Authorization header must be `Bearer YOUR_KEY`.", "invalid_api_key");
  }
  const std::string_view key = *token;
  if (!billing::is_well_formed_api_key(key)) {
    count(outcome::malformed);
    co_return unauthorized_error("Incorrect API key provided: " + shown_key(key) + ".");
  }
  const std::string hash = billing::sha256_bytes(key);
  const auto now = clock_.mono_now();
  std::optional<entry> cached;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(hash); it != cache_.end()) {
      if (now - it->second.fetched < ttl_) {
        hits_.inc();
        co_return decide(&it->second.key, key);
      }
      cached = it->second;
    }
    if (!cached && unknown_.contains(hash, now)) {
      negative_hits_.inc();
      co_return decide(nullptr, key);
    }
    // Not known (or known but stale): a database look-up, which a source may spend only at
    // its limit on keys that turn out unknown. The token comes back if the key is real.
    if (!cached && source != nullptr && !limiter_.take(lookup_source_of(*source), now)) {
      limited_.inc();
      count(outcome::limited);
      co_return lookups_limited();
    }
  }

  auto lookup = billing_.tenants->find_key(hash);
  auto found = co_await on_billing(billing_, std::move(lookup));
  if (!found) {
    database_failed_.inc();
    if (cached && now - cached->fetched < ttl_ + stale_grace) {
      co_return decide(&cached->key, key);  // the database is away: trust what we knew
    }
    count(outcome::unavailable);
    co_return service_unavailable(
        "The API key cannot be verified right now (the account database is unavailable). "
        "Please retry shortly.",
        "service_unavailable", 1);
  }
  {
    std::lock_guard lock(mu_);
    if (*found) {
      database_found_.inc();
      if (!cached && source != nullptr) limiter_.give_back(lookup_source_of(*source));
      remember(hash, **found, now);
    } else {
      database_unknown_.inc();
      cache_.erase(hash);
      unknown_.insert(hash, now);
    }
  }
  co_return decide(found->has_value() ? &**found : nullptr, key);
}

// A key known only by id (this gateway never saw the key itself, e.g. after a restart): its
// state from the admin views of the key, its tenant and its project.
boost::asio::awaitable<pg::db_result<std::optional<billing::key_info>>>
authenticator::fetch_by_id(std::string key_id) {
  auto key_op = billing_.tenants->get_key(key_id);
  auto key = co_await on_billing(billing_, std::move(key_op));
  if (!key) {
    if (key.error().status == 404) co_return std::optional<billing::key_info>{};
    co_return pg::db_error{key.error().message, "", false};
  }
  auto doc = json::document::parse(*key);
  if (!doc) co_return pg::db_error{"unreadable API key record", "", false};
  billing::key_info info;
  info.key_id = key_id;
  const json::value root = doc->root();
  auto text = [&](std::string_view name) {
    const json::value v = root.find(name);
    return v.valid() && v.is_string() ? std::string(v.as_string()) : std::string();
  };
  info.tenant_id = text("tenant_id");
  info.project_id = text("project_id");
  const std::string key_status = text("status");
  if (const json::value e = root.find("expires_at"); e.valid() && e.is_int64()) {
    info.expires_at_ms = e.as_int64() * 1000;
  }
  if (key_status == "revoked") info.inactive_reason = "revoked";
  if (info.inactive_reason.empty()) {
    auto tenant_op = billing_.tenants->get_tenant(info.tenant_id);
    auto tenant = co_await on_billing(billing_, std::move(tenant_op));
    if (!tenant) co_return pg::db_error{tenant.error().message, "", false};
    if (status_of(*tenant) != "active") info.inactive_reason = "tenant_disabled";
  }
  if (info.inactive_reason.empty() && !info.project_id.empty()) {
    auto project_op = billing_.tenants->get_project(info.project_id);
    auto project = co_await on_billing(billing_, std::move(project_op));
    if (!project) co_return pg::db_error{project.error().message, "", false};
    if (status_of(*project) != "active") info.inactive_reason = "project_disabled";
  }
  info.active = info.inactive_reason.empty();
  co_return std::optional<billing::key_info>{std::move(info)};
}

boost::asio::awaitable<result<caller>> authenticator::check_key_id(std::string key_id) {
  const std::string shown = key_id;
  const auto now = clock_.mono_now();
  std::optional<id_entry> cached;
  {
    std::lock_guard lock(mu_);
    if (auto it = by_id_.find(key_id); it != by_id_.end()) cached = it->second;
  }
  if (cached && now - cached->fetched < ttl_) co_return decide(&cached->key, shown, false, false);

  pg::db_result<std::optional<billing::key_info>> found = std::optional<billing::key_info>{};
  if (cached && !cached->hash.empty()) {
    auto lookup = billing_.tenants->find_key(cached->hash);
    found = co_await on_billing(billing_, std::move(lookup));
  } else {
    found = co_await fetch_by_id(key_id);
  }
  if (!found) {
    if (cached && now - cached->fetched < ttl_ + stale_grace) {
      co_return decide(&cached->key, shown, false, false);
    }
    co_return service_unavailable(
        "The API key cannot be verified right now (the account database is unavailable).",
        "service_unavailable", 1);
  }
  if (*found) {
    std::lock_guard lock(mu_);
    if (cached && !cached->hash.empty()) {
      remember(cached->hash, **found, now);
    } else {
      if (by_id_.size() >= key_cache_entries_max) by_id_.clear();
      by_id_[key_id] = id_entry{**found, "", now};
    }
  }
  co_return decide(found->has_value() ? &**found : nullptr, shown, false, false);
}

}  // namespace tollgate::gateway
