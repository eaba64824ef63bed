// The CPU forward pass: see cpu_forward.hpp.
#include "gpu/cpu_forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>

namespace tollgate::gpu {
namespace {

int blocks_in_budget(const model_config& c, const engine_limits& l) {
  if (l.kv_blocks > 0) return l.kv_blocks;
  const std::size_t per_block = 2 * sizeof(float) * static_cast<std::size_t>(c.num_layers) *
                                static_cast<std::size_t>(l.kv_block_size) *
                                static_cast<std::size_t>(c.num_kv_heads * c.head_dim);
  const std::size_t budget = static_cast<std::size_t>(l.kv_cache_mb) << 20;
  return static_cast<int>(std::max<std::size_t>(1, budget / per_block));
}

std::size_t floats(int a, int b) {
  return static_cast<std::size_t>(a) * static_cast<std::size_t>(b);
}

}  // namespace

cpu_forward::cpu_forward(const model_weights& weights, engine_limits limits, unsigned threads)
    : w_(weights),
      limits_(limits),
      inv_freq_(rope_inverse_frequencies(weights.config)),
      pool_(std::make_unique<row_pool>(
          threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency()))),
      cache_(weights.config.num_layers, weights.config.num_kv_heads * weights.config.head_dim,
             limits.kv_block_size, blocks_in_budget(weights.config, limits)) {
  const auto& c = w_.config;
  const int t = limits_.max_batch_tokens;
  if (t < 1 || limits_.max_logit_rows < 1)
    throw std::invalid_argument("engine limits must be positive");
  x_.resize(floats(t, c.hidden_size));
  normed_.resize(floats(t, c.hidden_size));
  q_.resize(floats(t, c.num_heads * c.head_dim));
  k_.resize(floats(t, c.num_kv_heads * c.head_dim));
  v_.resize(floats(t, c.num_kv_heads * c.head_dim));
  attn_.resize(floats(t, c.num_heads * c.head_dim));
  proj_.resize(floats(t, c.hidden_size));
  gate_.resize(floats(t, c.intermediate_size));
  up_.resize(floats(t, c.intermediate_size));
  // One score row per thread: attention over the batch's positions runs on all threads.
  scores_.resize(
      floats(static_cast<int>(pool_->threads()), std::max(1, c.max_position_embeddings)));
  last_.resize(floats(limits_.max_logit_rows, c.hidden_size));
  logits_.resize(floats(limits_.max_logit_rows, c.vocab_size));
}

cpu_forward::~cpu_forward() = default;

void cpu_forward::matmul(const std::vector<float>& m, const float* x, int tokens, int rows,
                         int cols, float* y, const std::vector<float>* bias) const {
  const float* b = bias != nullptr && !bias->empty() ? bias->data() : nullptr;
  const auto rows_of = [&](int begin, int end) {
    matmul_rows(m.data(), x, tokens, cols, begin, end, b, y, rows);
  };
  // Small products are not worth waking the other threads for.
  if (static_cast<std::int64_t>(rows) * cols * tokens < (1 << 15)) {
    rows_of(0, rows);
  } else {
    pool_->run(rows, rows_of);
  }
}

std::span<const float> cpu_forward::forward(std::span<const forward_item> items) {
  const auto& c = w_.config;
  const int n = static_cast<int>(items.size());
  if (n == 0) return {};
  if (n > limits_.max_batch_tokens) throw std::length_error("batch larger than max_batch_tokens");
  const int h = c.hidden_size;
  const int hd = c.head_dim;
  const int nq = c.num_heads;
  const int nkv = c.num_kv_heads;
  const int kv_dim = nkv * hd;
  const int ctx = std::max(1, c.max_position_embeddings);
  int logit_rows = 0;
  for (const auto& it : items) {
    if (it.token < 0 || it.token >= c.vocab_size)
      throw std::out_of_range("token id outside the vocabulary");
    if (it.position < 0 || it.position >= ctx) throw std::length_error("position past the context");
    if (it.seq == nullptr ||
        cache_.blocks_for(it.position + 1) > static_cast<int>(it.seq->table.size()))
      throw std::logic_error("the sequence's blocks do not hold the position");
    logit_rows += it.logits ? 1 : 0;
  }
  if (logit_rows > limits_.max_logit_rows) throw std::length_error("too many logit rows");

  for (int i = 0; i < n; ++i) {
    std::memcpy(&x_[floats(i, h)], &w_.embed[floats(items[i].token, h)], sizeof(float) * h);
  }
  const int block_size = cache_.block_size();
  for (int li = 0; li < c.num_layers; ++li) {
    const layer_weights& l = w_.layers[static_cast<std::size_t>(li)];
    for (int i = 0; i < n; ++i) {
      rms_norm(&x_[floats(i, h)], l.input_norm.data(), h, c.rms_norm_eps, &normed_[floats(i, h)]);
    }
    matmul(l.q, normed_.data(), n, nq * hd, h, q_.data(), &l.q_bias);
    matmul(l.k, normed_.data(), n, kv_dim, h, k_.data(), &l.k_bias);
    matmul(l.v, normed_.data(), n, kv_dim, h, v_.data(), &l.v_bias);
    // Each position's key and value go into its sequence's block before any attends, so a
    // prompt chunk's later positions see its earlier ones.
    for (int i = 0; i < n; ++i) {
      float* q = &q_[floats(i, nq * hd)];
      float* k = &k_[floats(i, kv_dim)];
      if (c.qk_norm) {
        for (int hh = 0; hh < nq; ++hh)
          rms_norm(q + hh * hd, l.q_norm.data(), hd, c.rms_norm_eps, q + hh * hd);
        for (int hh = 0; hh < nkv; ++hh)
          rms_norm(k + hh * hd, l.k_norm.data(), hd, c.rms_norm_eps, k + hh * hd);
      }
      rope(q, nq, hd, items[i].position, inv_freq_.data());
      rope(k, nkv, hd, items[i].position, inv_freq_.data());
      const int block =
          items[i].seq->table[static_cast<std::size_t>(items[i].position / block_size)];
      const std::size_t slot = floats(items[i].position % block_size, kv_dim);
      std::memcpy(cache_.keys(block, li) + slot, k, sizeof(float) * kv_dim);
      std::memcpy(cache_.values(block, li) + slot, &v_[floats(i, kv_dim)], sizeof(float) * kv_dim);
    }
    const std::function<void(int, int, unsigned)> attend_items = [&](int begin, int end,
                                                                     unsigned thread) {
      for (int i = begin; i < end; ++i) {
        attend(&q_[floats(i, nq * hd)], cache_.keys_base() + cache_.layer_stride() * li,
               cache_.values_base() + cache_.layer_stride() * li, items[i].seq->table.data(),
               cache_.block_stride(), block_size, items[i].position + 1, nq, nkv, hd,
               &attn_[floats(i, nq * hd)], &scores_[floats(static_cast<int>(thread), ctx)]);
      }
    };
    pool_->run(n, attend_items);
    matmul(l.o, attn_.data(), n, h, nq * hd, proj_.data());
    for (std::size_t i = 0; i < floats(n, h); ++i) x_[i] += proj_[i];

    for (int i = 0; i < n; ++i) {
      rms_norm(&x_[floats(i, h)], l.post_norm.data(), h, c.rms_norm_eps, &normed_[floats(i, h)]);
    }
    matmul(l.gate, normed_.data(), n, c.intermediate_size, h, gate_.data());
    matmul(l.up, normed_.data(), n, c.intermediate_size, h, up_.data());
    swiglu(gate_.data(), up_.data(), n * c.intermediate_size);
    matmul(l.down, gate_.data(), n, h, c.intermediate_size, proj_.data());
    for (std::size_t i = 0; i < floats(n, h); ++i) x_[i] += proj_[i];
  }
  // Only the positions that asked go through the (large) output projection.
  int row = 0;
  for (int i = 0; i < n; ++i) {
    if (!items[i].logits) continue;
    rms_norm(&x_[floats(i, h)], w_.final_norm.data(), h, c.rms_norm_eps, &last_[floats(row, h)]);
    ++row;
  }
  matmul(w_.output_matrix(), last_.data(), row, c.vocab_size, h, logits_.data());
  return {logits_.data(), floats(row, c.vocab_size)};
}

std::vector<float> cpu_forward::feed(sequence_blocks& seq, const std::vector<int>& tokens,
                                     std::vector<std::vector<float>>* all_logits) {
  const int vocab = w_.config.vocab_size;
  const int chunk = std::min(limits_.max_batch_tokens, limits_.max_logit_rows);
  std::vector<float> last;
  std::vector<forward_item> items;
  for (std::size_t at = 0; at < tokens.size();) {
    const int n = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(chunk), tokens.size() - at));
    if (!cache_.ensure(seq, seq.length + n)) throw std::length_error("the key/value cache is full");
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

std::vector<int> cpu_forward::generate_greedy(const std::vector<int>& prompt, int max_new) {
  sequence_blocks seq;
  std::vector<int> out;
  try {
    std::vector<float> logits = feed(seq, prompt);
    for (int i = 0; i < max_new; ++i) {
      const int next =
          argmax(logits.data(), static_cast<int>(logits.size()));
      out.push_back(next);
      if (std::find(w_.config.eos_token_ids.begin(), w_.config.eos_token_ids.end(), next) !=
          w_.config.eos_token_ids.end()) {
        break;
      }
      if (i + 1 < max_new) logits = feed(seq, {next});
    }
  } catch (...) {
    cache_.release(seq);
    throw;
  }
  cache_.release(seq);
  return out;
}

}  // namespace tollgate::gpu
