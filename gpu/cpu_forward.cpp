// The CPU forward pass: see cpu_forward.hpp.
#include "gpu/cpu_forward.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>

namespace tollgate::gpu {
namespace {

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
             limits.kv_block_size, kv_blocks_for(weights.config, limits)) {
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
  const int h = c.hidden_size;
  const int hd = c.head_dim;
  const int nq = c.num_heads;
  const int nkv = c.num_kv_heads;
  const int kv_dim = nkv * hd;
  const int ctx = std::max(1, c.max_position_embeddings);
  check_items(items);

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
  if (row == 0) return {};
  matmul(w_.output_matrix(), last_.data(), row, c.vocab_size, h, logits_.data());
  return {logits_.data(), floats(row, c.vocab_size)};
}

std::size_t cpu_forward::weight_bytes_per_token() const {
  std::size_t floats = w_.final_norm.size() + w_.output_matrix().size() +
                       static_cast<std::size_t>(w_.config.hidden_size);
  for (const auto& l : w_.layers) {
    for (const auto* v : {&l.input_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias,
                          &l.q_norm, &l.k_norm, &l.post_norm, &l.gate, &l.up, &l.down}) {
      floats += v->size();
    }
  }
  return floats * sizeof(float);
}

double cpu_forward::measure_copy_bandwidth() const {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t bytes = std::size_t{512} << 20;
  std::vector<char> from(bytes, 1), to(bytes, 0);
  const std::size_t share = bytes / threads;
  std::vector<double> rates;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> copiers;
    for (unsigned t = 0; t < threads; ++t) {
      copiers.emplace_back([&, t] { std::memcpy(&to[t * share], &from[t * share], share); });
    }
    for (auto& c : copiers) c.join();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    rates.push_back(2.0 * static_cast<double>(share * threads) / took.count());
    from[static_cast<std::size_t>(i)] = to[bytes - 1 - static_cast<std::size_t>(i)];
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace tollgate::gpu
