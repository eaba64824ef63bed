// The engine's paged key/value cache: one allocation, made when the engine starts, cut into
// fixed-size blocks of `block_size` positions. A sequence holds a table of the blocks its
// positions live in (position p is slot p % block_size of block table[p / block_size]); blocks
// are taken as positions are written and given back when the sequence ends, so sequences of any
// length share one memory budget without fragmentation. Admission is by reservation: the
// scheduler reserves a sequence's worst case (prompt + max_tokens) before it starts, so a
// running sequence never finds the cache full; what does not fit waits in the queue.
//
// Layout of a block, for keys and values alike: [layer][slot][kv_heads * head_dim] floats, so
// the keys of one layer in one block are contiguous (what attention reads).
#pragma once
#include <cstddef>
#include <vector>

namespace tollgate::gpu {

// A sequence's place in the cache.
struct sequence_blocks {
  std::vector<int> table;  // block ids, in position order
  int length = 0;          // positions written
};

class kv_cache {
 public:
  // Allocates `num_blocks` blocks for a model of `layers` layers and `kv_dim` (kv_heads *
  // head_dim) floats per position and layer, keys and values each. Without `host_storage`
  // only the bookkeeping lives here (a device holds the floats, laid out the same way) and
  // keys()/values() must not be used.
  kv_cache(int layers, int kv_dim, int block_size, int num_blocks, bool host_storage = true);
  kv_cache(const kv_cache&) = delete;
  kv_cache& operator=(const kv_cache&) = delete;

  // How many blocks a sequence of `positions` positions needs.
  int blocks_for(int positions) const { return (positions + block_size_ - 1) / block_size_; }
  int block_size() const { return block_size_; }
  int total_blocks() const { return total_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int used_blocks() const { return total_blocks() - free_blocks(); }
  // The bytes of keys and values in all.
  std::size_t bytes() const {
    return 2 * block_stride() * static_cast<std::size_t>(total_) * sizeof(float);
  }

  // Gives `seq` the blocks to hold `positions` positions in all; false (and no change) when
  // the cache has too few free blocks.
  bool ensure(sequence_blocks& seq, int positions);
  // Gives every block of `seq` back and empties it.
  void release(sequence_blocks& seq);

  // Where a layer's keys (values) of block `block` begin: [block_size][kv_dim] floats.
  float* keys(int block, int layer) { return keys_.data() + offset(block, layer); }
  float* values(int block, int layer) { return values_.data() + offset(block, layer); }
  const float* keys_base() const { return keys_.data(); }
  const float* values_base() const { return values_.data(); }
  // Floats from one block to the next, and from one layer to the next within a block.
  std::size_t block_stride() const { return layer_stride() * static_cast<std::size_t>(layers_); }
  std::size_t layer_stride() const {
    return static_cast<std::size_t>(block_size_) * static_cast<std::size_t>(kv_dim_);
  }

 private:
  std::size_t offset(int block, int layer) const {
    return static_cast<std::size_t>(block) * block_stride() +
           static_cast<std::size_t>(layer) * layer_stride();
  }

  int layers_;
  int kv_dim_;
  int block_size_;
  int total_;
  std::vector<float> keys_;
  std::vector<float> values_;
  std::vector<int> free_;  // free block ids
};

}  // namespace tollgate::gpu
