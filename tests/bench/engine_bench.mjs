// The engine's CPU forward pass against the PyTorch reference (tests/infer/reference_forward.py,
// Debian's python3-torch) on the same `small` model (about 110M parameters, F32): the wall time
// of a prefill of N positions, forward pass only (model loading excluded), median of runs, and the
// ratio reference / engine (above 1: the engine is faster). Also the engine's decode speed
// (greedy, tokens per second) and the gain from its SIMD + threads over one thread.
//   node tests/bench/engine_bench.mjs [--tokens N] [--runs N]
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
const decode = timed(infer, ['generate', '--model', model, '--ids', ids.split(',').slice(0, 8).join(','), '--max-tokens', '64', '--timing']);
const ms = (us) => (us / 1000).toFixed(1);
console.log(`engine bench: small model (${(made.parameters / 1e6).toFixed(0)}M parameters, F32), prefill of ${tokens} positions, median of ${runs} runs, ${os.cpus().length} CPUs`);
console.log(`  tollgate-infer (SIMD ${simd ? 'AVX2/FMA' : 'off'}, ${os.cpus().length} threads): ${ms(median(engine))} ms`);
console.log(`  tollgate-infer, one thread:                 ${ms(median(single))} ms`);
console.log(`  PyTorch reference (${torchThreads} threads):            ${ms(median(reference))} ms`);
console.log(`  ratio reference / engine: ${(median(reference) / median(engine)).toFixed(2)}  (threads gain: ${(median(single) / median(engine)).toFixed(2)}x)`);
console.log(`  decode: ${decode.tokens} tokens in ${ms(decode.forward_us)} ms (with an 8-token prompt): ${(decode.tokens / (decode.forward_us / 1e6)).toFixed(1)} tokens/s`);
