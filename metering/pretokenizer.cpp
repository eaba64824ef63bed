// The pre-tokenizer matchers described in pretokenizer.hpp. Each function mirrors one regex
// alternative; the comments name it.
#include "metering/pretokenizer.hpp"

#include "metering/unicode.hpp"

namespace tollgate::metering {
namespace {

using byte = unsigned char;
namespace uc = unicode;

struct character {
  char32_t cp;
  std::uint8_t flags;
  int len;
};

inline character char_at(const byte* p, const byte* end) {
  if (*p < 0x80) return {*p, uc::ascii_flags(*p), 1};
  char32_t cp;
  const int len = uc::decode(p, end, cp);
  return {cp, cp == 0xFFFFFFFF ? std::uint8_t(0) : uc::flags_of(cp), len};
}

inline bool is_cr_or_lf(char32_t cp) { return cp == '\r' || cp == '\n'; }
// [^\s\p{L}\p{N}]
inline bool is_other(const character& c) { return !(c.flags & (uc::space | uc::letter | uc::number)); }
// [^\r\n\p{L}\p{N}]
inline bool is_prefix(const character& c) {
  return !is_cr_or_lf(c.cp) && !(c.flags & (uc::letter | uc::number));
}

// The longest run of characters whose flags include any of `mask`, from p. ASCII bytes take a
// one-load-per-byte loop; anything else the general one.
inline const byte* run_of(std::uint8_t mask, const byte* p, const byte* end) {
  while (p < end && *p < 0x80 && (uc::ascii_flags(*p) & mask)) ++p;
  if (p == end || *p < 0x80) return p;
  while (p < end) {
    const character c = char_at(p, end);
    if (!(c.flags & mask)) break;
    p += c.len;
  }
  return p;
}

// After an apostrophe: (?i:s|t|re|ve|m|ll|d); the end of the match or nullptr.
const byte* contraction_tail(const byte* p, const byte* end) {
  if (p >= end) return nullptr;
  const byte c = byte(*p | 0x20);  // ASCII lower case
  if (*p < 0x80) {
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return p + 1;
    if (p + 1 < end) {
      const byte c2 = byte(p[1] | 0x20);
      if ((c == 'r' || c == 'v') && c2 == 'e') return p + 2;
      if (c == 'l' && c2 == 'l') return p + 2;
    }
    return nullptr;
  }
  if (p + 1 < end && p[0] == 0xC5 && p[1] == 0xBF) return p + 2;  // U+017F LATIN SMALL LETTER LONG S
  return nullptr;
}

inline const byte* optional_contraction(const byte* p, const byte* end) {
  if (p < end && *p == '\'') {
    if (const byte* q = contraction_tail(p + 1, end)) return q;
  }
  return p;
}

// \p{N}{1,max}
inline const byte* digits(const byte* p, const byte* end, int max) {
  for (int n = 0; n < max && p < end; ++n) {
    const character c = char_at(p, end);
    if (!(c.flags & uc::number)) break;
    p += c.len;
  }
  return p;
}

// [^\s\p{L}\p{N}]+ then any run of the characters in `trail` (single bytes).
template <bool AllowSlash>
const byte* punctuation(const byte* p, const byte* end) {
  while (p < end) {
    const character c = char_at(p, end);
    if (!is_other(c)) break;
    p += c.len;
  }
  while (p < end && (*p == '\r' || *p == '\n' || (AllowSlash && *p == '/'))) ++p;
  return p;
}

// \s*[\r\n]+ | \s+(?!\S) | \s+, at a whitespace character.
const byte* whitespace(const byte* p, const byte* end) {
  const byte* last_newline = nullptr;
  const byte* last_start = p;
  const byte* q = p;
  while (q < end) {
    const character c = char_at(q, end);
    if (!(c.flags & uc::space)) break;
    if (is_cr_or_lf(c.cp)) last_newline = q;
    last_start = q;
    q += c.len;
  }
  if (last_newline) return last_newline + 1;  // \s*[\r\n]+ backs off to the last newline
  if (q == end) return q;                     // \s+(?!\S) at the end of the text
  if (last_start > p) return last_start;      // \s+(?!\S) leaves the last one for the next piece
  return q;                                   // \s+: one whitespace character before \S
}

const byte* cl100k_piece(const byte* p, const byte* end, int max_digits) {
  const character c0 = char_at(p, end);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c0.cp == '\'') {
    if (const byte* q = contraction_tail(p + 1, end)) return q;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0.flags & uc::letter) return run_of(uc::letter, p + c0.len, end);
  if (is_prefix(c0) && p + c0.len < end && (char_at(p + c0.len, end).flags & uc::letter)) {
    return run_of(uc::letter, p + c0.len, end);
  }
  // \p{N}{1,3}
  if (c0.flags & uc::number) return digits(p, end, max_digits);
  // ' '?[^\s\p{L}\p{N}]+[\r\n]*
  if (c0.cp == ' ' && p + 1 < end && is_other(char_at(p + 1, end))) return punctuation<false>(p + 1, end);
  if (is_other(c0)) return punctuation<false>(p, end);
  return whitespace(p, end);
}

// [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)? from p, or nullptr.
// The starred class gives back characters until a lower-ish one can start the plus.
const byte* o200k_upper_star_lower_plus(const byte* p, const byte* end) {
  const byte* last_lowerish = nullptr;
  const byte* q = p;
  while (q < end) {
    const character c = char_at(q, end);
    if (!(c.flags & uc::upperish)) break;
    if (c.flags & uc::lowerish) last_lowerish = q;
    q += c.len;
  }
  const byte* lower_start = nullptr;
  if (q < end && (char_at(q, end).flags & uc::lowerish)) {
    lower_start = q;
  } else if (last_lowerish) {
    lower_start = last_lowerish;
  } else {
    return nullptr;
  }
  return optional_contraction(run_of(uc::lowerish, lower_start, end), end);
}

// [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)? from p, or nullptr.
const byte* o200k_upper_plus_lower_star(const byte* p, const byte* end) {
  const byte* q = run_of(uc::upperish, p, end);
  if (q == p) return nullptr;
  return optional_contraction(run_of(uc::lowerish, q, end), end);
}

const byte* o200k_piece(const byte* p, const byte* end) {
  const character c0 = char_at(p, end);
  const bool prefix = is_prefix(c0);
  const byte* after_prefix = p + c0.len;
  // Alternatives 1 and 2, each first with the optional prefix character, then without.
  if (prefix && after_prefix < end) {
    if (const byte* q = o200k_upper_star_lower_plus(after_prefix, end)) return q;
  }
  if (const byte* q = o200k_upper_star_lower_plus(p, end)) return q;
  if (prefix && after_prefix < end) {
    if (const byte* q = o200k_upper_plus_lower_star(after_prefix, end)) return q;
  }
  if (const byte* q = o200k_upper_plus_lower_star(p, end)) return q;
  // \p{N}{1,3}
  if (c0.flags & uc::number) return digits(p, end, 3);
  // ' '?[^\s\p{L}\p{N}]+[\r\n/]*
  if (c0.cp == ' ' && p + 1 < end && is_other(char_at(p + 1, end))) return punctuation<true>(p + 1, end);
  if (is_other(c0)) return punctuation<true>(p, end);
  return whitespace(p, end);
}

constexpr std::string_view cl100k_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view o200k_pattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

std::optional<split_rule> split_rule_for_pattern(std::string_view pattern) {
  if (pattern == cl100k_pattern) return split_rule::cl100k;
  if (pattern == qwen2_pattern) return split_rule::qwen2;
  if (pattern == o200k_pattern) return split_rule::o200k;
  return std::nullopt;
}

const unsigned char* next_piece_end(split_rule rule, const unsigned char* at, const unsigned char* end) {
  switch (rule) {
    case split_rule::cl100k: return cl100k_piece(at, end, 3);
    case split_rule::qwen2: return cl100k_piece(at, end, 1);
    case split_rule::o200k: return o200k_piece(at, end);
  }
  return end;
}

std::vector<std::string_view> split_pieces(split_rule rule, std::string_view text) {
  std::vector<std::string_view> pieces;
  split_text(rule, text, [&](std::string_view piece) { pieces.push_back(piece); });
  return pieces;
}

}  // namespace tollgate::metering
