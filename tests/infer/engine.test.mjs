// The bundled engine's CPU forward pass against an independent PyTorch reference
// (tests/infer/reference_forward.py, Debian's python3-torch) on deterministic random models made
// by `tollgate-infer make-model`: Llama (llama3 RoPE scaling, untied), Qwen2 (q/k/v bias, tied)
// and Qwen3 (q/k norm), in F32 and BF16. Logits must agree to a relative error of 1e-4 and
// greedy decoding must give the same 32 tokens. Bad model files must fail with a clear error.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, cpSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { binDir } from '../lib/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const infer = path.join(binDir, 'tollgate-infer');
const python = '/usr/bin/python3';  // Debian's, with python3-torch
const reference = path.join(here, 'reference_forward.py');
const tokenizers = { llama: path.join(root, '.cache/tokenizers/llama3.tokenizer.json'), qwen: path.join(root, '.cache/tokenizers/qwen3.tokenizer.json') };
const prompts = [[128000, 9906, 1917, 0], [15, 27, 3000, 42, 7, 7, 7, 99, 1024, 5000, 12, 3], [500]];

const work = mkdtempSync(path.join(os.tmpdir(), 'tollgate-infer-'));
// The generated models take about half a gigabyte: removed when the file's tests end.
after(() => rmSync(work, { recursive: true, force: true }));
function makeModel(name, arch, dtype, tokenizer) {
  const out = path.join(work, name);
  execFileSync(infer, ['make-model', '--preset', 'tiny', '--arch', arch, '--dtype', dtype, '--tokenizer', tokenizer, '--out', out, '--seed', '7']);
  return out;
}
function floats(file) {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}
// Per position: max |engine - reference| / max |reference|; the worst position.
function relativeError(a, b, vocab) {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let p = 0; p < a.length / vocab; p += 1) {
    let diff = 0;
    let scale = 0;
    for (let i = p * vocab; i < (p + 1) * vocab; i += 1) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}
function compareLogits(model, ids) {
  const ours = path.join(work, 'ours.f32');
  const theirs = path.join(work, 'theirs.f32');
  execFileSync(infer, ['logits', '--model', model, '--ids', ids.join(','), '--out', ours]);
  execFileSync(python, [reference, 'logits', model, ids.join(','), theirs]);
  const vocab = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8')).vocab_size;
  return relativeError(floats(ours), floats(theirs), vocab);
}

describe('tollgate-infer: the CPU forward pass against a PyTorch reference', () => {
  const models = {};
  before(() => {
    models.llama = makeModel('llama', 'llama', 'f32', tokenizers.llama);
    models.llamaBf16 = makeModel('llama-bf16', 'llama', 'bf16', tokenizers.llama);
    models.qwen2 = makeModel('qwen2', 'qwen2', 'f32', tokenizers.qwen);
    models.qwen3 = makeModel('qwen3', 'qwen3', 'f32', tokenizers.qwen);
  });

  for (const [name, label] of [['llama', 'Llama (llama3 RoPE scaling)'], ['llamaBf16', 'Llama in BF16'],
    ['qwen2', 'Qwen2 (q/k/v bias, tied embeddings)'], ['qwen3', 'Qwen3 (q/k norm)']]) {
    test(`${label}: logits agree to 1e-4 on several prompts`, (t) => {
      let worst = 0;
      for (const ids of prompts) {
        const err = compareLogits(models[name], ids);
        assert.ok(err <= 1e-4, `relative error ${err} for ${ids}`);
        worst = Math.max(worst, err);
      }
      t.diagnostic(`worst relative error ${worst.toExponential(2)}`);
    });
  }

  for (const name of ['llama', 'qwen2']) {
    test(`${name}: greedy decoding of 32 tokens is token-identical`, () => {
      const ids = '128000,9906,1917';
      const ours = execFileSync(infer, ['generate', '--model', models[name], '--ids', ids, '--max-tokens', '32'], { encoding: 'utf8' }).trim();
      const theirs = execFileSync(python, [reference, 'generate', models[name], ids, '32'], { encoding: 'utf8' }).trim();
      assert.equal(ours, theirs);
    });
  }

  // The prefix cache (tollgate-infer generate --warm: the warm-up prompt's blocks are published
  // first) against the reference, which has no cache: blocks of 16, the prompts diverge in the
  // middle of the third block, and an identical prompt of three whole blocks recomputes its last.
  for (const name of ['llama', 'qwen2']) {
    test(`${name}: greedy decoding after a prefix cache hit is the reference's`, () => {
      const shared = Array.from({ length: 40 }, (_, i) => 100 + ((i * 37) % 5000));
      const whole = [...shared, 1, 2, 3, 4, 5, 6, 7, 8];  // 48 positions
      const cases = [
        { warm: [...shared, 11, 12, 13, 14, 15], ids: [...shared, 21, 22, 23], cached: 32 },
        { warm: whole, ids: whole, cached: 32 },
      ];
      for (const c of cases) {
        const r = spawnSync(infer, ['generate', '--model', models[name], '--ids', c.ids.join(','), '--warm', c.warm.join(','), '--max-tokens', '16'], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(JSON.parse(r.stderr.trim().split('\n').at(-1)).cached_tokens, c.cached);
        const theirs = execFileSync(python, [reference, 'generate', models[name], c.ids.join(','), '16'], { encoding: 'utf8' }).trim();
        assert.equal(r.stdout.trim(), theirs);
      }
    });
  }

  test('make-model is deterministic: the same seed gives the same bytes', () => {
    const again = makeModel('llama-again', 'llama', 'f32', tokenizers.llama);
    const sum = (dir) => createHash('sha256').update(readFileSync(path.join(dir, 'model.safetensors'))).digest('hex');
    assert.equal(sum(again), sum(models.llama));
    const config = JSON.parse(readFileSync(path.join(models.llama, 'config.json'), 'utf8'));
    assert.equal(config.vocab_size, 128256);
    assert.deepEqual(JSON.parse(readFileSync(path.join(models.llama, 'generation_config.json'), 'utf8')).eos_token_id.sort(),
      [128001, 128009]);
  });

  test('bad or truncated model files fail with an error naming the file and tensor', () => {
    const broken = (name, mutate) => {
      const dir = path.join(work, name);
      mkdirSync(dir, { recursive: true });
      cpSync(models.qwen2, dir, { recursive: true });
      mutate(dir);
      const r = spawnSync(infer, ['generate', '--model', dir, '--ids', '1,2', '--max-tokens', '2'], { encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      return r.stderr;
    };
    const st = (dir) => path.join(dir, 'model.safetensors');
    const truncated = broken('truncated', (d) => writeFileSync(st(d), readFileSync(st(d)).subarray(0, 100000)));
    assert.match(truncated, /model\.safetensors: tensor `[^`]+` lies past the end of the file \(truncated\?\)/);
    const tiny = broken('tiny', (d) => writeFileSync(st(d), Buffer.from([1, 2, 3])));
    assert.match(tiny, /truncated/);
    const badHeader = broken('header', (d) => {
      const b = readFileSync(st(d));
      b.write('!!!!', 8);
      writeFileSync(st(d), b);
    });
    assert.match(badHeader, /the header is not a JSON object/);
    const shape = broken('shape', (d) => {
      const config = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
      config.intermediate_size += 1;
      writeFileSync(path.join(d, 'config.json'), JSON.stringify(config));
    });
    assert.match(shape, /tensor `model\.layers\.0\.mlp\.gate_proj\.weight` has shape \[160, 64\], expected \[161, 64\]/);
    const missing = broken('missing', (d) => {
      const config = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
      config.tie_word_embeddings = false;
      writeFileSync(path.join(d, 'config.json'), JSON.stringify(config));
    });
    assert.match(missing, /tensor `lm_head\.weight` is missing/);
    const arch = broken('arch', (d) => {
      const config = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
      config.architectures = ['MistralForCausalLM'];
      writeFileSync(path.join(d, 'config.json'), JSON.stringify(config));
    });
    assert.match(arch, /architecture `MistralForCausalLM` is not supported/);
    // Sharded: an index naming the shards loads the same model.
    const sharded = path.join(work, 'sharded');
    cpSync(models.qwen2, sharded, { recursive: true });
    const shard = path.join(sharded, 'model-00001-of-00001.safetensors');
    renameSync(st(sharded), shard);
    const bytes = readFileSync(shard);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    const weightMap = Object.fromEntries(Object.keys(header).map((n) => [n, path.basename(shard)]));
    writeFileSync(path.join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    const a = execFileSync(infer, ['generate', '--model', sharded, '--ids', '1,2', '--max-tokens', '4'], { encoding: 'utf8' });
    const b = execFileSync(infer, ['generate', '--model', models.qwen2, '--ids', '1,2', '--max-tokens', '4'], { encoding: 'utf8' });
    assert.equal(a, b);
  });
});
