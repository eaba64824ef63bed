// API keys, object ids and webhook secrets: see api_keys.hpp.
#include "billing/api_keys.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace tollgate::billing {

namespace {

constexpr std::string_view base62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::size_t api_key_random_bytes = 32;
constexpr std::size_t api_key_body_chars = 43;  // ceil(256 / log2(62))

void random_bytes(unsigned char* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    // The RNG failing is not an operating condition to handle: nothing secure can follow.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
}

// Base62 of a big-endian byte string, left-padded with '0' to `width` characters.
std::string to_base62(std::vector<unsigned char> num, std::size_t width) {
  std::string out;
  while (true) {
    bool zero = true;
    unsigned rem = 0;
    for (auto& b : num) {
      const unsigned cur = rem * 256 + b;
      b = static_cast<unsigned char>(cur / 62);
      rem = cur % 62;
      if (b != 0) zero = false;
    }
    out.push_back(base62[rem]);
    if (zero) break;
  }
  while (out.size() < width) out.push_back('0');
  return {out.rbegin(), out.rend()};
}

}  // namespace

std::string new_api_key() {
  std::vector<unsigned char> bytes(api_key_random_bytes);
  random_bytes(bytes.data(), bytes.size());
  return std::string(api_key_prefix) + to_base62(std::move(bytes), api_key_body_chars);
}

std::string new_webhook_secret() {
  std::vector<unsigned char> bytes(api_key_random_bytes);
  random_bytes(bytes.data(), bytes.size());
  return "whsec_" + to_base62(std::move(bytes), api_key_body_chars);
}

bool is_well_formed_api_key(std::string_view key) {
  if (key.size() != api_key_prefix.size() + api_key_body_chars) return false;
  if (key.substr(0, api_key_prefix.size()) != api_key_prefix) return false;
  for (const char c : key.substr(api_key_prefix.size())) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!alnum) return false;  // base62
  }
  return true;
}

// Every request's key is hashed: the digest is fetched from OpenSSL's provider once (an implicit
// fetch by EVP_sha256() costs a lock and a look-up per call) and each thread reuses one context.
std::string sha256_bytes(std::string_view data) {
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct ctx_deleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local const std::unique_ptr<EVP_MD_CTX, ctx_deleter> ctx{EVP_MD_CTX_new()};
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (sha256 == nullptr || ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), sha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out, &n) != 1) {
    return {};  // OpenSSL without SHA-256, or out of memory: no key has an empty hash
  }
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string new_object_id(std::string_view prefix) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::vector<unsigned char> t(8);
  for (int i = 7; i >= 0; --i) t[static_cast<std::size_t>(7 - i)] =
      static_cast<unsigned char>((static_cast<std::uint64_t>(ms) >> (8 * i)) & 0xff);
  std::vector<unsigned char> r(6);
  random_bytes(r.data(), r.size());
  return std::string(prefix) + "_" + to_base62(std::move(t), 10).substr(0, 10) +
         to_base62(std::move(r), 9).substr(0, 8);
}

}  // namespace tollgate::billing
