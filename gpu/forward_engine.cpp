// The parts of a forward pass every device shares: see forward_engine.hpp.
#include "gpu/forward_engine.hpp"

#include <algorithm>
#include <stdexcept>

#include "gpu/cpu_kernels.hpp"

namespace tollgate::gpu {

int kv_blocks_for(const model_config& c, const engine_limits& l) {
  if (l.kv_blocks > 0) return l.kv_blocks;
  const std::size_t per_block = 2 * sizeof(float) * static_cast<std::size_t>(c.num_layers) *
                                static_cast<std::size_t>(l.kv_block_size) *
                                static_cast<std::size_t>(c.num_kv_heads * c.head_dim);
  const std::size_t budget = static_cast<std::size_t>(l.kv_cache_mb) << 20;
  return static_cast<int>(std::max<std::size_t>(1, budget / per_block));
}

int forward_engine::check_items(std::span<const forward_item> items) {
  const auto& c = config();
  if (static_cast<int>(items.size()) > limits().max_batch_tokens) {
    throw std::length_error("batch larger than max_batch_tokens");
  }
  const int context = std::max(1, c.max_position_embeddings);
  int logit_rows = 0;
  for (const auto& it : items) {
    if (it.token < 0 || it.token >= c.vocab_size) {
      throw std::out_of_range("token id outside the vocabulary");
    }
    if (it.position < 0 || it.position >= context) {
      throw std::length_error("position past the context");
    }
    if (it.seq == nullptr ||
        cache().blocks_for(it.position + 1) > static_cast<int>(it.seq->table.size())) {
      throw std::logic_error("the sequence's blocks do not hold the position");
    }
    logit_rows += it.logits ? 1 : 0;
  }
  if (logit_rows > limits().max_logit_rows) throw std::length_error("too many logit rows");
  return logit_rows;
}

std::vector<float> forward_engine::feed(sequence_blocks& seq, const std::vector<int>& tokens,
                                        std::vector<std::vector<float>>* all_logits) {
  const int vocab = config().vocab_size;
  const int chunk = std::min(limits().max_batch_tokens, limits().max_logit_rows);
  std::vector<float> last;
  std::vector<forward_item> items;
  for (std::size_t at = 0; at < tokens.size();) {
    const int n = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(chunk), tokens.size() - at));
    if (!cache().ensure(seq, seq.length + n)) {
      throw std::length_error("the key/value cache is full");
    }
    items.clear();
    for (int i = 0; i < n; ++i) {
      const bool is_last = at + static_cast<std::size_t>(i) + 1 == tokens.size();
      items.push_back({&seq, tokens[at + static_cast<std::size_t>(i)], seq.length + i,
                       all_logits != nullptr || is_last});
    }
    const auto logits = forward(items);
    seq.length += n;
    at += static_cast<std::size_t>(n);
    if (all_logits != nullptr) {
      for (int i = 0; i < n; ++i) {
        all_logits->emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab,
                                 logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * vocab);
      }
    }
    if (at == tokens.size()) last.assign(logits.end() - vocab, logits.end());
  }
  return last;
}

std::vector<int> forward_engine::generate_greedy(const std::vector<int>& prompt, int max_new,
                                                 int* cached_tokens) {
  const auto& eos = config().eos_token_ids;
  sequence_blocks seq;
  std::vector<int> out;
  std::vector<int> written = prompt;  // the token at each position, for publishing
  try {
    const int cached = cache().match_prefix(seq, prompt, static_cast<int>(prompt.size()) - 1);
    if (cached_tokens != nullptr) *cached_tokens = cached;
    std::vector<float> logits = feed(seq, std::vector<int>(prompt.begin() + cached, prompt.end()));
    cache().publish(seq, written);
    for (int i = 0; i < max_new; ++i) {
      const int next = argmax(logits.data(), static_cast<int>(logits.size()));
      out.push_back(next);
      if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
      if (i + 1 < max_new) {
        written.push_back(next);
        logits = feed(seq, {next});
        cache().publish(seq, written);
      }
    }
  } catch (...) {
    cache().release(seq);
    throw;
  }
  cache().release(seq);
  return out;
}

}  // namespace tollgate::gpu
