// Time sources, injected so tests can control time. Wall time stamps records; the monotonic
// clock measures latencies and drives timeouts.
#pragma once
#include <chrono>
#include <cstdint>

namespace tollgate {

class clock_source {
 public:
  virtual ~clock_source() = default;
  virtual std::chrono::system_clock::time_point wall_now() const = 0;
  virtual std::chrono::steady_clock::time_point mono_now() const = 0;
};

class system_clock_source final : public clock_source {
 public:
  std::chrono::system_clock::time_point wall_now() const override {
    return std::chrono::system_clock::now();
  }
  std::chrono::steady_clock::time_point mono_now() const override {
    return std::chrono::steady_clock::now();
  }
};

inline std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline std::int64_t elapsed_us(std::chrono::steady_clock::time_point from,
                               std::chrono::steady_clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

}  // namespace tollgate
