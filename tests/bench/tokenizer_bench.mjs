// Tokenizer benchmark (make bench): on the same generated corpus, in the same run, single
// thread, Tollgate's encode and count against the `tiktoken` npm package (WASM build of OpenAI's
// Rust core) and `gpt-tokenizer`, for cl100k_base and o200k_base. Prints MB/s, tokens/s and the
// ratios (medians of --rounds passes), and the median time Tollgate takes to count a chat
// prompt of about 1,000 tokens.
//   node tests/bench/tokenizer_bench.mjs [--rounds N] [--mb MB]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { get_encoding } from 'tiktoken';
import * as gptCl100k from 'gpt-tokenizer/encoding/cl100k_base';
import * as gptO200k from 'gpt-tokenizer/encoding/o200k_base';
import { binDir } from '../lib/harness.mjs';
import { makeCorpus } from '../lib/corpus.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const rounds = opt('--rounds', 5);
const mb = opt('--mb', 5);
const dataDir = process.env.TOLLGATE_TOKENIZER_DIR ?? new URL('../../.cache/tokenizers', import.meta.url).pathname;

const corpus = makeCorpus({ bytes: mb * 1024 * 1024 });
const bytes = corpus.reduce((a, s) => a + Buffer.byteLength(s), 0);
const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-tokbench-'));
const corpusFile = path.join(dir, 'corpus.jsonl');
writeFileSync(corpusFile, corpus.map((s) => JSON.stringify(s)).join('\n') + '\n');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function timeJs(fn) {
  const times = [];
  let tokens = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    tokens = 0;
    for (const s of corpus) tokens += fn(s);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { s: median(times), tokens };
}

const row = (name, s, tokens) => ({ name, mbps: bytes / 1048576 / s, tokensPerS: tokens / s, s });
const fmt = (r, base) => `  ${r.name.padEnd(28)} ${r.mbps.toFixed(1).padStart(7)} MB/s ${(r.tokensPerS / 1e6).toFixed(2).padStart(6)} M tokens/s` +
  (base ? `   ${(base.s / r.s).toFixed(2)}x tiktoken` : '');

console.log(`corpus: ${corpus.length} samples, ${(bytes / 1048576).toFixed(2)} MB (generated: prose, code, many scripts, emoji, whitespace runs); ${rounds} rounds, medians`);
for (const [encoding, gpt] of [['cl100k_base', gptCl100k], ['o200k_base', gptO200k]]) {
  const enc = get_encoding(encoding);
  const tik = timeJs((s) => enc.encode_ordinary(s).length);
  enc.free();
  const gptEncode = timeJs((s) => gpt.encode(s, { allowedSpecial: new Set(), disallowedSpecial: new Set() }).length);
  const gptCount = timeJs((s) => gpt.countTokens(s));
  const r = spawnSync(path.join(binDir, 'tollgate-tokenizer-bench'),
    ['--data-dir', dataDir, '--corpus', corpusFile, '--encoding', encoding, '--rounds', String(rounds)]);
  if (r.status !== 0) throw new Error(`tollgate-tokenizer-bench failed: ${r.stderr}`);
  const t = JSON.parse(r.stdout.toString());
  if (t.tokens !== tik.tokens) throw new Error(`${encoding}: Tollgate counted ${t.tokens} tokens, tiktoken ${tik.tokens}`);
  const base = row('tiktoken (npm, WASM)', tik.s, tik.tokens);
  const rows = [base, row('gpt-tokenizer encode', gptEncode.s, gptEncode.tokens), row('gpt-tokenizer countTokens', gptCount.s, gptCount.tokens),
    row('Tollgate encode', t.encode_s, t.tokens), row('Tollgate count', t.count_s, t.tokens)];
  console.log(`${encoding}: ${t.tokens} tokens`);
  for (const x of rows) console.log(fmt(x, x === base ? null : base));
  console.log(`  Tollgate vs gpt-tokenizer: encode ${(gptEncode.s / t.encode_s).toFixed(2)}x, count ${(gptCount.s / t.count_s).toFixed(2)}x`);
  console.log(`  Tollgate: ${t.chat_prompt_tokens}-token chat prompt counted in ${t.chat_count_us.toFixed(1)} µs median (${t.chat_parse_count_us.toFixed(1)} µs with JSON parsing); tokenizer load ${t.load_s.toFixed(2)} s`);
}
