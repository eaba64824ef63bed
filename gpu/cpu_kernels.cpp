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

// A tile of a matrix product: the dot products of R weight rows with G inputs. Each pair has
// one 8-wide accumulator over the columns, summed the same way whatever R and G are, so a
// result does not depend on the tile it was computed in (nor on batching). R x G accumulators
// in registers, R + G loads for R x G multiply-adds per 8 columns.
__attribute__((target("avx2,fma"))) inline float sum8(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

template <int R, int G>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* const* w, const float* const* x,
                                                   int n, float* out, const float* ahead) {
  const float* wr[R];
  const float* xg[G];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) wr[r] = w[r];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) xg[g] = x[g];
  __m256 acc[R][G];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) acc[r][g] = _mm256_setzero_ps();
  }
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    // The next tile's rows, one cache line per iteration, while this tile computes.
    if (ahead != nullptr) {  // R rows of n floats: R * 8 floats per iteration
#pragma GCC unroll 8
      for (int r = 0; r < R; r += 2) {
        const float* line = ahead + static_cast<std::size_t>(R) * i + 16 * (r / 2);
        _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
      }
    }
    if constexpr (G == 1) {  // nothing to reuse: each row's load goes straight into its FMA
      const __m256 x0 = _mm256_loadu_ps(xg[0] + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(wr[r] + i), x0, acc[r][0]);
      }
    } else {
      __m256 a[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(wr[r] + i);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m256 xv = _mm256_loadu_ps(xg[g] + i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][g] = _mm256_fmadd_ps(a[r], xv, acc[r][g]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) {
      float sum = sum8(acc[r][g]);
      for (int j = i; j < n; ++j) sum += wr[r][j] * xg[g][j];
      out[r * G + g] = sum;
    }
  }
}

// Rows per tile past four inputs: 3 x 4 accumulators, 3 rows and 1 input in flight fill the
// 16 vector registers.
constexpr int tile_rows = 3;

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

template <int G>
void tile_of(const float* const* w, int rows, const float* const* x, int n, float* out,
             const float* ahead) {
  switch (rows) {
    case 1: tile_avx2<1, G>(w, x, n, out, ahead); break;
    case 2: tile_avx2<2, G>(w, x, n, out, ahead); break;
    default: tile_avx2<3, G>(w, x, n, out, ahead); break;
  }
}

// out[r * g + t] = w[r] . x[t] for r < rows (1..3), t < g (1..4).
// `ahead`: where the next tile's rows begin (prefetched meanwhile), or null.
void tile(const float* const* w, int rows, const float* const* x, int g, int n, float* out,
          const float* ahead) {
  if (!use_avx2) {
    for (int r = 0; r < rows; ++r) {
      for (int t = 0; t < g; ++t) out[r * g + t] = dot_scalar(w[r], x[t], n);
    }
    return;
  }
  switch (g) {
    case 1: tile_of<1>(w, rows, x, n, out, ahead); break;
    case 2: tile_of<2>(w, rows, x, n, out, ahead); break;
    case 3: tile_of<3>(w, rows, x, n, out, ahead); break;
    default: tile_of<4>(w, rows, x, n, out, ahead); break;
  }
}

}  // namespace

void matmul_rows(const float* w, const float* x, int tokens, int cols, int row_begin, int row_end,
                 const float* bias, float* y, int y_stride) {
  const float* rows[tile_rows];
  const float* inputs[4];
  float out[tile_rows * 4];
  // Rows outer, inputs inner: each weight row is read from memory once for every input. Up to
  // four inputs the product is bound by memory, which streams fastest one row at a time; past
  // that by the multiply-adds, which tiles of three rows keep busiest.
  const int step = tokens <= 4 ? 1 : tile_rows;
  for (int r = row_begin; r < row_end; r += step) {
    const int nr = std::min(step, row_end - r);
    for (int i = 0; i < nr; ++i) rows[i] = w + static_cast<std::size_t>(r + i) * cols;
    for (int t = 0; t < tokens; t += 4) {
      const int g = std::min(4, tokens - t);
      for (int i = 0; i < g; ++i) inputs[i] = x + static_cast<std::size_t>(t + i) * cols;
      // The first group of inputs fetches the next tile's rows, spread over its loop.
      const bool prefetch = t == 0 && tokens > 4 && r + step < row_end;
      tile(rows, nr, inputs, g, cols, out,
           prefetch ? w + static_cast<std::size_t>(r + step) * cols : nullptr);
      for (int i = 0; i < nr; ++i) {
        const float b = bias != nullptr ? bias[r + i] : 0.0f;
        for (int j = 0; j < g; ++j) {
          y[static_cast<std::size_t>(t + j) * y_stride + r + i] = out[i * g + j] + b;
        }
      }
    }
  }
}

namespace {

__attribute__((target("avx2,fma"))) float max_avx2(const float* v, int n) {
  __m256 best = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) best = _mm256_max_ps(best, _mm256_loadu_ps(v + i));
  float lanes[8];
  _mm256_storeu_ps(lanes, best);
  float m = *std::max_element(lanes, lanes + 8);
  for (; i < n; ++i) m = std::max(m, v[i]);
  return m;
}

}  // namespace

int argmax(const float* v, int n) {
  if (!use_avx2) return static_cast<int>(std::max_element(v, v + n) - v);
  // The largest value (a vectorized pass), then the first place it is at.
  const float m = max_avx2(v, n);
  if (std::isnan(m)) return static_cast<int>(std::max_element(v, v + n) - v);
  return static_cast<int>(std::find(v, v + n, m) - v);
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
  for (unsigned i = 1; i < std::max(1u, threads); ++i) {
    workers_.emplace_back([this, i] { work(i); });
  }
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
