// The CPU forward pass: see cpu_forward.hpp.
#include "gpu/cpu_forward.hpp"

#include <thread>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tollgate::gpu {
cpu_forward::cpu_forward(const model_weights& weights, unsigned threads)
    : w_(weights),
      inv_freq_(rope_inverse_frequencies(weights.config)),
      pool_(std::make_unique<row_pool>(
          threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency()))) {}

cpu_forward::~cpu_forward() = default;

void cpu_forward::matvec(const std::vector<float>& m, const float* x, int rows, int cols, float* y,
                         const std::vector<float>* bias) const {
  const auto rows_of = [&](int begin, int end) {
    for (int r = begin; r < end; ++r) {
      const float* row = m.data() + static_cast<std::size_t>(r) * static_cast<std::size_t>(cols);
      y[r] = dot(row, x, cols) +
             (bias != nullptr && !bias->empty() ? (*bias)[static_cast<std::size_t>(r)] : 0.0f);
    }
  };
  // Small products are not worth waking the other threads for.
  if (static_cast<std::int64_t>(rows) * cols < (1 << 15)) {
    rows_of(0, rows);
  } else {
    pool_->run(rows, rows_of);
  }
}

sequence_cache cpu_forward::new_sequence(int capacity) const {
  const auto& c = w_.config;
  sequence_cache s;
  s.capacity = capacity;
  const std::size_t per_layer =
      static_cast<std::size_t>(capacity) * static_cast<std::size_t>(c.num_kv_heads * c.head_dim);
  s.keys.assign(static_cast<std::size_t>(c.num_layers), std::vector<float>(per_layer));
  s.values.assign(static_cast<std::size_t>(c.num_layers), std::vector<float>(per_layer));
  return s;
}

std::vector<float> cpu_forward::feed(sequence_cache& seq, const std::vector<int>& tokens,
                                     std::vector<std::vector<float>>* all_logits) const {
  std::vector<float> logits;
  for (int t : tokens) {
    logits = step(seq, t);
    if (all_logits != nullptr) all_logits->push_back(logits);
  }
  return logits;
}

std::vector<float> cpu_forward::step(sequence_cache& seq, int token) const {
  const auto& c = w_.config;
  if (token < 0 || token >= c.vocab_size)
    throw std::out_of_range("token id outside the vocabulary");
  if (seq.length >= seq.capacity) throw std::length_error("the sequence is full");
  const int h = c.hidden_size;
  const int hd = c.head_dim;
  const int nq = c.num_heads;
  const int nkv = c.num_kv_heads;
  const int pos = seq.length;

  std::vector<float> x(w_.embed.begin() + static_cast<std::ptrdiff_t>(token) * h,
                       w_.embed.begin() + static_cast<std::ptrdiff_t>(token + 1) * h);
  std::vector<float> normed(static_cast<std::size_t>(h));
  std::vector<float> q(static_cast<std::size_t>(nq * hd));
  std::vector<float> attn(static_cast<std::size_t>(nq * hd));
  std::vector<float> proj(static_cast<std::size_t>(h));
  std::vector<float> gate(static_cast<std::size_t>(c.intermediate_size));
  std::vector<float> up(static_cast<std::size_t>(c.intermediate_size));
  std::vector<float> scores(static_cast<std::size_t>(pos + 1));

  for (int li = 0; li < c.num_layers; ++li) {
    const layer_weights& l = w_.layers[static_cast<std::size_t>(li)];
    float* kcache = seq.keys[static_cast<std::size_t>(li)].data();
    float* vcache = seq.values[static_cast<std::size_t>(li)].data();
    float* k_here = kcache + static_cast<std::size_t>(pos) * nkv * hd;
    float* v_here = vcache + static_cast<std::size_t>(pos) * nkv * hd;

    rms_norm(x.data(), l.input_norm.data(), h, c.rms_norm_eps, normed.data());
    matvec(l.q, normed.data(), nq * hd, h, q.data(), &l.q_bias);
    matvec(l.k, normed.data(), nkv * hd, h, k_here, &l.k_bias);
    matvec(l.v, normed.data(), nkv * hd, h, v_here, &l.v_bias);
    if (c.qk_norm) {
      for (int hh = 0; hh < nq; ++hh)
        rms_norm(&q[static_cast<std::size_t>(hh * hd)], l.q_norm.data(), hd, c.rms_norm_eps,
                 &q[static_cast<std::size_t>(hh * hd)]);
      for (int hh = 0; hh < nkv; ++hh)
        rms_norm(k_here + hh * hd, l.k_norm.data(), hd, c.rms_norm_eps, k_here + hh * hd);
    }
    rope(q.data(), nq, hd, pos, inv_freq_.data());
    rope(k_here, nkv, hd, pos, inv_freq_.data());

    attend(q.data(), kcache, vcache, pos + 1, nq, nkv, hd, attn.data(), scores.data());
    matvec(l.o, attn.data(), h, nq * hd, proj.data());
    for (int i = 0; i < h; ++i) x[static_cast<std::size_t>(i)] += proj[static_cast<std::size_t>(i)];

    rms_norm(x.data(), l.post_norm.data(), h, c.rms_norm_eps, normed.data());
    matvec(l.gate, normed.data(), c.intermediate_size, h, gate.data());
    matvec(l.up, normed.data(), c.intermediate_size, h, up.data());
    swiglu(gate.data(), up.data(), c.intermediate_size);
    matvec(l.down, gate.data(), h, c.intermediate_size, proj.data());
    for (int i = 0; i < h; ++i) x[static_cast<std::size_t>(i)] += proj[static_cast<std::size_t>(i)];
  }
  seq.length = pos + 1;
  rms_norm(x.data(), w_.final_norm.data(), h, c.rms_norm_eps, normed.data());
  std::vector<float> logits(static_cast<std::size_t>(c.vocab_size));
  matvec(w_.output_matrix(), normed.data(), c.vocab_size, h, logits.data());
  return logits;
}

std::vector<int> cpu_forward::generate_greedy(const std::vector<int>& prompt, int max_new) const {
  sequence_cache seq = new_sequence(static_cast<int>(prompt.size()) + max_new);
  std::vector<float> logits = feed(seq, prompt);
  std::vector<int> out;
  for (int i = 0; i < max_new; ++i) {
    const int next =
        static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    if (std::find(w_.config.eos_token_ids.begin(), w_.config.eos_token_ids.end(), next) !=
        w_.config.eos_token_ids.end()) {
      break;
    }
    if (i + 1 < max_new) logits = step(seq, next);
  }
  return out;
}

}  // namespace tollgate::gpu
