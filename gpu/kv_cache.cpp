// The paged key/value cache and its prefix cache: see kv_cache.hpp.
#include "gpu/kv_cache.hpp"

#include <algorithm>
#include <stdexcept>

namespace tollgate::gpu {
namespace {

constexpr std::uint64_t chain_root = 0x6a09e667f3bcc908ull;  // the hash before the first block

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  return h;
}

}  // namespace

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
  state_.resize(static_cast<std::size_t>(num_blocks));
  block_tokens_.assign(static_cast<std::size_t>(num_blocks) * static_cast<std::size_t>(block_size),
                       0);
}

int kv_cache::take() {
  int b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    b = lru_.front();  // the caller checked free_blocks()
    lru_.pop_front();
    unpublish(b);
    ++evictions_;
  }
  state_[static_cast<std::size_t>(b)].refs = 1;
  return b;
}

void kv_cache::unpublish(int block) {
  block_state& s = state_[static_cast<std::size_t>(block)];
  if (!s.published) return;
  const auto it = index_.find(s.hash);
  if (it != index_.end() && it->second == block) index_.erase(it);
  s.published = false;
  ++s.generation;  // blocks chained on it no longer match
}

bool kv_cache::ensure(sequence_blocks& seq, int positions) {
  const int need = blocks_for(positions) - static_cast<int>(seq.table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int i = 0; i < need; ++i) seq.table.push_back(take());
  return true;
}

void kv_cache::release(sequence_blocks& seq) {
  // The last blocks first: a chain's tail becomes the least recently used, so eviction eats a
  // cached prefix from its end and its beginning (shared most widely) stays longest.
  for (auto it = seq.table.rbegin(); it != seq.table.rend(); ++it) {
    block_state& s = state_[static_cast<std::size_t>(*it)];
    if (s.refs < 1) throw std::logic_error("kv_cache: a block released more often than taken");
    if (--s.refs > 0) continue;
    if (s.published) {
      lru_.push_back(*it);
      s.in_lru = std::prev(lru_.end());
    } else {
      free_.push_back(*it);
    }
  }
  seq = sequence_blocks{};
  while (cached_blocks_max_ > 0 && static_cast<int>(lru_.size()) > cached_blocks_max_) {
    const int b = lru_.front();
    lru_.pop_front();
    unpublish(b);
    ++evictions_;
    free_.push_back(b);
  }
}

void kv_cache::set_cached_blocks_max(int blocks) {
  cached_blocks_max_ = std::max(0, blocks);
}

std::uint64_t kv_cache::chain(std::uint64_t parent_hash, std::span<const int> tokens) const {
  std::uint64_t h = mix(parent_hash, static_cast<std::uint64_t>(tokens.size()));
  for (const int t : tokens) h = mix(h, static_cast<std::uint32_t>(t));
  return h;
}

int kv_cache::find(std::uint64_t hash, std::span<const int> tokens, int parent,
                   std::uint32_t generation) const {
  const auto it = index_.find(hash);
  if (it == index_.end()) return -1;
  const block_state& s = state_[static_cast<std::size_t>(it->second)];
  // Exact: the same parent (as it is now) and the same tokens, not only the same hash.
  if (!s.published || s.parent != parent || (parent >= 0 && s.parent_generation != generation)) {
    return -1;
  }
  const auto held = tokens_of(it->second);
  return std::equal(held.begin(), held.end(), tokens.begin(), tokens.end()) ? it->second : -1;
}

int kv_cache::match_prefix(sequence_blocks& seq, std::span<const int> tokens, int max_positions) {
  if (!seq.table.empty()) throw std::logic_error("kv_cache: match_prefix on a sequence in use");
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  const std::size_t limit =
      std::min(tokens.size(), static_cast<std::size_t>(std::max(0, max_positions)));
  for (std::size_t at = 0; at + bs <= limit; at += bs) {
    const auto part = tokens.subspan(at, bs);
    const std::uint64_t h = chain(seq.chain_block < 0 ? chain_root : seq.chain_hash, part);
    const int b = find(h, part, seq.chain_block, seq.chain_generation);
    if (b < 0) break;
    block_state& s = state_[static_cast<std::size_t>(b)];
    if (s.refs++ == 0) lru_.erase(s.in_lru);  // cached -> referenced
    seq.table.push_back(b);
    seq.chain_hash = h;
    seq.chain_block = b;
    seq.chain_generation = s.generation;
    ++seq.chained_blocks;
  }
  seq.length = seq.chained_blocks * block_size_;
  return seq.length;
}

void kv_cache::publish(sequence_blocks& seq, std::span<const int> tokens) {
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  const int written = std::min(seq.length, static_cast<int>(tokens.size()));
  while ((seq.chained_blocks + 1) * block_size_ <= written) {
    const std::size_t at = static_cast<std::size_t>(seq.chained_blocks) * bs;
    const auto part = tokens.subspan(at, bs);
    const std::uint64_t h = chain(seq.chain_block < 0 ? chain_root : seq.chain_hash, part);
    int canonical = find(h, part, seq.chain_block, seq.chain_generation);
    if (canonical < 0) {
      canonical = seq.table[static_cast<std::size_t>(seq.chained_blocks)];
      const auto old = index_.find(h);
      // Another chain under the same hash (a collision, or one whose parent was evicted).
      if (old != index_.end()) {
        const int stale = old->second;
        unpublish(stale);
        block_state& st = state_[static_cast<std::size_t>(stale)];
        if (st.refs == 0) {
          lru_.erase(st.in_lru);
          free_.push_back(stale);
        }
      }
      block_state& s = state_[static_cast<std::size_t>(canonical)];
      s.published = true;
      s.hash = h;
      s.parent = seq.chain_block;
      s.parent_generation = seq.chain_generation;
      std::copy(part.begin(), part.end(),
                block_tokens_.begin() +
                    static_cast<std::ptrdiff_t>(canonical) * static_cast<std::ptrdiff_t>(bs));
      index_[h] = canonical;
    }
    seq.chain_hash = h;
    seq.chain_block = canonical;
    seq.chain_generation = state_[static_cast<std::size_t>(canonical)].generation;
    ++seq.chained_blocks;
  }
}

}  // namespace tollgate::gpu
