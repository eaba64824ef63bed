// Eight bytes at a time: tests on a 64-bit word for "some byte is below n" and "some byte
// equals c", so that the loops over text (JSON strings written and parsed, COPY text, response
// header values) cross runs of plain bytes a word at a time and look at single bytes only in a
// word that may hold one that matters. Each test answers exactly whether such a byte exists
// (not which one).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>

namespace tollgate::byte_words {

inline constexpr std::uint64_t ones = 0x0101010101010101ULL;
inline constexpr std::uint64_t highs = 0x8080808080808080ULL;

// The eight bytes at p (any alignment).
inline std::uint64_t load(const char* p) {
  std::uint64_t word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

// Nonzero when some byte of `word` is below n (n at most 128). The lowest such byte cannot
// borrow from below and sets its high bit; with none, no byte borrows, and a byte of 0x80 or
// more is masked by ~word.
constexpr std::uint64_t any_below(std::uint64_t word, unsigned n) {
  return (word - ones * n) & ~word & highs;
}

// Nonzero when some byte of `word` equals c.
constexpr std::uint64_t any_equal(std::uint64_t word, unsigned char c) {
  return any_below(word ^ (ones * c), 1);
}

// Nonzero when some byte of `word` is 0x80 or more (not ASCII).
constexpr std::uint64_t any_high(std::uint64_t word) {
  return word & highs;
}

// The bytes that end a plain run of a JSON string, written or read: a quote, a backslash, a
// control character or a byte that is not ASCII (the single-byte form of the test below).
inline constexpr auto json_string_stop = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
  return t;
}();

// Nonzero when some byte of `word` is one of json_string_stop.
constexpr std::uint64_t any_json_string_stop(std::uint64_t word) {
  return any_high(word) | any_below(word, 0x20) | any_equal(word, '"') | any_equal(word, '\\');
}

}  // namespace tollgate::byte_words
