// libFuzzer target: the SSE parser yields the same events however the bytes are chunked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "backends/sse.hpp"

using tollgate::backends::sse_event;
using tollgate::backends::sse_parser;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 7;  // the first byte picks the chunk size
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  sse_parser whole{4096};
  std::vector<sse_event> a;
  const bool whole_ok = whole.feed(input, a);
  whole.finish(a);

  sse_parser chunked{4096};
  std::vector<sse_event> b;
  bool chunked_ok = true;
  for (std::size_t i = 0; i < input.size() && chunked_ok; i += step) {
    chunked_ok = chunked.feed(input.substr(i, step), b);
  }
  chunked.finish(b);

  if (whole_ok != chunked_ok) std::abort();
  if (!whole_ok) return 0;
  if (a.size() != b.size()) std::abort();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].data != b[i].data || a[i].event != b[i].event || a[i].id != b[i].id) std::abort();
  }
  return 0;
}
