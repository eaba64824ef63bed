// The word tests of core/byte_words.hpp against a byte-by-byte reading of the same eight bytes:
// every pair of byte values at several pairs of places, among plain and non-ASCII neighbours.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/byte_words.hpp"

using namespace tollgate;

namespace {

std::uint64_t word_of(const std::array<unsigned char, 8>& bytes) {
  std::uint64_t word;
  std::memcpy(&word, bytes.data(), sizeof word);
  return word;
}

}  // namespace

// A match only in the top byte, two matches, and bytes of 0x80 and more around one.
static_assert(byte_words::any_below(0x00'61'61'61'61'61'61'61ULL, 1) != 0);
static_assert(byte_words::any_below(0x0d'61'61'61'61'61'61'0aULL, 14) != 0);
static_assert(byte_words::any_below(0xff'80'ff'80'ff'80'ff'80ULL, 0x20) == 0);
static_assert(byte_words::any_below(0xff'80'1f'80'ff'80'ff'80ULL, 0x20) != 0);
static_assert(byte_words::any_equal(0x22'80'ff'61'61'61'61'61ULL, '"') != 0);
static_assert(byte_words::any_equal(0xa2'dc'ff'61'61'61'61'61ULL, '"') == 0);
static_assert(byte_words::any_json_string_stop(0x7f'7e'61'20'61'61'61'61ULL) == 0);
static_assert(byte_words::any_json_string_stop(0x7f'7e'61'20'61'5c'61'61ULL) != 0);

TEST_CASE("the word tests find every byte they look for, and only such bytes") {
  const std::pair<int, int> places[] = {{0, 7}, {7, 0}, {3, 4}, {6, 7}, {0, 1}};
  const unsigned char fillers[] = {'a', 0x80, 0xff};
  std::size_t mismatches = 0;
  for (const unsigned char filler : fillers) {
    for (const auto& [first, second] : places) {
      for (int x = 0; x < 256; ++x) {
        for (int y = 0; y < 256; ++y) {
          std::array<unsigned char, 8> bytes;
          bytes.fill(filler);
          bytes[first] = static_cast<unsigned char>(x);
          bytes[second] = static_cast<unsigned char>(y);
          const std::uint64_t word = word_of(bytes);
          bool below_1 = false, below_14 = false, below_32 = false, quote = false,
               backslash = false, line_feed = false, carriage_return = false, high = false,
               stop = false;
          for (const unsigned char b : bytes) {
            below_1 |= b < 1;
            below_14 |= b < 14;
            below_32 |= b < 0x20;
            quote |= b == '"';
            backslash |= b == '\\';
            line_feed |= b == '\n';
            carriage_return |= b == '\r';
            high |= b >= 0x80;
            stop |= byte_words::json_string_stop[b];  // the single-byte form
          }
          mismatches += (byte_words::any_below(word, 1) != 0) != below_1;
          mismatches += (byte_words::any_below(word, 14) != 0) != below_14;
          mismatches += (byte_words::any_below(word, 0x20) != 0) != below_32;
          mismatches += (byte_words::any_equal(word, '"') != 0) != quote;
          mismatches += (byte_words::any_equal(word, '\\') != 0) != backslash;
          mismatches += (byte_words::any_equal(word, '\n') != 0) != line_feed;
          mismatches += (byte_words::any_equal(word, '\r') != 0) != carriage_return;
          mismatches += (byte_words::any_high(word) != 0) != high;
          mismatches += (byte_words::any_json_string_stop(word) != 0) != stop;
        }
      }
    }
  }
  CHECK(mismatches == 0);
}
