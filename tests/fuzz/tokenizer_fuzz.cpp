// libFuzzer target: tokenizers and pre-tokenizers on arbitrary bytes.
//  - every pre-tokenizer's pieces are non-empty and tile the input exactly;
//  - decode(encode(s)) == s (after NFC for Qwen's normalizing tokenizer), count == ids;
//  - NFC is idempotent and agrees with its quick check.
// Tokenizer data comes from $TOLLGATE_TOKENIZER_DIR or .cache/tokenizers (make deps).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "metering/tokenizer.hpp"
#include "metering/unicode.hpp"

using namespace tollgate::metering;

namespace {
std::shared_ptr<const tokenizer> cl100k, o200k, qwen3;

std::shared_ptr<const tokenizer> must(tollgate::result<std::shared_ptr<const tokenizer>> t) {
  if (!t) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", t.error().message.c_str());
    std::abort();
  }
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("TOLLGATE_TOKENIZER_DIR");
  const std::string dir = env != nullptr && *env != '\0' ? env : ".cache/tokenizers";
  cl100k = must(tokenizer::load_tiktoken("cl100k_base", dir + "/cl100k_base.tiktoken"));
  o200k = must(tokenizer::load_tiktoken("o200k_base", dir + "/o200k_base.tiktoken"));
  qwen3 = must(tokenizer::load_hugging_face(dir + "/qwen3.tokenizer.json"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  for (const split_rule rule : {split_rule::cl100k, split_rule::qwen2, split_rule::o200k}) {
    std::size_t at = 0;
    split_text(rule, text, [&](std::string_view piece) {
      if (piece.empty() || piece.data() != text.data() + at) std::abort();
      at += piece.size();
    });
    if (at != text.size()) std::abort();
  }

  for (const auto* t : {cl100k.get(), o200k.get()}) {
    const auto ids = t->encode(text);
    const auto back = t->decode(ids);
    if (!back || *back != text || t->count(text) != ids.size()) std::abort();
  }

  const std::string nfc = unicode::to_nfc(text);
  if (unicode::to_nfc(nfc) != nfc) std::abort();
  if (unicode::is_nfc_quick(text) && nfc != text) std::abort();
  const auto back = qwen3->decode(qwen3->encode(text));
  if (!back || *back != nfc) std::abort();
  return 0;
}
