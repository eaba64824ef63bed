// Byte-level BPE tokenizers, exact to the reference implementations:
//  - tiktoken encodings (`cl100k_base`, `o200k_base`) from `.tiktoken` rank files;
//  - Hugging Face `tokenizer.json` byte-level BPE models (Llama 3, Qwen2/Qwen3 families).
// One core serves both: text is normalized (NFC when the model asks), split into pieces by the
// model's pre-tokenizer pattern (hand-written matchers that reproduce the regex semantics, see
// pretokenizer.hpp), and each piece is merged pair by pair by rank. Immutable after loading and
// safe to share between threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "metering/pretokenizer.hpp"

namespace tollgate::metering {

using token_id = std::uint32_t;

class tokenizer {
 public:
  // tiktoken: `encoding` is "cl100k_base" or "o200k_base"; `rank_file` is its .tiktoken file.
  static result<std::shared_ptr<const tokenizer>> load_tiktoken(std::string_view encoding,
                                                                const std::string& rank_file);
  // A Hugging Face tokenizer.json (BPE model, byte-level, a supported Split pattern).
  static result<std::shared_ptr<const tokenizer>> load_hugging_face(const std::string& path);
  static result<std::shared_ptr<const tokenizer>> parse_hugging_face(std::string_view json,
                                                                     std::string name);

  // Encodes `text` as ordinary text: special-token strings inside it are plain text. Appends to
  // `out`. Bytes that are not valid UTF-8 are encoded as their own byte tokens.
  void encode(std::string_view text, std::vector<token_id>& out) const;
  std::vector<token_id> encode(std::string_view text) const;
  std::size_t count(std::string_view text) const;

  // The bytes of the tokens, concatenated; nullopt names no token (an id out of range).
  std::optional<std::string> decode(std::span<const token_id> ids) const;

  // The id of a special (or added) token, by its text, e.g. "<|im_start|>".
  std::optional<token_id> special_token(std::string_view text) const;

  const std::string& name() const { return name_; }
  split_rule rule() const { return rule_; }
  std::size_t vocab_size() const { return token_offset_.size() - 1; }

  tokenizer(const tokenizer&) = delete;
  tokenizer& operator=(const tokenizer&) = delete;
  ~tokenizer();

 private:
  struct byte_map;  // token bytes -> id
  struct pair_map;  // (left id, right id) -> (merge rank, merged id)

  tokenizer();
  bool add_token(token_id id, std::string_view bytes);  // false if the id already has a token
  void finish_vocabulary();
  // Which tokens a piece equal to them encodes as directly: those that merging their own
  // bytes reproduces (Hugging Face models without ignore_merges).
  void check_whole_pieces(const std::vector<token_id>& ordinary);
  std::optional<token_id> find_bytes(std::string_view bytes) const;
  std::string_view token_bytes(token_id id) const;
  void merge_piece(const unsigned char* piece, std::size_t n, std::vector<token_id>& out) const;
  void merge_long_piece(const unsigned char* piece, std::size_t n, std::vector<token_id>& out) const;

  std::string name_;
  split_rule rule_ = split_rule::cl100k;
  bool nfc_ = false;

  std::string token_text_;                  // every token's bytes, back to back
  std::vector<std::uint32_t> token_offset_;  // id -> offset in token_text_ (size = ids + 1)
  std::vector<bool> has_token_;              // ids with bytes (the id space may have gaps)
  std::vector<bool> whole_piece_ok_;  // a piece equal to this token's bytes encodes as this token
  bool all_whole_pieces_ok_ = true;   // true for tiktoken and ignore_merges: skip the lookup above
  std::unique_ptr<byte_map> by_bytes_;
  std::unique_ptr<pair_map> pairs_;
  token_id byte_token_[256] = {};
  std::vector<std::pair<std::string, token_id>> specials_;  // sorted by text
  std::vector<std::pair<token_id, std::string>> staged_;    // tokens added, before finish_vocabulary
};

}  // namespace tollgate::metering
