// End-to-end: the official `openai` npm client and curl against the real gateway in front of the
// development upstream, checking what a user of those clients sees.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { startStack, sseData } from '../lib/harness.mjs';

describe('openai npm client', () => {
  let s;
  let client;
  before(async () => {
    s = await startStack();
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused-without-a-database', maxRetries: 0 });
  });
  after(async () => s && s.stop());

  test('non-streaming chat completion', async () => {
    const res = await client.chat.completions.create({
      model: 'dev-echo', messages: [{ role: 'user', content: 'hello from the client' }],
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0].message.content, 'Echo: hello from the client');
    assert.equal(res.usage.completion_tokens, 5);
    assert.ok(res.usage.prompt_tokens > 0);
  });

  test('withResponse exposes the x-request-id that the usage record carries', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'dev-echo', messages: [{ role: 'user', content: 'id please' }] })
      .withResponse();
    const id = response.headers.get('x-request-id');
    assert.match(id, /^req_/);
    const rec = await s.usageFor(id);
    assert.equal(rec.completion_tokens, data.usage.completion_tokens);
    assert.equal(rec.prompt_tokens, data.usage.prompt_tokens);
  });

  test('streaming without stream_options: content arrives, no usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'dev-echo', stream: true, messages: [{ role: 'user', content: 'a b c' }],
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      assert.ok(chunk.choices.length > 0, 'every chunk has a choice');
      assert.ok(chunk.usage === undefined || chunk.usage === null);
      text += chunk.choices[0].delta?.content ?? '';
    }
    assert.equal(text, 'Echo: a b c');
    assert.equal(chunks, 1 + 4 + 1);
  });

  test('streaming with include_usage: the last chunk carries usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'dev-echo', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'x y' }],
    });
    let last;
    for await (const chunk of stream) last = chunk;
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 3);
  });

  test('legacy completions', async () => {
    const res = await client.completions.create({ model: 'dev-echo', prompt: 'legacy prompt' });
    assert.equal(res.choices[0].text, 'Echo: legacy prompt');
  });

  test('models.list', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['dev-echo']);
  });

  test('errors surface as typed client errors', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found');
    await assert.rejects(
      client.chat.completions.create({ model: 'dev-echo', messages: [] }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === 'empty_array' && e.param === 'messages');
    await assert.rejects(
      client.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'tg:fail=500' }] }),
      (e) => e instanceof OpenAI.InternalServerError && e.status === 500);
  });

  test('an upstream dying mid-stream raises an APIError in the client', async () => {
    const stream = await client.chat.completions.create({
      model: 'dev-echo', stream: true, messages: [{ role: 'user', content: 'tg:die_after=2 tg:tokens=9' }],
    });
    await assert.rejects(async () => { for await (const _ of stream) { /* drain */ } },
      (e) => e instanceof OpenAI.APIError && /unavailable|closed/i.test(e.message));
  });
});

describe('curl', () => {
  let s;
  before(async () => { s = await startStack(); });
  after(async () => s && s.stop());

  const curl = (...args) => execFileSync('curl', ['-sS', ...args], { encoding: 'utf8' });

  test('a chat request, as the README shows it', () => {
    const out = curl(`${s.url}/v1/chat/completions`, '-H', 'Content-Type: application/json',
      '-d', '{"model":"dev-echo","messages":[{"role":"user","content":"Hello!"}]}');
    assert.equal(JSON.parse(out).choices[0].message.content, 'Echo: Hello!');
  });

  test('a streamed request with curl -N', () => {
    const out = curl('-N', `${s.url}/v1/chat/completions`, '-H', 'Content-Type: application/json',
      '-d', '{"model":"dev-echo","stream":true,"messages":[{"role":"user","content":"Hi"}]}');
    const events = sseData(out);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(events.slice(0, -1).map((e) => JSON.parse(e).choices[0].delta.content ?? '').join(''), 'Echo: Hi');
  });

  test('a large body sent with Expect: 100-continue is answered 100 Continue', () => {
    const body = JSON.stringify({ model: 'dev-echo', messages: [{ role: 'user', content: 'word '.repeat(100000) }] });
    const run = spawnSync('curl', ['-sS', '-v', `${s.url}/v1/chat/completions`, '-H', 'Content-Type: application/json',
      '-H', 'Expect: 100-continue', '--data-binary', '@-'], { input: body, encoding: 'utf8', maxBuffer: 1 << 24 });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /< HTTP\/1\.1 100 Continue/);
    assert.equal(JSON.parse(run.stdout).usage.completion_tokens, 100001);
  });
});
