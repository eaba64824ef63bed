// CPU kernels: see cpu_kernels.hpp.
#include "gpu/cpu_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace tollgate::gpu {
namespace {

float dot_scalar(const float* a, const float* b, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps();
  __m256 s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps();
  __m256 s3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  float sum = _mm_cvtss_f32(lo);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Dot products of `a` with G vectors: two 8-wide accumulators per vector, the same steps for
// each vector whatever G is (so batching does not change a result).
template <int G>
__attribute__((target("avx2,fma"))) void dot_group_avx2(const float* a, const float* const* b,
                                                        int n, float* out) {
  __m256 s0[G];
  __m256 s1[G];
  for (int g = 0; g < G; ++g) s0[g] = s1[g] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a0 = _mm256_loadu_ps(a + i);
    const __m256 a1 = _mm256_loadu_ps(a + i + 8);
    for (int g = 0; g < G; ++g) {
      s0[g] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b[g] + i), s0[g]);
      s1[g] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b[g] + i + 8), s1[g]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a0 = _mm256_loadu_ps(a + i);
    for (int g = 0; g < G; ++g) s0[g] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b[g] + i), s0[g]);
  }
  for (int g = 0; g < G; ++g) {
    const __m256 s = _mm256_add_ps(s0[g], s1[g]);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    float sum = _mm_cvtss_f32(lo);
    for (int j = i; j < n; ++j) sum += a[j] * b[g][j];
    out[g] = sum;
  }
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const bool use_avx2 = cpu_has_avx2_fma();

}  // namespace

float dot(const float* a, const float* b, int n) {
  return use_avx2 ? dot_avx2(a, b, n) : dot_scalar(a, b, n);
}

bool simd_enabled() {
  return use_avx2;
}

namespace {

void dot_group(const float* a, const float* const* b, int g, int n, float* out) {
  if (!use_avx2) {
    for (int i = 0; i < g; ++i) out[i] = dot_scalar(a, b[i], n);
    return;
  }
  switch (g) {
    case 1: dot_group_avx2<1>(a, b, n, out); break;
    case 2: dot_group_avx2<2>(a, b, n, out); break;
    case 3: dot_group_avx2<3>(a, b, n, out); break;
    default: dot_group_avx2<4>(a, b, n, out); break;
  }
}

}  // namespace

void matmul_rows(const float* w, const float* x, int tokens, int cols, int row_begin, int row_end,
                 const float* bias, float* y, int y_stride) {
  const float* inputs[4];
  float out[4];
  for (int r = row_begin; r < row_end; ++r) {
    const float* row = w + static_cast<std::size_t>(r) * static_cast<std::size_t>(cols);
    const float b = bias != nullptr ? bias[r] : 0.0f;
    for (int t = 0; t < tokens; t += 4) {
      const int g = std::min(4, tokens - t);
      for (int i = 0; i < g; ++i) inputs[i] = x + static_cast<std::size_t>(t + i) * cols;
      dot_group(row, inputs, g, cols, out);
      for (int i = 0; i < g; ++i) y[static_cast<std::size_t>(t + i) * y_stride + r] = out[i] + b;
    }
  }
}

void rms_norm(const float* x, const float* weight, int n, float eps, float* out) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

void rope(float* v, int heads, int head_dim, int position, const double* inv_freq) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = position * inv_freq[i];
    const float c = static_cast<float>(std::cos(angle));
    const float s = static_cast<float>(std::sin(angle));
    for (int h = 0; h < heads; ++h) {
      float* x = v + static_cast<std::size_t>(h) * head_dim;
      const float a = x[i];
      const float b = x[i + half];
      x[i] = a * c - b * s;
      x[i + half] = b * c + a * s;
    }
  }
}

void swiglu(float* gate, const float* up, int n) {
  for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void attend(const float* q, const float* keys, const float* values, const int* block_table,
            std::size_t block_stride, int block_size, int length, int q_heads, int kv_heads,
            int head_dim, float* out, float* scores) {
  const int group = q_heads / kv_heads;
  const std::size_t kv_dim = static_cast<std::size_t>(kv_heads) * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const auto at = [&](const float* base, int t, int kvh) {
    return base + static_cast<std::size_t>(block_table[t / block_size]) * block_stride +
           static_cast<std::size_t>(t % block_size) * kv_dim +
           static_cast<std::size_t>(kvh) * head_dim;
  };
  for (int h = 0; h < q_heads; ++h) {
    const int kvh = h / group;
    const float* qh = q + static_cast<std::size_t>(h) * head_dim;
    float best = -INFINITY;
    for (int t = 0; t < length; ++t) {
      scores[t] = dot(qh, at(keys, t, kvh), head_dim) * scale;
      best = std::max(best, scores[t]);
    }
    float total = 0;
    for (int t = 0; t < length; ++t) {
      scores[t] = std::exp(scores[t] - best);
      total += scores[t];
    }
    float* o = out + static_cast<std::size_t>(h) * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    for (int t = 0; t < length; ++t) {
      const float p = scores[t] / total;
      const float* vt = at(values, t, kvh);
      for (int d = 0; d < head_dim; ++d) o[d] += p * vt[d];
    }
  }
}

row_pool::row_pool(unsigned threads) {
  for (unsigned i = 1; i < std::max(1u, threads); ++i) workers_.emplace_back([this, i] { work(i); });
}

row_pool::~row_pool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  start_.notify_all();
  for (auto& t : workers_) t.join();
}

void row_pool::take_chunks(unsigned index) {
  for (;;) {
    const int begin = next_.fetch_add(chunk_);
    if (begin >= rows_) return;
    (*fn_)(begin, std::min(rows_, begin + chunk_), index);
  }
}

void row_pool::work(unsigned index) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    take_chunks(index);
    {
      std::lock_guard lock(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void row_pool::run(int rows, const std::function<void(int, int)>& fn) {
  const std::function<void(int, int, unsigned)> each = [&fn](int begin, int end, unsigned) {
    fn(begin, end);
  };
  run(rows, each);
}

void row_pool::run(int rows, const std::function<void(int, int, unsigned)>& fn) {
  if (workers_.empty() || rows < 2) {
    fn(0, rows, 0);
    return;
  }
  {
    std::lock_guard lock(mu_);
    fn_ = &fn;
    rows_ = rows;
    chunk_ = std::max(1, rows / static_cast<int>(4 * threads()));
    next_.store(0);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_.notify_all();
  take_chunks(0);
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return busy_ == 0; });
}

}  // namespace tollgate::gpu
