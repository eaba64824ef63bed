// libFuzzer target: the strict HTTP/1.1 request parser. A head parses the same whole or grown
// byte by byte (never reading past its input, every view inside it), and the handlers' copy of
// it (http::request) finds every field as the head has it; a chunked body decodes the same
// however it is split, and never grows past its limit.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/http1_parser.hpp"
#include "core/http_request.hpp"

using namespace tollgate::http1;

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The handlers' copy: the same method, target, version and fields in order, and each name
// finds the value of the first field of that name (whatever its case), after the input is gone.
void check_copy(std::string& input_copy, const request_head& parsed_from_copy) {
  const tollgate::http::request req{parsed_from_copy};
  const request_head& head = parsed_from_copy;
  std::string expected_method(head.method);
  std::string expected_target(head.target);
  std::vector<std::pair<std::string, std::string>> expected;
  for (const field& f : head.headers()) {
    std::string first;
    for (const field& g : head.headers()) {
      if (same_name(g.name, f.name)) {
        first = std::string(g.value);
        break;
      }
    }
    expected.emplace_back(std::string(f.name), std::move(first));
  }
  const unsigned version = head.version;
  std::vector<std::pair<std::string, std::string>> in_order;
  for (const field& f : head.headers()) in_order.emplace_back(f.name, f.value);
  std::string().swap(
      input_copy);  // frees the parsed bytes: a view still into them is a read after free
  if (req.method_string() != expected_method || req.target() != expected_target ||
      req.version() != version) {
    std::abort();
  }
  const auto fields = req.fields();
  if (fields.size() != in_order.size()) std::abort();
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].first != in_order[i].first || fields[i].second != in_order[i].second)
      std::abort();
  }
  for (auto& [name, value] : expected) {
    if (req[name] != value) std::abort();
    for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (req[name] != value) std::abort();
  }
}

void check_head(std::string_view input) {
  constexpr std::size_t head_limit = 2048;
  request_head head;
  const parse_result whole = parse_head(input, head_limit, head);
  if (whole.result == outcome::done) {
    if (whole.consumed == 0 || whole.consumed > input.size()) std::abort();
    if (!inside(head.method, input) || !inside(head.target, input)) std::abort();
    for (const field& f : head.headers()) {
      if (f.name.empty() || !inside(f.name, input) || !inside(f.value, input)) std::abort();
    }
    if (head.chunked && head.has_content_length) std::abort();
    std::string copy(input);
    request_head of_copy;
    if (parse_head(copy, head_limit, of_copy).result != outcome::done) std::abort();
    check_copy(copy, of_copy);
  }
  // Growing the input never decides differently once the whole head is there.
  request_head grown;
  for (std::size_t n = 0; n <= input.size(); n += 1 + n / 8) {
    const parse_result r = parse_head(input.substr(0, n), head_limit, grown);
    const bool same = whole.result == outcome::done && r.consumed == whole.consumed;
    if (r.result == outcome::done && !same) {
      std::abort();
    }
  }
}

void check_chunked(std::string_view input, std::size_t step) {
  constexpr std::uint64_t body_limit = 1024;
  chunked_decoder a{body_limit};
  std::string body_a;
  const parse_result whole = a.feed(input, body_a);
  if (body_a.size() > body_limit || whole.consumed > input.size()) std::abort();

  chunked_decoder b{body_limit};
  std::string body_b;
  std::string pending;
  outcome last = outcome::need_more;
  std::size_t used = 0;  // input bytes consumed by b
  for (std::size_t i = 0; i < input.size() && last == outcome::need_more; i += step) {
    const std::string_view piece = input.substr(i, step);
    pending += piece;
    const parse_result r = b.feed(pending, body_b);
    last = r.result;
    if (r.result == outcome::need_more) {
      used += r.consumed;
      pending.erase(0, r.consumed);
    } else if (r.result == outcome::done) {
      used += r.consumed;
    }
  }
  if (whole.result != last) std::abort();
  if (last == outcome::done && (body_a != body_b || used != whole.consumed)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 7;  // the first byte picks the chunk size
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_head(input);
  check_chunked(input, step);
  return 0;
}
