// The paged key/value cache: see kv_cache.hpp.
#include "gpu/kv_cache.hpp"

#include <stdexcept>

namespace tollgate::gpu {

kv_cache::kv_cache(int layers, int kv_dim, int block_size, int num_blocks, bool host_storage)
    : layers_(layers), kv_dim_(kv_dim), block_size_(block_size), total_(num_blocks) {
  if (layers < 1 || kv_dim < 1 || block_size < 1 || num_blocks < 1) {
    throw std::invalid_argument("kv_cache: layers, kv_dim, block_size and blocks must be positive");
  }
  if (host_storage) {
    const std::size_t floats = block_stride() * static_cast<std::size_t>(num_blocks);
    keys_.assign(floats, 0.0f);
    values_.assign(floats, 0.0f);
  }
  free_.reserve(static_cast<std::size_t>(num_blocks));
  // Handed out from the back: block 0 first.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

bool kv_cache::ensure(sequence_blocks& seq, int positions) {
  const int need = blocks_for(positions) - static_cast<int>(seq.table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int i = 0; i < need; ++i) {
    seq.table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void kv_cache::release(sequence_blocks& seq) {
  for (auto it = seq.table.rbegin(); it != seq.table.rend(); ++it) free_.push_back(*it);
  seq.table.clear();
  seq.length = 0;
}

}  // namespace tollgate::gpu
