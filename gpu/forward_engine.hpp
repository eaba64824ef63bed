// What the scheduler and the tools need of a forward pass, whatever runs it: the CPU
// (gpu/cpu_forward) or a CUDA device (gpu/cuda_forward). One call runs a batch of positions of
// any sequences, writing their keys and values into the paged cache (gpu/kv_cache) and
// returning the logits of the positions that asked.
#pragma once
#include <span>
#include <vector>

#include "gpu/kv_cache.hpp"
#include "gpu/model.hpp"

namespace tollgate::gpu {

struct engine_limits {
  int max_batch_tokens = 256;  // positions one forward() may run
  int max_logit_rows = 32;     // positions of one forward() that may ask for logits
  int kv_block_size = 16;      // positions per cache block
  int kv_blocks = 0;           // cache blocks (0: as many as kv_cache_mb holds)
  int kv_cache_mb = 256;       // the cache's memory budget, keys and values together
};

// One position to run: `token` at `position` of `seq`, whose blocks must already hold it (the
// scheduler's kv_cache::ensure). A sequence's positions come in order within a batch.
struct forward_item {
  sequence_blocks* seq = nullptr;
  int token = 0;
  int position = 0;
  bool logits = false;  // whether this position's logits are wanted
};

class forward_engine {
 public:
  virtual ~forward_engine() = default;
  virtual const model_config& config() const = 0;
  virtual const engine_limits& limits() const = 0;
  virtual kv_cache& cache() = 0;
  virtual const char* device() const = 0;  // "cpu" or "cuda"
  // The bytes of weights one decode step reads (every matrix and vector once, one embedding
  // row), as stored on this device.
  virtual std::size_t weight_bytes_per_token() const = 0;
  // This device's memory-copy bandwidth as STREAM's Copy counts it (bytes read + bytes
  // written per second), measured now over buffers far larger than its caches (median of 5).
  virtual double measure_copy_bandwidth() const = 0;

  // Runs `items` (at most max_batch_tokens, at most max_logit_rows of them asking for logits)
  // and writes their keys and values into the cache. Returns the logits of the items that
  // asked, in item order, [rows][vocab], valid until the next call. Throws std::logic_error
  // for an item whose blocks do not hold its position, std::out_of_range for a token outside
  // the vocabulary, std::length_error past the limits.
  virtual std::span<const float> forward(std::span<const forward_item> items) = 0;

  // For tools and tests, on a sequence of the engine's cache: feeds `tokens` after what `seq`
  // holds, taking blocks as needed, and returns the logits at the last position ([vocab]);
  // `all_logits`, when given, receives those of every fed position. Throws std::length_error
  // when the cache is full.
  std::vector<float> feed(sequence_blocks& seq, const std::vector<int>& tokens,
                          std::vector<std::vector<float>>* all_logits = nullptr);
  // Greedy decoding: feeds the prompt, then the arg-max token until `max_new` tokens or an eos.
  // Through the prefix cache: the prompt's longest published prefix (whole blocks, never its
  // last position) is reused, and the sequence's full blocks are published for later calls;
  // `cached_tokens`, when given, receives the prompt positions reused.
  std::vector<int> generate_greedy(const std::vector<int>& prompt, int max_new,
                                   int* cached_tokens = nullptr);

 protected:
  // Checks `items` against the limits, the vocabulary and their blocks (the throws above);
  // returns how many ask for logits.
  int check_items(std::span<const forward_item> items);
};

// The number of cache blocks `limits` asks for, for a model of config `c`.
int kv_blocks_for(const model_config& c, const engine_limits& limits);

}  // namespace tollgate::gpu
