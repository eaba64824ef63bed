// Named defaults and bounds for every limit Tollgate enforces, in one place, with the
// static_asserts that relate them. Units are the last word of each name. Config values start
// from these and are range-checked against the *_min/*_max bounds.
#pragma once
#include <cstdint>

namespace tollgate::limits {

inline constexpr std::uint64_t body_limit_bytes_default = 8u * 1024 * 1024;
inline constexpr std::uint64_t body_limit_bytes_max = 1024u * 1024 * 1024;
inline constexpr std::uint64_t header_limit_bytes_default = 16 * 1024;
inline constexpr std::uint64_t request_read_timeout_ms_default = 30'000;
inline constexpr std::uint64_t keepalive_idle_timeout_ms_default = 60'000;
inline constexpr std::uint64_t client_write_timeout_ms_default = 30'000;
inline constexpr std::uint64_t drain_timeout_ms_default = 30'000;
inline constexpr std::uint64_t max_connections_default = 10'000;
inline constexpr std::uint64_t admin_max_connections_default = 1'000;

inline constexpr std::uint64_t upstream_connect_timeout_ms_default = 2'000;
inline constexpr std::uint64_t upstream_first_byte_timeout_ms_default = 120'000;
inline constexpr std::uint64_t upstream_idle_timeout_ms_default = 60'000;
inline constexpr std::uint64_t upstream_idle_connections_max_default = 256;
// Idle pooled connections older than this are closed rather than reused: common upstream
// servers (uvicorn, as used by vLLM) close idle keep-alive connections after 5 s.
inline constexpr std::uint64_t upstream_pooled_idle_ms_max = 4'000;
inline constexpr std::uint64_t upstream_response_limit_bytes_default = 64u * 1024 * 1024;
// Upstream replicas, health, retries and limits (backends/balancer.hpp, docs/CONFIG.md).
inline constexpr std::uint64_t upstream_endpoints_max = 64;
inline constexpr std::uint64_t upstream_endpoint_weight_max = 1'000;
inline constexpr std::uint64_t upstream_eject_consecutive_failures_default = 5;
inline constexpr std::uint64_t upstream_ejection_base_ms_default = 10'000;
inline constexpr std::uint64_t upstream_ejection_max_ms_default = 300'000;
inline constexpr std::uint64_t upstream_health_check_interval_ms_default = 5'000;
inline constexpr std::uint64_t upstream_health_check_timeout_ms_default = 2'000;
inline constexpr std::uint64_t upstream_health_check_healthy_threshold_default = 2;
inline constexpr std::uint64_t upstream_health_check_unhealthy_threshold_default = 3;
inline constexpr std::uint64_t upstream_attempts_max_default = 2;
inline constexpr std::uint64_t upstream_attempts_max_max = 10;
inline constexpr std::uint64_t upstream_retry_budget_percent_default = 20;
inline constexpr std::uint64_t upstream_retry_budget_min_retries_default = 10;
// The retry budget counts requests and retries over this sliding window (in 10 slices).
inline constexpr std::uint64_t upstream_retry_budget_window_ms = 10'000;
inline constexpr std::uint64_t upstream_retry_after_max_ms_default = 1'000;
inline constexpr std::uint64_t upstream_queue_timeout_ms_default = 1'000;
// Fallback models and routing rules (gateway/routing.hpp, docs/CONFIG.md).
inline constexpr std::uint64_t model_fallbacks_max = 8;       // models one request may fall back to
inline constexpr std::uint64_t routing_rules_max = 64;         // rules of one virtual model
inline constexpr std::uint64_t routing_split_targets_max = 16;  // targets of one weighted split
inline constexpr std::uint64_t routing_split_percent = 100;     // a split's weights sum to this

inline constexpr std::uint64_t sse_line_bytes_max = 8u * 1024 * 1024;
inline constexpr std::uint64_t request_id_chars_max = 128;
// POST /v1/embeddings: the tokens of all inputs of one request together (OpenAI's limit).
inline constexpr std::int64_t embedding_request_tokens_max = 300'000;

// ---- HTTP server (core/http_server.cpp) ----
// A refused body still being sent is read and dropped for a while before closing (lingering
// close), at most this much and this long, through a buffer of this size.
inline constexpr std::uint64_t linger_bytes_max = 64u * 1024 * 1024;
inline constexpr std::uint64_t linger_ms_max = 2'000;
inline constexpr std::uint64_t linger_buffer_bytes = 64 * 1024;
// After a failed accept (out of descriptors): the pause before the next one.
inline constexpr std::uint64_t accept_retry_pause_ms = 50;

// ---- API key authentication (gateway/auth.cpp) ----
// A cached key stays usable this long past its TTL while PostgreSQL is away.
inline constexpr std::uint64_t key_cache_stale_grace_ms = 15 * 60 * 1000;
// Real keys only (unknown ones go to the negative cache): bounded by the key table.
inline constexpr std::uint64_t key_cache_entries_max = 100'000;
// Client addresses (IPv6 per /64) holding an unknown-key look-up bucket.
inline constexpr std::uint64_t key_lookup_sources_max = 10'000;
// Keys shorter than this are never shown, even in part, in an error message.
inline constexpr std::uint64_t key_shown_chars_min = 12;

// ---- admin API (gateway/admin_*.cpp) ----
inline constexpr std::uint64_t admin_name_bytes_max = 200;   // names, memos, ids in bodies
inline constexpr std::uint64_t model_name_bytes_max = 256;  // a model in an allowlist
inline constexpr std::uint64_t admin_page_limit_max = 100;  // `limit` of a list
inline constexpr std::uint64_t admin_actor_chars_max = 64;  // x-tollgate-actor
inline constexpr std::int64_t key_rotate_grace_s_max = 30 * 86400;
inline constexpr std::int64_t unix_seconds_max = 253'402'300'799;  // 9999-12-31T23:59:59Z
inline constexpr std::int64_t credit_priority_max = 1'000'000;
inline constexpr std::int64_t basis_points_max = 10'000;  // 100 %
inline constexpr std::uint64_t alert_thresholds_max = 10;  // per budget
inline constexpr std::int64_t alert_percent_max = 1'000;   // of the limit
inline constexpr std::uint64_t budget_models_max = 64;     // models a budget is limited to
// A budget's limit, in its unit: a quarter of the 64-bit counters' range, well inside it.
inline constexpr std::int64_t budget_limit_max = INT64_MAX / 4;

// ---- attribution (metering/attribution.hpp) ----
// OpenAI's limits for a request's `metadata`: 16 pairs, keys of 64 characters, values of 512.
inline constexpr std::uint64_t tags_per_source_max = 16;  // request, header, key or project
inline constexpr std::uint64_t tag_key_chars_max = 64;
inline constexpr std::uint64_t tag_value_chars_max = 512;
inline constexpr std::uint64_t end_user_chars_max = 256;  // `user`, x-tollgate-end-user
inline constexpr std::uint64_t session_chars_max = 128;   // x-tollgate-session
// A budget's scope_id in bytes: the longest tag key=value, four bytes a character.
inline constexpr std::uint64_t scope_id_bytes_max =
    4 * (tag_key_chars_max + 1 + tag_value_chars_max);

static_assert(upstream_pooled_idle_ms_max < upstream_idle_timeout_ms_default,
              "a pooled connection is dropped before the upstream's idle timeout would");
static_assert(admin_max_connections_default <= max_connections_default);
static_assert(header_limit_bytes_default < body_limit_bytes_default);
static_assert(body_limit_bytes_default <= body_limit_bytes_max);
static_assert(sse_line_bytes_max <= upstream_response_limit_bytes_default,
              "one SSE line fits in a whole upstream response");
static_assert(linger_buffer_bytes <= linger_bytes_max);
static_assert(model_name_bytes_max >= admin_name_bytes_max);
static_assert(admin_actor_chars_max <= request_id_chars_max,
              "an actor name is checked with the client request id's rules");

}  // namespace tollgate::limits
