// The engine's forward pass on a CUDA device (built with nvcc when /usr/local/cuda exists; see
// gpu/CMakeLists.txt). The same computation as gpu/cpu_forward, chained on device memory: the
// weights uploaded once (the matrices in BF16, F16 or F32, norms and biases in F32), the paged
// key/value cache on the device (the block bookkeeping stays on the host, in gpu/kv_cache),
// cuBLAS for every matrix product (GemmEx, BF16, F16 or F32 inputs, F32 accumulation) and the
// kernels of gpu/cuda_kernels.cu for the rest. One forward() runs the whole batch and copies
// back only the logits that were asked for.
#pragma once
#include <memory>
#include <string>

#include "gpu/forward_engine.hpp"

namespace tollgate::gpu {

// How the matrices are stored on the device (and their products' inputs converted).
enum class cuda_weights { bf16, f16, f32 };

// Uploads `weights` to the current CUDA device. Throws std::runtime_error when the device
// cannot hold them or the model does not fit the kernels (a context whose attention scores
// exceed the shared memory of a block).
std::unique_ptr<forward_engine> make_cuda_forward(const model_weights& weights,
                                                  const engine_limits& limits,
                                                  cuda_weights matrices);

}  // namespace tollgate::gpu
