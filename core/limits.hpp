// Named defaults for every limit Tollgate enforces. Units are the last word of each name.
// Config values start from these and are range-checked against the *_min/*_max bounds.
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

inline constexpr std::uint64_t sse_line_bytes_max = 8u * 1024 * 1024;
inline constexpr std::uint64_t request_id_chars_max = 128;

}  // namespace tollgate::limits
