// API key authentication: see auth.hpp.
#include "gateway/auth.hpp"

#include <algorithm>

namespace tollgate::gateway {
namespace {

// Keys seen before keep working this long past their TTL while the database cannot be asked.
constexpr auto stale_grace = std::chrono::minutes(15);
constexpr std::size_t key_cache_entries_max = 100'000;

api_error unauthorized(std::string message, std::string code = "invalid_api_key") {
  api_error e;
  e.status = 401;
  e.type = "invalid_request_error";
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

// "tg-abcd****wxyz": enough to recognise a key in an error without repeating it.
std::string shown_key(std::string_view key) {
  if (key.size() < 12) return "****";
  return std::string(key.substr(0, 7)) + "****" + std::string(key.substr(key.size() - 4));
}

}  // namespace

bool caller::may_use(std::string_view model) const {
  if (!allowed_models) return true;
  return std::find(allowed_models->begin(), allowed_models->end(), model) !=
         allowed_models->end();
}

authenticator::authenticator(const billing_context& billing, std::chrono::milliseconds ttl,
                             const clock_source& clock, metrics::registry& registry)
    : billing_(billing),
      ttl_(ttl),
      clock_(clock),
      outcomes_(registry.add_counter("tollgate_auth_total",
                                     "API key checks by outcome (ok, missing, malformed, "
                                     "unknown, revoked, expired, disabled, unavailable).",
                                     {"outcome"})) {}

result<caller> authenticator::decide(const std::optional<billing::key_info>& key,
                                     std::string_view shown) {
  if (!key) {
    outcomes_.with({"unknown"}).inc();
    return unauthorized("Incorrect API key provided: " + std::string(shown) + ".");
  }
  if (!key->active) {
    if (key->inactive_reason == "revoked") {
      outcomes_.with({"revoked"}).inc();
      return unauthorized("The API key " + std::string(shown) + " has been revoked.");
    }
    outcomes_.with({"disabled"}).inc();
    return unauthorized("The " +
                            std::string(key->inactive_reason == "tenant_disabled" ? "account"
                                                                                  : "project") +
                            " of this API key is disabled.",
                        "account_deactivated");
  }
  if (key->expires_at_ms != 0 && unix_ms(clock_.wall_now()) >= key->expires_at_ms) {
    outcomes_.with({"expired"}).inc();
    return unauthorized("The API key " + std::string(shown) + " has expired.");
  }
  outcomes_.with({"ok"}).inc();
  return caller{key->key_id, key->tenant_id, key->project_id, key->allowed_models};
}

boost::asio::awaitable<result<caller>> authenticator::authenticate(
    std::string_view authorization) {
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.empty()) {
    outcomes_.with({"missing"}).inc();
    co_return unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "missing_api_key");
  }
  std::string_view key = authorization;
  if (key.size() > bearer.size() && std::equal(bearer.begin(), bearer.end(), key.begin(),
                                               [](char a, char b) {
                                                 return std::tolower(a) == std::tolower(b);
                                               })) {
    key.remove_prefix(bearer.size());
  } else {
    outcomes_.with({"malformed"}).inc();
    co_return unauthorized(
        "The Authorization header must be `Bearer YOUR_KEY`.", "invalid_api_key");
  }
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  const std::string shown = shown_key(key);
  if (!billing::is_well_formed_api_key(key)) {
    outcomes_.with({"malformed"}).inc();
    co_return unauthorized("Incorrect API key provided: " + shown + ".");
  }
  const std::string hash = billing::sha256_bytes(key);
  const auto now = clock_.mono_now();
  std::optional<entry> cached;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(hash); it != cache_.end()) cached = it->second;
  }
  if (cached && now - cached->fetched < ttl_) co_return decide(cached->key, shown);

  auto lookup = billing_.store->find_key(hash);
  auto found = co_await on_billing(billing_, std::move(lookup));
  if (!found) {
    if (cached && cached->key && now - cached->fetched < ttl_ + stale_grace) {
      co_return decide(cached->key, shown);  // the database is away: trust what we knew
    }
    outcomes_.with({"unavailable"}).inc();
    co_return service_unavailable(
        "The API key cannot be verified right now (the account database is unavailable). "
        "Please retry shortly.");
  }
  {
    std::lock_guard lock(mu_);
    if (cache_.size() >= key_cache_entries_max) cache_.clear();
    cache_[hash] = entry{*found, now};
  }
  co_return decide(*found, shown);
}

}  // namespace tollgate::gateway
