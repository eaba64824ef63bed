// The prefix cache of the paged key/value cache: blocks published under their position chain,
// reused only on an exact match of whole blocks (never the last prompt position), reference
// counted, evicted least recently used and never while referenced, counted as free; and the
// forward pass and the scheduler giving bit for bit (token for token) the same results with and
// without a cache hit, prompts diverging in the middle of a block included.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "core/metrics.hpp"
#include "gpu/cpu_forward.hpp"
#include "gpu/kv_cache.hpp"
#include "gpu/scheduler.hpp"
#include "metering/tokenizer.hpp"
#include "tests/unit/gpu/random_model.hpp"

using namespace tollgate::gpu;

namespace {

std::vector<int> tokens(int n, int seed) {
  std::vector<int> t;
  for (int i = 0; i < n; ++i) t.push_back((seed * 31 + i * 17) % 300);
  return t;
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Writes `n` positions of `tokens` into `seq` (bookkeeping only) and publishes its full blocks.
void write(kv_cache& cache, sequence_blocks& seq, const std::vector<int>& toks, int n) {
  REQUIRE(cache.ensure(seq, n));
  seq.length = n;
  cache.publish(seq, toks);
}

}  // namespace

TEST_CASE("prefix cache: whole blocks of an exact prefix are shared, never the last position") {
  kv_cache cache(2, 8, 4, 16);  // 16 blocks of 4 positions
  const std::vector<int> a = tokens(10, 1);
  sequence_blocks first;
  write(cache, first, a, 10);  // blocks 0-3, 4-7 full and published; 8-9 not
  CHECK(first.chained_blocks == 2);
  CHECK(cache.used_blocks() == 3);

  // The same prompt while the first still runs: its two full blocks, shared.
  sequence_blocks second;
  CHECK(cache.match_prefix(second, a, 9) == 8);
  CHECK(second.length == 8);
  REQUIRE(second.table.size() == 2);
  CHECK(second.table[0] == first.table[0]);
  CHECK(second.table[1] == first.table[1]);
  CHECK(cache.used_blocks() == 3);  // shared, not copied

  // The last position is never reused: a prompt of exactly 8 positions reuses one block.
  sequence_blocks exact;
  CHECK(cache.match_prefix(exact, std::vector<int>(a.begin(), a.begin() + 8), 7) == 4);
  cache.release(exact);

  // Diverging in the middle of the second block: only the first block matches.
  std::vector<int> b = a;
  b[6] += 1;
  sequence_blocks third;
  CHECK(cache.match_prefix(third, b, 9) == 4);
  cache.release(third);

  // The same tokens at another position (another parent) do not match.
  std::vector<int> shifted = concat({7, 7, 7, 7}, a);
  sequence_blocks fourth;
  CHECK(cache.match_prefix(fourth, std::vector<int>(a.begin() + 4, a.end()), 5) == 0);
  CHECK(cache.match_prefix(fourth, shifted, 13) == 0);
  cache.release(fourth);

  // Released, the published blocks stay as cached blocks and count as free.
  cache.release(first);
  CHECK(cache.used_blocks() == 2);  // still held by `second`
  cache.release(second);
  CHECK(cache.used_blocks() == 0);
  CHECK(cache.cached_blocks() == 2);
  CHECK(cache.free_blocks() == 16);
  sequence_blocks again;
  CHECK(cache.match_prefix(again, a, 9) == 8);
  CHECK(cache.cached_blocks() == 0);
  CHECK(cache.used_blocks() == 2);
  cache.release(again);
}

TEST_CASE("prefix cache: least recently used eviction, never of a referenced block") {
  kv_cache cache(1, 4, 2, 6);  // 6 blocks of 2 positions
  const std::vector<int> a = {1, 2, 3, 4, 5}, b = {9, 8, 7, 6, 5};
  sequence_blocks sa, sb;
  write(cache, sa, a, 5);  // 3 blocks, 2 published
  write(cache, sb, b, 5);  // 3 blocks, 2 published
  cache.release(sa);       // a's blocks cached first: least recently used
  cache.release(sb);
  CHECK(cache.cached_blocks() == 4);
  CHECK(cache.free_blocks() == 6);

  // Holding b's prefix, a sequence that needs 5 blocks evicts a's (never b's, referenced).
  sequence_blocks hold;
  CHECK(cache.match_prefix(hold, b, 4) == 4);
  sequence_blocks big;
  CHECK_FALSE(cache.ensure(big, 11));  // 6 blocks wanted, 4 may be taken
  REQUIRE(cache.ensure(big, 8));
  CHECK(cache.evictions() == 2);
  for (int blk : hold.table)
    CHECK(std::find(big.table.begin(), big.table.end(), blk) == big.table.end());
  cache.release(big);
  sequence_blocks probe;
  CHECK(cache.match_prefix(probe, a, 4) == 0);  // evicted
  cache.release(probe);
  CHECK(cache.match_prefix(probe, b, 4) == 4);  // kept
  cache.release(probe);
  cache.release(hold);

  // A chain's tail is evicted before its beginning.
  kv_cache small(1, 4, 2, 4);
  sequence_blocks s;
  write(small, s, {1, 2, 3, 4, 5, 6, 7, 8}, 8);  // 4 blocks, all published
  small.release(s);
  sequence_blocks one;
  REQUIRE(small.ensure(one, 2));  // takes one cached block: the chain's last
  sequence_blocks m;
  CHECK(small.match_prefix(m, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9}, 8) == 6);
  small.release(m);
  small.release(one);

  // A cap on the cached blocks kept.
  kv_cache capped(1, 4, 2, 8);
  capped.set_cached_blocks_max(1);
  sequence_blocks c;
  write(capped, c, {1, 2, 3, 4, 5, 6}, 6);
  capped.release(c);
  CHECK(capped.cached_blocks() == 1);
  CHECK(capped.match_prefix(c, std::vector<int>{1, 2, 3, 4, 5, 6, 7}, 6) == 2);  // the first
  capped.release(c);
}

TEST_CASE(
    "prefix cache: a block computed twice is published once; a broken chain is not followed") {
  kv_cache cache(1, 4, 2, 4);  // 4 blocks of 2 positions
  sequence_blocks x, y;
  write(cache, x, {1, 2}, 2);        // block 0, published
  write(cache, y, {1, 2, 3, 4}, 4);  // blocks 1 and 2: the first the same content as x's
  CHECK(y.chained_blocks == 2);
  CHECK(y.table[0] != x.table[0]);
  sequence_blocks probe;
  CHECK(cache.match_prefix(probe, std::vector<int>{1, 2, 3, 4, 5}, 4) == 4);
  CHECK(probe.table[0] == x.table[0]);  // the published copy
  CHECK(probe.table[1] == y.table[1]);  // y's second block, chained on x's first
  cache.release(probe);
  cache.release(x);
  cache.release(y);  // y's private copy becomes free, its second block cached
  CHECK(cache.cached_blocks() == 2);
  CHECK(cache.free_blocks() == 4);

  // x's block (the chain's parent, least recently used) is evicted; [1, 2] is published again
  // in another block. y's second block names the evicted parent, so it is not matched: a
  // block is found by its parent's identity, not by hashes alone.
  sequence_blocks w;
  REQUIRE(cache.ensure(w, 6));  // 2 free blocks and the least recently used cached one
  CHECK(cache.evictions() == 1);
  cache.release(w);
  sequence_blocks z;
  write(cache, z, {1, 2}, 2);
  sequence_blocks m;
  CHECK(cache.match_prefix(m, std::vector<int>{1, 2, 3, 4, 5}, 4) == 2);
  cache.release(m);
  cache.release(z);
}

TEST_CASE("the forward pass gives bit for bit the same logits with and without a cache hit") {
  for (const bool qwen_style : {false, true}) {
    const model_weights w = tollgate::test::random_model(qwen_style);
    engine_limits l;
    l.kv_block_size = 4;
    l.kv_blocks = 64;
    l.max_batch_tokens = 8;
    l.max_logit_rows = 8;
    cpu_forward cached(w, l, 2);
    cpu_forward plain(w, l, 1);
    const std::vector<int> a = tokens(23, 1);
    // b shares a's first 14 positions: it diverges in the middle of its fourth block.
    const std::vector<int> b = concat(std::vector<int>(a.begin(), a.begin() + 14), tokens(9, 5));
    const std::vector<int> c(a.begin(), a.begin() + 20);  // a whole number of blocks

    sequence_blocks first;
    cached.feed(first, a);
    cached.cache().publish(first, a);
    cached.cache().release(first);

    for (const auto& [prompt, reused] : {std::pair{b, 12}, std::pair{a, 20}, std::pair{c, 16}}) {
      sequence_blocks hit;
      REQUIRE(cached.cache().match_prefix(hit, prompt, static_cast<int>(prompt.size()) - 1) ==
              reused);
      std::vector<std::vector<float>> got;
      cached.feed(hit, std::vector<int>(prompt.begin() + reused, prompt.end()), &got);
      cached.cache().publish(hit, prompt);
      sequence_blocks cold;
      std::vector<std::vector<float>> want;
      plain.feed(cold, prompt, &want);
      REQUIRE(got.size() == prompt.size() - static_cast<std::size_t>(reused));
      for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i] == want[static_cast<std::size_t>(reused) + i]);  // bit for bit
      }
      cached.cache().release(hit);
      plain.cache().release(cold);
    }
    // Greedy decoding through the cache: the same tokens, and the blocks reused.
    int reused = -1;
    const auto hit = cached.generate_greedy(b, 12, &reused);
    CHECK(reused == 20);  // b's own blocks, published by the loop above
    CHECK(hit == plain.generate_greedy(b, 12));
  }
}

namespace {

// Runs `prompts` through a scheduler (greedy, 10 tokens each; `together`: all submitted at
// once, else one after another) and returns each one's text, completion and cached tokens.
struct outcome {
  std::string text;
  int completion_tokens = 0;
  int cached_tokens = 0;
};

std::vector<outcome> serve(const model_weights& w, const std::vector<std::vector<int>>& prompts,
                           bool prefix, bool together, int& blocks_in_use) {
  static const auto tok = tollgate::metering::tokenizer::load_hugging_face(
      TOLLGATE_SOURCE_DIR "/.cache/tokenizers/llama3.tokenizer.json");
  REQUIRE(tok);
  engine_limits l;
  l.kv_block_size = 4;
  l.kv_blocks = 48;
  l.max_batch_tokens = 16;
  l.max_logit_rows = 4;
  cpu_forward engine(w, l, 2);
  tollgate::metrics::registry registry;
  prefix_cache_options options;
  options.enabled = prefix;
  scheduler sched(engine, **tok, {}, 4, registry, options);
  std::thread runner([&sched] { sched.run(); });
  std::vector<outcome> out(prompts.size());
  std::mutex mu;
  std::condition_variable cv;
  std::size_t done = 0;
  const auto submit = [&](std::size_t i) {
    generation_request r;
    r.prompt = prompts[i];
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 10;
    r.on_event = [&, i](const generation_event& e) {
      std::lock_guard lock(mu);
      out[i].text += e.text;
      if (!e.done) return;
      out[i].completion_tokens = e.completion_tokens;
      out[i].cached_tokens = e.cached_tokens;
      ++done;
      cv.notify_all();
    };
    REQUIRE(sched.submit(std::move(r)));
  };
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    submit(i);
    if (!together) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done == i + 1; });
    }
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done == prompts.size(); });
  }
  sched.stop();
  runner.join();
  blocks_in_use = engine.cache().used_blocks();
  return out;
}

}  // namespace

TEST_CASE("the scheduler: the same tokens with the prefix cache on and off, cached tokens exact") {
  const model_weights w = tollgate::test::random_model(false);
  const std::vector<int> system = tokens(18, 3);
  const std::vector<std::vector<int>> prompts = {
      concat(system, tokens(5, 10)),  // 23 positions: publishes 5 blocks
      concat(system, tokens(7, 11)),  // shares 18 positions: 4 whole blocks (16)
      concat(system, tokens(5, 10)),  // the same as the first: 5 blocks (20 of 23)
      std::vector<int>(system.begin(), system.begin() + 16),  // 16: the last block recomputed
      tokens(9, 4),                                           // nothing shared
  };
  int in_use = -1;
  const auto off = serve(w, prompts, false, false, in_use);
  const auto on = serve(w, prompts, true, false, in_use);
  CHECK(in_use == 0);  // every reference given back
  const int want[] = {0, 16, 20, 12, 0};
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK(off[i].cached_tokens == 0);
    CHECK(on[i].cached_tokens == want[i]);
    CHECK(on[i].text == off[i].text);
    CHECK(on[i].completion_tokens == off[i].completion_tokens);
  }
  // All at once (continuous batching): the same tokens again. The first request's blocks are
  // not yet published when the others are admitted, so what they reuse depends on timing.
  const auto both = serve(w, prompts, true, true, in_use);
  CHECK(in_use == 0);
  for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(both[i].text == off[i].text);
}
