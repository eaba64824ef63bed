// The CUDA kernels against their CPU twins on random inputs (relative error 1e-4; arg-max and
// its tie rule exactly). Without a CUDA device it says why and exits 77, which ctest reports as
// skipped. Built only when nvcc is present (gpu/CMakeLists.txt).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gpu/cpu_kernels.hpp"
#include "gpu/cuda_kernels.hpp"

using namespace tollgate::gpu;

namespace {

int failures = 0;

std::vector<float> random_values(std::mt19937& rng, std::size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu) {
  float diff = 0, scale = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    diff = std::max(diff, std::fabs(gpu[i] - cpu[i]));
    scale = std::max(scale, std::fabs(cpu[i]));
  }
  const float rel = scale > 0 ? diff / scale : diff;
  const bool ok = gpu.size() == cpu.size() && rel <= 1e-4f;
  std::printf("%s %s: relative error %.2e\n", ok ? "ok  " : "FAIL", what, rel);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("skipped: %s\n", why.c_str());
    return 77;
  }
  std::mt19937 rng(7);
  const int rows = 3, n = 384;
  const auto x = random_values(rng, rows * n), w = random_values(rng, n);
  std::vector<float> cpu(x.size());
  for (int r = 0; r < rows; ++r) rms_norm(&x[r * n], w.data(), n, 1e-5f, &cpu[r * n]);
  expect_close("rms_norm", cuda::rms_norm(x, w, rows, n, 1e-5f), cpu);

  const int heads = 6, head_dim = 64;
  std::vector<double> inv(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv[i] = 1.0 / std::pow(500000.0, 2.0 * i / head_dim);
  auto v = random_values(rng, heads * head_dim);
  auto rotated = v;
  rope(rotated.data(), heads, head_dim, 1234, inv.data());
  expect_close("rope", cuda::rope(v, heads, head_dim, 1234, inv), rotated);

  auto gate = random_values(rng, 1024, 4.0f);
  const auto up = random_values(rng, 1024);
  auto gated = gate;
  swiglu(gated.data(), up.data(), 1024);
  expect_close("swiglu", cuda::swiglu(gate, up), gated);

  // Attention over a paged cache: 300 positions in blocks of 16 of a 32-block pool, the blocks
  // in a scrambled order, with another layer's floats between them.
  const int length = 300, kv_heads = 2, block_size = 16, pool_blocks = 32;
  const std::size_t block_stride = 2 * static_cast<std::size_t>(block_size) * kv_heads * head_dim;
  std::vector<int> table;
  for (int b = 0; b < (length + block_size - 1) / block_size; ++b) {
    table.push_back((b * 7 + 3) % pool_blocks);
  }
  const auto q = random_values(rng, heads * head_dim);
  const auto keys = random_values(rng, pool_blocks * block_stride);
  const auto values = random_values(rng, pool_blocks * block_stride);
  std::vector<float> attended(heads * head_dim), scores(length);
  attend(q.data(), keys.data(), values.data(), table.data(), block_stride, block_size, length,
         heads, kv_heads, head_dim, attended.data(), scores.data());
  expect_close("attend (paged)",
               cuda::attend(q, keys, values, table, block_stride, block_size, length, heads,
                            kv_heads, head_dim),
               attended);

  const int m_rows = 1000, m_cols = 384;
  const auto m = random_values(rng, static_cast<std::size_t>(m_rows) * m_cols);
  const auto mx = random_values(rng, m_cols);
  std::vector<float> product(m_rows);
  for (int r = 0; r < m_rows; ++r)
    product[r] = dot(&m[static_cast<std::size_t>(r) * m_cols], mx.data(), m_cols);
  expect_close("matvec (cuBLAS)", cuda::matvec(m, mx, m_rows, m_cols), product);

  auto logits = random_values(rng, 128256);
  logits[777] = 5.0f;
  logits[90000] = 5.0f;  // a tie: the lower index wins, as on the CPU
  const int best = cuda::argmax(logits);
  const int twin = argmax(logits.data(), static_cast<int>(logits.size()));
  std::printf("%s argmax: %d (CPU twin %d, expected 777)\n",
              best == 777 && twin == 777 ? "ok  " : "FAIL", best, twin);
  if (best != 777 || twin != 777) ++failures;
  return failures == 0 ? 0 : 1;
}
