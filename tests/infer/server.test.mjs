// tollgate-infer's server on a tiny generated Llama: the OpenAI endpoints, sampling (seeds,
// stop strings, max_tokens), continuous batching (concurrent sequences give the tokens they give
// alone), cancellation, errors; then behind the gateway with the official `openai` client,
// where the gateway's prompt count must equal the engine's usage, streaming or not.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { binDir, freePort, startProcess, startStack, waitFor, sleep } from '../lib/harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const infer = path.join(binDir, 'tollgate-infer');

async function post(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}
// Usage without the prefix cache's count (a repeated prompt reuses cached blocks: a request's
// cached_tokens depends on what ran before it; tests/infer/prefix_cache.test.mjs checks it).
const counts = ({ prompt_tokens, completion_tokens, total_tokens }) => ({ prompt_tokens, completion_tokens, total_tokens });
const metric = async (base, name) => Number((await (await fetch(`${base}/metrics`)).text())
  .split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);

describe('tollgate-infer serve (a tiny generated Llama)', () => {
  let server;
  let base;
  let model;
  const chat = (content, extra = {}) => post(`${base}/v1/chat/completions`,
    { model: 'tiny-llama', messages: [{ role: 'user', content }], max_tokens: 12, ...extra });
  before(async () => {
    model = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-serve-')), 'tiny-llama');
    execFileSync(infer, ['make-model', '--preset', 'tiny', '--tokenizer', path.join(root, '.cache/tokenizers/llama3.tokenizer.json'), '--out', model]);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = startProcess(infer, ['serve', '--model', model, '--name', 'tiny-llama', '--listen', `127.0.0.1:${port}`, '--max-sequences', '3']);
    await waitFor(async () => (await fetch(`${base}/health`).catch(() => ({ ok: false }))).ok, { what: 'tollgate-infer ready' });
  });
  after(async () => { await server?.stop(); });

  test('models, health, tokenize; usage is the rendered prompt and the generated tokens', async () => {
    const models = await (await fetch(`${base}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny-llama']);
    const tok = await post(`${base}/tokenize`, { messages: [{ role: 'user', content: 'Hello there' }] });
    assert.equal(tok.status, 200);
    // Llama 3's template: <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>
    // <|start_header_id|>assistant<|end_header_id|>\n\n
    assert.deepEqual(tok.json.tokens.slice(0, 5), [128000, 128006, 882, 128007, 271]);
    const r = await chat('Hello there', { max_tokens: 7, temperature: 0 });
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.usage.prompt_tokens, tok.json.count);
    assert.ok(r.json.usage.completion_tokens >= 1 && r.json.usage.completion_tokens <= 7);
    assert.equal(r.json.usage.total_tokens, r.json.usage.prompt_tokens + r.json.usage.completion_tokens);
    if (r.json.choices[0].finish_reason === 'length') assert.equal(r.json.usage.completion_tokens, 7);
    const text = await post(`${base}/v1/completions`, { model: 'tiny-llama', prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    assert.equal(text.status, 200);
    assert.equal(text.json.object, 'text_completion');
    assert.equal(text.json.usage.prompt_tokens, 4);
  });

  test('the same seed gives the same tokens; greedy is repeatable', async () => {
    const a = await chat('Tell me a story', { temperature: 0.9, top_p: 0.95, top_k: 50, seed: 42 });
    const b = await chat('Tell me a story', { temperature: 0.9, top_p: 0.95, top_k: 50, seed: 42 });
    assert.equal(a.json.choices[0].message.content, b.json.choices[0].message.content);
    // And the seed is what decides: other seeds give other tokens (an engine that ignored the
    // seed and sampled from a fixed state would pass the check above).
    const others = await Promise.all([43, 44, 45].map((seed) =>
      chat('Tell me a story', { temperature: 0.9, top_p: 0.95, top_k: 50, seed })));
    const texts = new Set([a, ...others].map((r) => r.json.choices[0].message.content));
    assert.ok(texts.size >= 3, `4 seeds gave ${texts.size} different texts`);
    const g1 = await chat('Tell me a story', { temperature: 0 });
    const g2 = await chat('Tell me a story', { temperature: 0 });
    assert.equal(g1.json.choices[0].message.content, g2.json.choices[0].message.content);
  });

  test('continuous batching: concurrent sequences give the tokens each gives alone', async () => {
    const asks = Array.from({ length: 7 }, (_, i) => [`prompt number ${i} ${'x '.repeat(i * 9)}`, { seed: 100 + i, max_tokens: 10 + i }]);
    const alone = [];
    for (const [c, e] of asks) alone.push((await chat(c, e)).json);
    const together = await Promise.all(asks.map(([c, e]) => chat(c, e)));
    for (let i = 0; i < asks.length; i += 1) {
      assert.equal(together[i].json.choices[0].message.content, alone[i].choices[0].message.content, `request ${i}`);
      assert.deepEqual(counts(together[i].json.usage), counts(alone[i].usage));
    }
  });

  test('stop strings end the text where they begin; max_tokens ends it with length', async () => {
    const free = await chat('Count with me', { temperature: 0, max_tokens: 24 });
    const content = free.json.choices[0].message.content;
    assert.equal(free.json.choices[0].finish_reason, 'length');
    assert.equal(free.json.usage.completion_tokens, 24);
    // Two ASCII letters from the text (JavaScript slices could split a multi-byte character).
    const stop = content.slice(4).match(/[A-Za-z]{2}/)?.[0];
    assert.ok(stop, `no two letters in ${JSON.stringify(content)}`);
    const cut = await chat('Count with me', { temperature: 0, max_tokens: 24, stop: [stop] });
    assert.equal(cut.json.choices[0].finish_reason, 'stop');
    assert.equal(cut.json.choices[0].message.content, content.slice(0, content.indexOf(stop)));
    // Streaming gives the same text and, asked for, the same usage.
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'user', content: 'Count with me' }], temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true } }),
    });
    const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), content);
    assert.deepEqual(counts(chunks.at(-1).usage), counts(free.json.usage));
    assert.equal(typeof chunks.at(-1).usage.prompt_tokens_details.cached_tokens, 'number');
  });

  // Greedy decoding of `content` runs for `n` tokens without stopping by itself, so a cut
  // sequence that ends before `n` tokens was ended by its cancellation.
  const runsToLength = async (content, n) => {
    const r = await chat(content, { temperature: 0, max_tokens: n });
    assert.equal(r.json.choices[0].finish_reason, 'length', `${content}: stops by itself`);
    assert.equal(r.json.usage.completion_tokens, n);
  };

  test('a client that goes away cancels its sequence', async () => {
    await runsToLength('go on and on', 400);
    const before = await metric(base, 'tollgate_infer_generated_tokens_total');
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'user', content: 'go on and on' }], max_tokens: 4000, temperature: 0, stream: true }),
    });
    const reader = res.body.getReader();
    await reader.read();
    // The first chunk can come before the scheduler admits the sequence: wait until it runs,
    // so that "no sequence running" below means it was dropped, not that it has not started.
    await waitFor(async () => (await metric(base, 'tollgate_infer_generated_tokens_total')) > before,
      { what: 'the sequence generating' });
    controller.abort();
    await waitFor(async () => (await metric(base, 'tollgate_infer_sequences_running')) === 0
      && (await metric(base, 'tollgate_infer_sequences_queued')) === 0, { what: 'the sequence dropped' });
    const generated = (await metric(base, 'tollgate_infer_generated_tokens_total')) - before;
    await sleep(300);
    assert.equal(await metric(base, 'tollgate_infer_generated_tokens_total') - before, generated, 'generation stopped');
    assert.ok(generated > 0 && generated < 400, `${generated} tokens generated`);
    assert.equal(await metric(base, 'tollgate_infer_kv_blocks_in_use'), 0, 'its cache blocks are free');
  });

  test('cancellation under load: a stream cut mid-way gives its blocks back, the others finish unchanged', async () => {
    const steady = (content) => chat(content, { max_tokens: 120, temperature: 0 });
    await runsToLength('cut me off', 400);
    const alone = await steady('a steady request');
    const before = await metric(base, 'tollgate_infer_generated_tokens_total');
    const controller = new AbortController();
    const cut = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'user', content: 'cut me off' }], max_tokens: 3000, temperature: 0, stream: true }),
    });
    const reader = cut.body.getReader();
    await reader.read();
    const survivors = Promise.all([steady('a steady request'), steady('another steady request')]);
    await waitFor(async () => (await metric(base, 'tollgate_infer_sequences_running')) === 3, { what: 'three sequences running' });
    controller.abort();
    const [same, other] = await survivors;
    assert.deepEqual(same.json.choices, alone.json.choices, 'a survivor gives what it gives alone');
    assert.equal(other.status, 200);
    await waitFor(async () => (await metric(base, 'tollgate_infer_sequences_running')) === 0, { what: 'all sequences done' });
    assert.equal(await metric(base, 'tollgate_infer_kv_blocks_in_use'), 0, 'every block given back');
    // The cut sequence ended at its cancellation, well before it would have stopped by itself.
    const cutTokens = (await metric(base, 'tollgate_infer_generated_tokens_total')) - before
      - same.json.usage.completion_tokens - other.json.usage.completion_tokens;
    assert.ok(cutTokens > 0 && cutTokens < 400, `the cut sequence generated ${cutTokens} tokens`);
  });

  test('a full key/value cache queues sequences instead of failing them, and refuses what can never fit', async () => {
    const port = await freePort();
    const small = `http://127.0.0.1:${port}`;
    // 40 blocks of 16 positions: two requests of about 265 positions (17 blocks) fit at once.
    const proc = startProcess(infer, ['serve', '--model', model, '--name', 'tiny-llama', '--listen', `127.0.0.1:${port}`,
      '--max-sequences', '8', '--kv-blocks', '40']);
    try {
      await waitFor(async () => (await fetch(`${small}/health`).catch(() => ({ ok: false }))).ok, { what: 'the small server' });
      assert.equal(await metric(small, 'tollgate_infer_kv_blocks_total'), 40);
      const ask = (content, max_tokens) => post(`${small}/v1/chat/completions`,
        { model: 'tiny-llama', messages: [{ role: 'user', content }], max_tokens, temperature: 0 });
      const never = await ask('too long for this cache', 1000);
      assert.equal(never.status, 400);
      assert.equal(never.json.error.code, 'context_length_exceeded');
      assert.match(never.json.error.message, /key\/value cache/);

      let done = false;
      const most = { running: 0, queued: 0, blocks: 0 };
      const watching = (async () => {
        while (!done) {
          most.running = Math.max(most.running, await metric(small, 'tollgate_infer_sequences_running'));
          most.queued = Math.max(most.queued, await metric(small, 'tollgate_infer_sequences_queued'));
          most.blocks = Math.max(most.blocks, await metric(small, 'tollgate_infer_kv_blocks_in_use'));
          await sleep(10);
        }
      })();
      const together = await Promise.all([0, 1, 2, 3, 4].map((i) => ask(`queued request ${i}`, 250)));
      done = true;
      await watching;
      for (const r of together) {
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.ok(r.json.usage.completion_tokens === 250 || r.json.choices[0].finish_reason === 'stop');
      }
      assert.equal(most.running, 2, 'two sequences at a time');
      assert.ok(most.queued >= 1, 'the others waited in the queue');
      assert.ok(most.blocks > 0 && most.blocks <= 40, `${most.blocks} blocks in use at most`);
      assert.equal(await metric(small, 'tollgate_infer_kv_blocks_in_use'), 0, 'every block given back');
      // A queued request gives what it gives alone.
      assert.deepEqual((await ask('queued request 4', 250)).json.choices, together[4].json.choices);
    } finally {
      await proc.stop();
    }
  });

  test('bad requests get OpenAI-shaped errors', async () => {
    const unknown = await post(`${base}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'model_not_found');
    const long = await chat('x', { max_tokens: 5000 });
    assert.equal(long.status, 400);
    assert.equal(long.json.error.code, 'context_length_exceeded');
    for (const bad of [{ messages: [] }, { messages: 'hi' }, { temperature: 3 }, { top_p: -1 }, { n: 2 }, { stop: [1] }, { seed: 1.5 }]) {
      const r = await post(`${base}/v1/chat/completions`, { model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], ...bad });
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.ok(r.json.error.message);
    }
    assert.equal((await fetch(`${base}/v1/chat/completions`)).status, 405);
    assert.equal((await fetch(`${base}/v2/nothing`)).status, 404);
  });

  test('behind the gateway: the gateway counts exactly the usage the engine reports', async () => {
    const stack = await startStack({
      config: {
        upstreams: { infer: { base_url: `${base}/v1` } },
        models: { 'tiny-llama': { upstream: 'infer', tokenizer: 'llama3', prompt_format: 'llama3' } },
      },
    });
    try {
      const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name three colours, please.' }];
      const whole = await client.chat.completions.create({ model: 'tiny-llama', messages, max_tokens: 9, seed: 5 });
      const stream = await client.chat.completions.create({ model: 'tiny-llama', messages, max_tokens: 9, seed: 5, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let usage;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(text, whole.choices[0].message.content);
      assert.deepEqual(counts(usage), counts(whole.usage));
      const completion = await client.completions.create({ model: 'tiny-llama', prompt: 'The quick brown fox', max_tokens: 6 });
      await waitFor(() => stack.usageRecords().length >= 3, { what: 'three usage records' });
      const records = stack.usageRecords();
      const reported = [whole.usage, usage, completion.usage];
      for (const [i, r] of records.slice(0, 3).entries()) {
        assert.equal(r.usage_reported, true);
        assert.equal(r.estimated, false);
        assert.equal(r.counted_prompt_tokens, r.prompt_tokens, `record ${i}: the gateway's count equals the engine's`);
        assert.equal(r.prompt_tokens, reported[i].prompt_tokens);
        assert.equal(r.completion_tokens, reported[i].completion_tokens);
      }
    } finally {
      await stack.stop();
    }
  });
});
