// The engine's CPU forward pass against the PyTorch reference (tests/infer/reference_forward.py,
// Debian's python3-torch) on the same `small` model (about 110M parameters, F32): the wall time
// of a prefill of N positions, forward pass only (model loading excluded), median of runs, and the
// ratio reference / engine (above 1: the engine is faster), and the gain from its SIMD + threads
// over one thread. Then decode as served (`tollgate-infer bench-decode`: the scheduler's batched
// forward pass, greedy, 64 tokens per stream, median of 3): tokens/s at batch 1 as a fraction of
// the bound this machine's memory bandwidth sets (weight bytes per token over a memory-copy
// bandwidth measured in the same run), and aggregate tokens/s with 4, 16 and 32 concurrent
// streams as multiples of batch 1. Goals: batch 1 at least 50 % of the bound; 16 streams at
// least 4x batch 1. Then the prefix cache (`tollgate-infer bench-prefix`): time to first token
// and prefill throughput for a 2,000-token shared system prompt with the cache off and on (each
// request adds 24 tokens of its own and generates one; median of the requests after the first),
// and the hit rate and wall time of a mixed workload of 24 requests.
//   node tests/bench/engine_bench.mjs [--tokens N] [--runs N] [--system-tokens N]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { binDir } from '../lib/harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const tokens = arg('--tokens', 64);
const runs = arg('--runs', 5);
const systemTokens = arg('--system-tokens', 2000);
const infer = path.join(binDir, 'tollgate-infer');
const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-engine-bench-'));
const model = path.join(dir, 'small');
const made = JSON.parse(execFileSync(infer, ['make-model', '--preset', 'small', '--tokenizer', path.join(root, '.cache/tokenizers/llama3.tokenizer.json'), '--out', model], { encoding: 'utf8' }));
const ids = Array.from({ length: tokens }, (_, i) => 1000 + ((i * 7919) % 100000)).join(',');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const timed = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return JSON.parse(r.stderr.trim().split('\n').at(-1));
};
const out = path.join(dir, 'logits.f32');
const engine = [];
const single = [];
const reference = [];
let simd = false;
let torchThreads = 0;
for (let i = 0; i < runs; i += 1) {
  const e = timed(infer, ['logits', '--model', model, '--ids', ids, '--out', out, '--timing']);
  simd = e.simd;
  engine.push(e.forward_us);
  single.push(timed(infer, ['logits', '--model', model, '--ids', ids, '--out', out, '--timing', '--threads', '1']).forward_us);
  const r = timed('/usr/bin/python3', [path.join(root, 'tests/infer/reference_forward.py'), 'logits', model, ids, out], { REFERENCE_TIMING: '1' });
  torchThreads = r.torch_threads;
  reference.push(r.forward_us);
}
const served = JSON.parse(execFileSync(infer, ['bench-decode', '--model', model, '--streams', '1,4,16,32', '--tokens', '64', '--runs', '3'], { encoding: 'utf8' }));
const ms = (us) => (us / 1000).toFixed(1);
console.log(`engine bench: small model (${(made.parameters / 1e6).toFixed(0)}M parameters, F32), prefill of ${tokens} positions, median of ${runs} runs, ${os.cpus().length} CPUs`);
console.log(`  tollgate-infer (SIMD ${simd ? 'AVX2/FMA' : 'off'}, ${os.cpus().length} threads): ${ms(median(engine))} ms`);
console.log(`  tollgate-infer, one thread:                 ${ms(median(single))} ms`);
console.log(`  PyTorch reference (${torchThreads} threads):            ${ms(median(reference))} ms`);
console.log(`  ratio reference / engine: ${(median(reference) / median(engine)).toFixed(2)}  (threads gain: ${(median(single) / median(engine)).toFixed(2)}x)`);
const one = served.results.find((r) => r.streams === 1).tokens_per_s;
console.log(`decode as served (64 tokens per stream, 8-token prompts included, median of 3):`);
console.log(`  memory-copy bandwidth ${(served.copy_bytes_per_s / 1e9).toFixed(1)} GB/s (read + written), weights read per token ${(served.weight_bytes_per_token / 1e6).toFixed(1)} MB: bound ${served.bound_tokens_per_s} tokens/s`);
console.log(`  batch 1: ${one} tokens/s = ${(100 * one / served.bound_tokens_per_s).toFixed(0)} % of the bound (goal: at least 50 %)`);
for (const r of served.results.filter((x) => x.streams > 1)) {
  console.log(`  ${String(r.streams).padStart(2)} streams: ${r.tokens_per_s} tokens/s = ${(r.tokens_per_s / one).toFixed(2)}x batch 1${r.streams === 16 ? ' (goal: at least 4x)' : ''}`);
}
const prefix = JSON.parse(execFileSync(infer, ['bench-prefix', '--model', model, '--system-tokens', String(systemTokens), '--requests', '4', '--mixed-requests', '24'], { encoding: 'utf8' }));
const sp = prefix.shared_system_prompt;
console.log(`prefix cache, a ${sp.system_tokens}-token shared system prompt + 24 tokens per request, one token generated (median of 3 requests after the first):`);
for (const [label, r] of [['off', sp.off], ['on ', sp.on]]) {
  console.log(`  cache ${label}: time to first token ${r.ttft_ms} ms, prefill ${r.prefill_tokens_per_s} prompt tokens/s (${r.cached_tokens} of ${r.prompt_tokens} cached; first request ${r.first_request_ttft_ms} ms)`);
}
console.log(`  time to first token ${(sp.off.ttft_ms / sp.on.ttft_ms).toFixed(1)}x shorter with the cache`);
const mx = prefix.mixed;
console.log(`mixed workload, ${mx.requests} requests one after another (3 shared system prompts of 1,000, 400 and 150 tokens, a quarter sharing nothing):`);
console.log(`  hit rate ${(100 * mx.on.hit_rate).toFixed(1)} % (${mx.on.cached_tokens} of ${mx.on.prompt_tokens} prompt tokens); wall time ${mx.off.wall_s} s off, ${mx.on.wall_s} s on`);
