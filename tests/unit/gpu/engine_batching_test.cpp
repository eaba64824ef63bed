// The paged key/value cache and the batched forward pass: blocks taken and given back, a full
// cache refusing without a change, and a batch of several sequences' prompt chunks and decode
// steps giving bit for bit the logits each sequence gets alone, whatever the thread count.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>

#include "gpu/cpu_forward.hpp"
#include "gpu/kv_cache.hpp"
#include "tests/unit/gpu/random_model.hpp"

using namespace tollgate::gpu;

namespace {

std::vector<int> tokens(int n, int seed) {
  std::vector<int> t;
  for (int i = 0; i < n; ++i) t.push_back((seed * 31 + i * 17) % 300);
  return t;
}

}  // namespace

TEST_CASE(
    "the paged cache hands out blocks, refuses when full without a change, and takes them back") {
  kv_cache cache(2, 8, 4, 5);  // 5 blocks of 4 positions
  CHECK(cache.total_blocks() == 5);
  CHECK(cache.blocks_for(1) == 1);
  CHECK(cache.blocks_for(4) == 1);
  CHECK(cache.blocks_for(5) == 2);
  sequence_blocks a, b;
  REQUIRE(cache.ensure(a, 9));  // 3 blocks
  CHECK(a.table.size() == 3);
  CHECK(cache.ensure(a, 12));  // still 3
  CHECK(a.table.size() == 3);
  CHECK(cache.free_blocks() == 2);
  CHECK_FALSE(cache.ensure(b, 12));  // 3 needed, 2 free
  CHECK(b.table.empty());
  CHECK(cache.free_blocks() == 2);
  REQUIRE(cache.ensure(b, 8));
  CHECK(cache.free_blocks() == 0);
  // No block is held twice.
  std::vector<int> all = a.table;
  all.insert(all.end(), b.table.begin(), b.table.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
  cache.release(a);
  CHECK(a.table.empty());
  CHECK(cache.free_blocks() == 3);
  REQUIRE(cache.ensure(a, 12));
  CHECK(cache.used_blocks() == 5);
  // A layer's keys of a block are block_size x kv_dim floats, layers one after the other.
  CHECK(cache.layer_stride() == 4 * 8);
  CHECK(cache.block_stride() == 2 * 4 * 8);
  CHECK(cache.keys(1, 1) - cache.keys(0, 0) ==
        static_cast<std::ptrdiff_t>(cache.block_stride() + cache.layer_stride()));
}

TEST_CASE("a batch of several sequences gives each exactly the logits it gets alone") {
  for (const bool qwen_style : {false, true}) {
    const model_weights w = tollgate::test::random_model(qwen_style);
    const int vocab = w.config.vocab_size;
    const std::vector<std::vector<int>> prompts = {tokens(37, 1), tokens(5, 2), tokens(20, 3)};
    const int steps = 6;

    // Alone: each sequence fed one position at a time (the old path), then decode steps.
    engine_limits one;
    one.max_batch_tokens = 1;
    one.max_logit_rows = 1;
    one.kv_blocks = 64;
    cpu_forward alone(w, one, 1);
    std::vector<std::vector<std::vector<float>>> expected(prompts.size());
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      sequence_blocks seq;
      auto all = std::vector<std::vector<float>>();
      alone.feed(seq, prompts[s], &all);
      expected[s].push_back(all.back());
      for (int i = 0; i < steps; ++i)
        expected[s].push_back(alone.feed(
            seq, {(s * 7 + i) % vocab == 0 ? 1 : static_cast<int>((s * 7 + i) % vocab)}));
      alone.cache().release(seq);
    }

    // Together, as the scheduler runs them: prompt chunks of up to 8 positions and decode
    // steps in one batch, on 1 and on 3 threads.
    for (const unsigned threads : {1u, 3u}) {
      engine_limits many;
      many.max_batch_tokens = 32;
      many.max_logit_rows = 3;
      many.kv_block_size = 4;  // sequences' blocks interleave in the pool
      many.kv_blocks = 64;
      cpu_forward batched(w, many, threads);
      std::vector<sequence_blocks> seqs(prompts.size());
      std::vector<std::size_t> fed(prompts.size(), 0);
      std::vector<int> decoded(prompts.size(), 0);
      std::vector<std::vector<std::vector<float>>> got(prompts.size());
      while (true) {
        std::vector<forward_item> items;
        std::vector<std::size_t> asked;
        for (std::size_t s = 0; s < prompts.size(); ++s) {
          if (decoded[s] > steps) continue;
          const bool decoding = fed[s] == prompts[s].size();
          const int n =
              decoding ? 1 : static_cast<int>(std::min<std::size_t>(8, prompts[s].size() - fed[s]));
          REQUIRE(batched.cache().ensure(seqs[s], seqs[s].length + n));
          for (int i = 0; i < n; ++i) {
            const int token = decoding ? ((s * 7 + decoded[s] - 1) % vocab == 0
                                              ? 1
                                              : static_cast<int>((s * 7 + decoded[s] - 1) % vocab))
                                       : prompts[s][fed[s] + static_cast<std::size_t>(i)];
            const bool logits =
                decoding || fed[s] + static_cast<std::size_t>(i) + 1 == prompts[s].size();
            items.push_back({&seqs[s], token, seqs[s].length + i, logits});
          }
          if (items.back().logits) asked.push_back(s);
          seqs[s].length += n;
          if (!decoding) fed[s] += static_cast<std::size_t>(n);
        }
        if (items.empty()) break;
        const auto logits = batched.forward(items);
        REQUIRE(logits.size() == asked.size() * static_cast<std::size_t>(vocab));
        for (std::size_t i = 0; i < asked.size(); ++i) {
          got[asked[i]].emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab,
                                     logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * vocab);
          ++decoded[asked[i]];
        }
      }
      for (std::size_t s = 0; s < prompts.size(); ++s) {
        REQUIRE(got[s].size() == expected[s].size());
        for (std::size_t i = 0; i < got[s].size(); ++i)
          CHECK(got[s][i] == expected[s][i]);  // bit for bit
      }
    }
  }
}

TEST_CASE("the forward pass refuses positions its sequence's blocks do not hold") {
  const model_weights w = tollgate::test::random_model(false);
  engine_limits l;
  l.kv_blocks = 2;
  l.kv_block_size = 4;
  cpu_forward engine(w, l, 1);
  sequence_blocks seq;
  REQUIRE(engine.cache().ensure(seq, 4));
  const forward_item past{&seq, 1, 4, true};
  CHECK_THROWS_AS(engine.forward(std::span<const forward_item>(&past, 1)), std::logic_error);
  sequence_blocks other;
  CHECK_THROWS_AS(engine.feed(other, tokens(9, 1)), std::length_error);  // 3 blocks, 1 free
}
