// The CUDA kernels against their CPU twins on random inputs (relative error 1e-4; arg-max and
// its tie rule exactly), then the CUDA forward pass against the CPU's on a small random model:
// every position's logits of prompts read in chunks over the paged cache (F32 matrices: 1e-4;
// BF16 and F16 matrices: 5e-2) and greedy decoding (F32: the same tokens). Without a CUDA
// device it says why and exits 77, which ctest reports as skipped. Built only when nvcc is
// present (gpu/CMakeLists.txt).
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/cpu_forward.hpp"
#include "gpu/cpu_kernels.hpp"
#include "gpu/cuda_forward.hpp"
#include "gpu/cuda_kernels.hpp"
#include "tests/unit/gpu/random_model.hpp"

using namespace tollgate::gpu;

namespace {

int failures = 0;

std::vector<float> random_values(std::mt19937& rng, std::size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu,
                  float tolerance = 1e-4f) {
  float diff = 0, scale = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    diff = std::max(diff, std::fabs(gpu[i] - cpu[i]));
    scale = std::max(scale, std::fabs(cpu[i]));
  }
  const float rel = scale > 0 ? diff / scale : diff;
  const bool ok = gpu.size() == cpu.size() && rel <= tolerance;
  std::printf("%s %s: relative error %.2e\n", ok ? "ok  " : "FAIL", what, rel);
  if (!ok) ++failures;
}

// The CUDA forward pass against the CPU's on the same random model and batches.
void check_forward(bool qwen_style, cuda_weights matrices) {
  const model_weights w = tollgate::test::random_model(qwen_style);
  engine_limits limits;
  limits.max_batch_tokens = 16;  // prompts go in chunks of 16 positions
  limits.max_logit_rows = 16;
  limits.kv_block_size = 4;      // a prompt spans many blocks
  limits.kv_blocks = 64;
  cpu_forward cpu(w, limits, 1);
  const auto gpu = make_cuda_forward(w, limits, matrices);
  const bool f32 = matrices == cuda_weights::f32;
  const std::string what = std::string(qwen_style ? "Qwen3-style" : "Llama-style") +
                           " forward pass, " +
                           (f32 ? "F32" : matrices == cuda_weights::f16 ? "F16" : "BF16") +
                           " matrices";
  std::vector<int> prompt;
  for (int i = 0; i < 37; ++i) prompt.push_back((i * 17 + 5) % w.config.vocab_size);
  sequence_blocks on_cpu, on_gpu;
  std::vector<std::vector<float>> cpu_rows, gpu_rows;
  cpu.feed(on_cpu, prompt, &cpu_rows);
  gpu->feed(on_gpu, prompt, &gpu_rows);
  std::vector<float> cpu_all, gpu_all;
  for (const auto& r : cpu_rows) cpu_all.insert(cpu_all.end(), r.begin(), r.end());
  for (const auto& r : gpu_rows) gpu_all.insert(gpu_all.end(), r.begin(), r.end());
  expect_close(what.c_str(), gpu_all, cpu_all, f32 ? 1e-4f : 5e-2f);
  if (f32) {
    const auto a = cpu.generate_greedy(prompt, 12);
    const auto b = gpu->generate_greedy(prompt, 12);
    std::printf("%s %s: greedy decoding of 12 tokens %s\n", a == b ? "ok  " : "FAIL",
                what.c_str(), a == b ? "identical" : "differs");
    if (a != b) ++failures;
  }
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

  for (const bool qwen_style : {false, true}) {
    for (const auto matrices : {cuda_weights::f32, cuda_weights::bf16, cuda_weights::f16}) {
      try {
        check_forward(qwen_style, matrices);
      } catch (const std::exception& e) {
        std::printf("FAIL forward pass: %s\n", e.what());
        ++failures;
      }
    }
  }
  return failures == 0 ? 0 : 1;
}
