// Pre-tokenization: splits text into the pieces that BPE merges within. Each supported pattern is
// a hand-written matcher that reproduces exactly what the regex (leftmost-first alternation,
// greedy quantifiers with backtracking, `\s` as Unicode White_Space) matches:
//
//  cl100k  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//          (tiktoken cl100k_base; also Llama 3's tokenizer.json)
//  qwen2   the same with \p{N} (one digit per piece) instead of \p{N}{1,3} (Qwen2, Qwen3)
//  o200k   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
//          [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
//          \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// `(?i:'s)` also matches "'ſ" (U+017F folds to s), as Rust's regex does. Bytes that are not valid
// UTF-8 count as one character of no class.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

namespace tollgate::metering {

enum class split_rule { cl100k, qwen2, o200k };

// The rule whose regex is exactly `pattern` (as written in tokenizer.json), if supported.
std::optional<split_rule> split_rule_for_pattern(std::string_view pattern);

// Calls emit(piece) for each piece, in order; the pieces tile `text`.
template <class Emit>
void split_text(split_rule rule, std::string_view text, Emit&& emit);

// The end of the piece that starts at `at` (at < end).
const unsigned char* next_piece_end(split_rule rule, const unsigned char* at, const unsigned char* end);

template <class Emit>
void split_text(split_rule rule, std::string_view text, Emit&& emit) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char* q = next_piece_end(rule, p, end);
    emit(std::string_view(reinterpret_cast<const char*>(p), std::size_t(q - p)));
    p = q;
  }
}

std::vector<std::string_view> split_pieces(split_rule rule, std::string_view text);

}  // namespace tollgate::metering
