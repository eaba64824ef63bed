// API keys, object ids and webhook secrets: how they are generated and hashed. No database;
// the tenant store keeps keys (as their SHA-256), authentication checks and hashes them here.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace tollgate::billing {

// Every key starts with this prefix; the prefix and the next `key_display_chars` characters
// are kept in the clear for display ("tg-0hN3x2Qp...").
inline constexpr std::string_view api_key_prefix = "tg-";
inline constexpr std::size_t key_display_chars = 8;

// "tg-" followed by 43 base62 characters encoding 32 random bytes (OpenSSL RAND_bytes).
std::string new_api_key();
// Whether `key` has the shape of a Tollgate key (checked before any lookup).
bool is_well_formed_api_key(std::string_view key);
// SHA-256 of the key, the only form in which it is stored.
std::string sha256_bytes(std::string_view data);
// Ids are a type prefix, 10 base62 characters of the creation time in ms (so they sort in
// creation order) and 8 random ones: "ten_0hN3x2Qp1aZ4kq9WvB".
std::string new_object_id(std::string_view prefix);
// A webhook signing secret: "whsec_" followed by 43 base62 characters (32 random bytes).
std::string new_webhook_secret();

}  // namespace tollgate::billing
