// Unit tests of the authenticator's bounded parts: the LRU cache of unknown keys, the per-source
// limit on look-ups of unknown keys, and which API requests are authenticated before their body.
#include <catch2/catch.hpp>

#include "gateway/auth.hpp"

using namespace tollgate::gateway;
using namespace std::chrono_literals;
namespace bhttp = boost::beast::http;

TEST_CASE("negative key cache: bounded, least recently used evicted, entries expire",
          "[auth_cache]") {
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  negative_key_cache cache(3, 1000ms);
  cache.insert("a", t0);
  cache.insert("b", t0);
  cache.insert("c", t0);
  CHECK(cache.contains("a", t0));  // a is now the most recently used
  cache.insert("d", t0);           // evicts b, the least recently used
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.contains("b", t0));
  CHECK(cache.contains("a", t0));
  CHECK(cache.contains("c", t0));
  CHECK(cache.contains("d", t0));
  CHECK_FALSE(cache.contains("a", t0 + 1000ms));  // expired, and dropped
  CHECK(cache.size() == 2);
  cache.erase("c");
  CHECK_FALSE(cache.contains("c", t0));
  for (int i = 0; i < 10'000; ++i) cache.insert("k" + std::to_string(i), t0);
  CHECK(cache.size() == 3);

  negative_key_cache off(0, 1000ms);
  off.insert("a", t0);
  CHECK_FALSE(off.contains("a", t0));
}

TEST_CASE("key look-up limiter: a burst, then the rate, per source", "[auth_cache]") {
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  key_lookup_limiter limiter(10, 5, 3);  // 10/s, burst 5, 3 sources
  for (int i = 0; i < 5; ++i) CHECK(limiter.take("127.0.0.2", t0));
  CHECK_FALSE(limiter.take("127.0.0.2", t0));
  CHECK(limiter.take("127.0.0.1", t0));        // another source has its own bucket
  CHECK_FALSE(limiter.take("127.0.0.2", t0 + 50ms));
  CHECK(limiter.take("127.0.0.2", t0 + 100ms));  // one token per 100 ms
  CHECK_FALSE(limiter.take("127.0.0.2", t0 + 100ms));
  limiter.give_back("127.0.0.2");  // the look-up found a real key
  CHECK(limiter.take("127.0.0.2", t0 + 100ms));
  // The refill never exceeds the burst.
  for (int i = 0; i < 5; ++i) CHECK(limiter.take("127.0.0.2", t0 + 10s));
  CHECK_FALSE(limiter.take("127.0.0.2", t0 + 10s));
}

TEST_CASE("key look-up limiter: the map of sources stays bounded", "[auth_cache]") {
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  key_lookup_limiter limiter(1, 2, 100);
  for (int i = 0; i < 10'000; ++i) limiter.take("10.0." + std::to_string(i), t0);
  CHECK(limiter.sources() <= 100);
  // A limited source keeps its (empty) bucket while others are full and can go first.
  key_lookup_limiter small(1, 1, 2);
  CHECK(small.take("a", t0));
  CHECK(small.take("b", t0 + 5s));  // a refilled by now
  CHECK(small.take("c", t0 + 5s));  // forgets a (full again), keeps b
  CHECK_FALSE(small.take("b", t0 + 5s));
}

TEST_CASE("API requests authenticated before their body", "[auth_cache]") {
  CHECK(api_request_needs_key(bhttp::verb::post, "/v1/files"));
  CHECK(api_request_needs_key(bhttp::verb::get, "/v1/files/file_1/content"));
  CHECK(api_request_needs_key(bhttp::verb::post, "/v1/batches"));
  CHECK(api_request_needs_key(bhttp::verb::post, "/v1/batches/b/cancel"));
  CHECK(api_request_needs_key(bhttp::verb::post, "/v1/chat/completions"));
  CHECK(api_request_needs_key(bhttp::verb::post, "/v1/completions"));
  CHECK(api_request_needs_key(bhttp::verb::get, "/v1/models"));
  CHECK(api_request_needs_key(bhttp::verb::get, "/v1/models/dev-echo"));
  CHECK(api_request_needs_key(bhttp::verb::get, "/v1/usage"));
  CHECK(api_request_needs_key(bhttp::verb::get, "/v1/budgets"));
  // Answered without a key (405, 404) as before.
  CHECK_FALSE(api_request_needs_key(bhttp::verb::post, "/v1/budgets"));
  CHECK_FALSE(api_request_needs_key(bhttp::verb::get, "/v1/chat/completions"));
  CHECK_FALSE(api_request_needs_key(bhttp::verb::post, "/v1/models"));
  CHECK_FALSE(api_request_needs_key(bhttp::verb::post, "/v1/unknown"));
  CHECK_FALSE(api_request_needs_key(bhttp::verb::get, "/v1/filesx"));
}

TEST_CASE("key look-up limiter: IPv6 clients are limited by their /64", "[auth_cache]") {
  namespace ip = boost::asio::ip;
  CHECK(lookup_source_of(ip::make_address("127.0.0.2")) == "127.0.0.2");
  CHECK(lookup_source_of(ip::make_address("::ffff:10.1.2.3")) == "10.1.2.3");
  CHECK(lookup_source_of(ip::make_address("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64");
  CHECK(lookup_source_of(ip::make_address("2001:db8:1:2:ffff:ffff:ffff:ffff")) ==
        lookup_source_of(ip::make_address("2001:db8:1:2::9")));
  CHECK(lookup_source_of(ip::make_address("2001:db8:1:3::1")) !=
        lookup_source_of(ip::make_address("2001:db8:1:2::1")));
}
