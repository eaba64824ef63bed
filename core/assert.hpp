// Assertions of the program's own invariants (TigerBeetle's habit): on in every build, release
// included. A failed one names the file, the line and the condition on stderr and aborts, since
// the process is in a state its code never meant to reach. Never for conditions the outside
// world imposes (input, peers, the network): those are results (core/error.hpp).
#pragma once
#include <cstdio>
#include <cstdlib>

namespace tollgate::detail {
[[noreturn]] inline void assertion_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "tollgate: assertion failed at %s:%d: %s\n", file, line, condition);
  std::fflush(stderr);
  std::abort();
}
}  // namespace tollgate::detail

#define TOLLGATE_ASSERT(condition)                                                    \
  do {                                                                                \
    if (!(condition)) [[unlikely]]                                                    \
      ::tollgate::detail::assertion_failed(#condition, __FILE__, __LINE__);           \
  } while (false)
