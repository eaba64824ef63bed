// The engine's paged key/value cache: one allocation, made when the engine starts, cut into
// fixed-size blocks of `block_size` positions. A sequence holds a table of the blocks its
// positions live in (position p is slot p % block_size of block table[p / block_size]); blocks
// are taken as positions are written and given back when the sequence ends, so sequences of any
// length share one memory budget without fragmentation. Admission is by reservation: the
// scheduler reserves a sequence's worst case (prompt + max_tokens) before it starts, so a
// running sequence never finds the cache full; what does not fit waits in the queue.
//
// Prefix caching: a FULL block whose positions are all written can be published under the
// hash of its position chain (the parent block's chain hash and this block's tokens). A later
// sequence whose tokens begin the same way takes references on those blocks instead of
// computing their keys and values again (match_prefix). Blocks are reference counted; one that
// no sequence references but that is published stays where it is, as a cached block, until a
// block is needed and none is free: then the least recently used cached block is evicted (a
// referenced block never is). Cached blocks count as free. Only full blocks are shared, and
// shared blocks are never written again (a sequence only writes positions past its matched
// prefix, in blocks of its own), so no copy-on-write is needed. A match is exact: a block's
// tokens and its parent's identity (block id and generation, which changes at eviction) are
// compared, not only the hash.
//
// Layout of a block, for keys and values alike: [layer][slot][kv_heads * head_dim] floats, so
// the keys of one layer in one block are contiguous (what attention reads). The CUDA forward
// pass keeps the floats on the device in the same layout and this bookkeeping on the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace tollgate::gpu {

// A sequence's place in the cache.
struct sequence_blocks {
  std::vector<int> table;  // block ids, in position order
  int length = 0;          // positions written
  // The prefix cache's chain: how many leading blocks of `table` are matched or published, and
  // the identity of the last of them (the published block with its content, which is this
  // sequence's own block or, when another sequence published the same content first, that one).
  int chained_blocks = 0;
  std::uint64_t chain_hash = 0;
  int chain_block = -1;
  std::uint32_t chain_generation = 0;
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
  // Blocks a sequence may take: those holding nothing and the cached ones no sequence
  // references (evicted when taken).
  int free_blocks() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Blocks referenced by at least one sequence.
  int used_blocks() const { return total_blocks() - free_blocks(); }
  // Cached blocks no sequence references (kept for reuse, counted as free).
  int cached_blocks() const { return static_cast<int>(lru_.size()); }
  // Cached blocks evicted so far.
  std::uint64_t evictions() const { return evictions_; }
  // The bytes of keys and values in all.
  std::size_t bytes() const {
    return 2 * block_stride() * static_cast<std::size_t>(total_) * sizeof(float);
  }

  // Gives `seq` the blocks to hold `positions` positions in all; false (and no change) when
  // the cache has too few free blocks.
  bool ensure(sequence_blocks& seq, int positions);
  // Drops `seq`'s reference on each of its blocks and empties it. A block no one references
  // becomes free, or cached when published.
  void release(sequence_blocks& seq);

  // At most `blocks` unreferenced cached blocks are kept (the least recently used beyond that
  // become free at once); 0: no limit but the cache's size.
  void set_cached_blocks_max(int blocks);
  // For an empty `seq`: takes references on the longest chain of published blocks holding
  // `tokens`' first positions, whole blocks and at most `max_positions` positions, puts them in
  // its table and sets its length. Returns the positions reused (a multiple of block_size).
  int match_prefix(sequence_blocks& seq, std::span<const int> tokens, int max_positions);
  // Publishes the full blocks of `seq` not yet chained; `tokens` holds the token of each of
  // its written positions (at least seq.length). A block whose content is already published
  // (another sequence got there first) stays private to `seq`, which chains on the published one.
  void publish(sequence_blocks& seq, std::span<const int> tokens);

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
  struct block_state {
    int refs = 0;
    bool published = false;
    std::uint64_t hash = 0;  // its chain hash, when published
    int parent = -1;         // the identity of the block before it (-1: the first)
    std::uint32_t parent_generation = 0;
    std::uint32_t generation = 0;     // changes each time it stops being published
    std::list<int>::iterator in_lru;  // when cached and unreferenced
  };

  std::size_t offset(int block, int layer) const {
    return static_cast<std::size_t>(block) * block_stride() +
           static_cast<std::size_t>(layer) * layer_stride();
  }
  std::span<const int> tokens_of(int block) const {
    return {block_tokens_.data() + static_cast<std::size_t>(block) * block_size_,
            static_cast<std::size_t>(block_size_)};
  }
  std::uint64_t chain(std::uint64_t parent_hash, std::span<const int> tokens) const;
  // The published block holding `tokens` after the chain (`parent`, `generation`), or -1.
  int find(std::uint64_t hash, std::span<const int> tokens, int parent,
           std::uint32_t generation) const;
  // A block for a sequence: a free one, else the least recently used cached one (evicted).
  int take();
  // Takes `block` out of the published index (it keeps its place if referenced).
  void unpublish(int block);

  int layers_;
  int kv_dim_;
  int block_size_;
  int total_;
  std::vector<float> keys_;
  std::vector<float> values_;
  std::vector<int> free_;                         // blocks holding nothing
  std::vector<block_state> state_;                // [block]
  std::vector<int> block_tokens_;                 // [block][block_size]: a published block's tokens
  std::unordered_map<std::uint64_t, int> index_;  // chain hash -> published block
  std::list<int> lru_;  // cached, unreferenced blocks, least recently used first
  int cached_blocks_max_ = 0;
  std::uint64_t evictions_ = 0;
};

}  // namespace tollgate::gpu
