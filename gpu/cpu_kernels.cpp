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

void attend(const float* q, const float* keys, const float* values, int length, int q_heads,
            int kv_heads, int head_dim, float* out, float* scores) {
  const int group = q_heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int h = 0; h < q_heads; ++h) {
    const int kvh = h / group;
    const float* qh = q + static_cast<std::size_t>(h) * head_dim;
    float best = -INFINITY;
    for (int t = 0; t < length; ++t) {
      const float* kt = keys + (static_cast<std::size_t>(t) * kv_heads + kvh) * head_dim;
      scores[t] = dot(qh, kt, head_dim) * scale;
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
      const float* vt = values + (static_cast<std::size_t>(t) * kv_heads + kvh) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] += p * vt[d];
    }
  }
}

row_pool::row_pool(unsigned threads) {
  for (unsigned i = 1; i < std::max(1u, threads); ++i) workers_.emplace_back([this] { work(); });
}

row_pool::~row_pool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  start_.notify_all();
  for (auto& t : workers_) t.join();
}

void row_pool::take_chunks() {
  for (;;) {
    const int begin = next_.fetch_add(chunk_);
    if (begin >= rows_) return;
    (*fn_)(begin, std::min(rows_, begin + chunk_));
  }
}

void row_pool::work() {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    take_chunks();
    {
      std::lock_guard lock(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void row_pool::run(int rows, const std::function<void(int, int)>& fn) {
  if (workers_.empty() || rows < 2) {
    fn(0, rows);
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
  take_chunks();
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return busy_ == 0; });
}

}  // namespace tollgate::gpu
