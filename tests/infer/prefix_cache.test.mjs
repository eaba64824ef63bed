// tollgate-infer's prefix cache on a tiny generated Llama: a server with the cache (the default)
// against one started with `--prefix-cache off`. At temperature 0 both give the same text and
// token counts for every request, and the cached server reports in
// usage.prompt_tokens_details.cached_tokens exactly the prompt positions it reused: whole
// blocks of 16 of the longest prefix some earlier request computed, never the prompt's last
// position (chat and completions, whole and streamed, prompts that diverge mid-block). Then:
// cancellation gives references back, least-recently-used eviction in a small cache, the cap
// on cached blocks, and the gateway billing a repeated system prompt at the cached rate
// (ledger row, cost header, invoice lines) against a real PostgreSQL.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { binDir, freePort, startProcess, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, api, makeTenant } from '../lib/ledger.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const infer = path.join(binDir, 'tollgate-infer');
const block = 16;

async function post(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json(), headers: res.headers };
}
const metric = async (base, name) => Number((await (await fetch(`${base}/metrics`)).text())
  .split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);

async function serve(model, extra = []) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const proc = startProcess(infer, ['serve', '--model', model, '--name', 'tiny-llama', '--listen', `127.0.0.1:${port}`,
    '--max-sequences', '4', '--kv-block-size', String(block), ...extra]);
  await waitFor(async () => (await fetch(`${base}/health`).catch(() => ({ ok: false }))).ok, { what: 'tollgate-infer ready' });
  return { base, proc };
}

// A long system prompt (a few hundred tokens) shared by requests.
const system = Array.from({ length: 40 }, (_, i) => `Rule ${i}: answer in at most ${i + 3} words.`).join(' ');
const messages = (user) => [{ role: 'system', content: system }, { role: 'user', content: user }];

// The positions a request may reuse after `earlier` prompts ran: whole blocks of the longest
// common prefix with one of them, never the prompt's last position.
function expectedCached(ids, earlier) {
  let best = 0;
  for (const e of earlier) {
    let n = 0;
    while (n < ids.length && n < e.length && ids[n] === e[n]) n += 1;
    best = Math.max(best, n);
  }
  return Math.floor(Math.min(best, ids.length - 1) / block) * block;
}

async function streamed(base, endpoint, body) {
  const res = await fetch(`${base}${endpoint}`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? c.choices[0]?.text ?? '').join('');
  return { text, usage: chunks.at(-1).usage };
}

describe('tollgate-infer: the prefix cache', () => {
  let model;
  let on;
  let off;
  before(async () => {
    model = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-prefix-')), 'tiny-llama');
    execFileSync(infer, ['make-model', '--preset', 'tiny', '--tokenizer', path.join(root, '.cache/tokenizers/llama3.tokenizer.json'), '--out', model]);
    [on, off] = await Promise.all([serve(model), serve(model, ['--prefix-cache', 'off'])]);
  });
  after(async () => { await Promise.all([on?.proc.stop(), off?.proc.stop()]); });

  test('the same tokens as without the cache, and cached_tokens exactly the positions reused', async (t) => {
    const tokenize = async (body) => (await post(`${on.base}/tokenize`, body)).json.tokens;
    const seen = [];  // every prompt the cached server has run, in order
    const check = async (label, endpoint, body, ids) => {
      const want = expectedCached(ids, seen);
      const a = await post(`${on.base}${endpoint}`, body);
      const b = await post(`${off.base}${endpoint}`, body);
      assert.equal(a.status, 200, JSON.stringify(a.json));
      const text = (r) => r.json.choices[0].message?.content ?? r.json.choices[0].text;
      assert.equal(text(a), text(b), `${label}: the same text`);
      assert.equal(a.json.usage.prompt_tokens, ids.length);
      assert.equal(a.json.usage.completion_tokens, b.json.usage.completion_tokens);
      assert.equal(b.json.usage.prompt_tokens_details.cached_tokens, 0, `${label}: nothing cached when off`);
      assert.equal(a.json.usage.prompt_tokens_details.cached_tokens, want, `${label}: cached tokens`);
      seen.push(ids);
      return { want, text: text(a), usage: a.json.usage };
    };
    const chat = (user, extra = {}) => ({ model: 'tiny-llama', messages: messages(user), max_tokens: 8, temperature: 0, ...extra });
    const first = await tokenize({ messages: messages('What is rule 7?') });
    assert.ok(first.length > 300, `${first.length} prompt tokens`);
    const cold = await check('first', '/v1/chat/completions', chat('What is rule 7?'), first);
    assert.equal(cold.want, 0);
    // The same prompt again: every whole block but the one holding the last position.
    const again = await check('repeat', '/v1/chat/completions', chat('What is rule 7?'), first);
    assert.equal(again.want, Math.floor((first.length - 1) / block) * block);
    // Another user message: the system prompt's blocks, up to the block where they diverge.
    const otherIds = await tokenize({ messages: messages('And rule 12?') });
    const other = await check('other question', '/v1/chat/completions', chat('And rule 12?'), otherIds);
    assert.ok(other.want > 0 && other.want < otherIds.length - 1);
    let common = 0;
    while (otherIds[common] === first[common]) common += 1;
    assert.notEqual(common % block, 0, 'the prompts diverge in the middle of a block');
    assert.equal(other.want, Math.floor(common / block) * block);
    t.diagnostic(`${first.length}-token prompt: ${again.want} reused on repeat; another question diverging at ${common}: ${other.want} reused`);

    // Streamed: the same text and usage (cached tokens included) as the whole answer.
    const s = await streamed(on.base, '/v1/chat/completions', chat('And rule 12?'));
    assert.equal(s.text, other.text);
    assert.deepEqual(s.usage, { ...other.usage, prompt_tokens_details: { cached_tokens: Math.floor((otherIds.length - 1) / block) * block } });
    seen.push(otherIds);

    // Completions: token ids as given, 64 of them (a whole number of blocks: the last block is
    // computed again), then text sharing them; whole and streamed.
    const ids = Array.from({ length: 64 }, (_, i) => 1000 + ((i * 7919) % 90000));
    const text = (prompt) => ({ model: 'tiny-llama', prompt, max_tokens: 6, temperature: 0 });
    await check('ids, first', '/v1/completions', text(ids), ids);
    const repeat = await check('ids, repeat', '/v1/completions', text(ids), ids);
    assert.equal(repeat.want, 48);
    const longer = [...ids, 5, 6, 7];
    const more = await check('ids, longer', '/v1/completions', text(longer), longer);
    assert.equal(more.want, 64);
    const st = await streamed(on.base, '/v1/completions', text(longer));
    assert.equal(st.text, more.text);
    assert.equal(st.usage.prompt_tokens_details.cached_tokens, 64);
    const words = 'The quick brown fox jumps over the lazy dog. '.repeat(8);
    const wordIds = await tokenize({ prompt: words });
    await check('text, first', '/v1/completions', text(words), wordIds);
    await check('text, repeat', '/v1/completions', text(words), wordIds);

    // Every reference given back; the cached blocks kept; the counter adds up the reuse.
    await waitFor(async () => (await metric(on.base, 'tollgate_infer_sequences_running')) === 0, { what: 'idle' });
    assert.equal(await metric(on.base, 'tollgate_infer_kv_blocks_in_use'), 0);
    assert.ok(await metric(on.base, 'tollgate_infer_kv_blocks_cached') > 0);
    assert.equal(await metric(off.base, 'tollgate_infer_kv_blocks_cached'), 0);
    assert.equal(await metric(off.base, 'tollgate_infer_prompt_tokens_cached_total'), 0);
    const cachedTotal = await metric(on.base, 'tollgate_infer_prompt_tokens_cached_total');
    const runTotal = await metric(on.base, 'tollgate_infer_prompt_tokens_total');
    assert.equal(cachedTotal + runTotal, await metric(off.base, 'tollgate_infer_prompt_tokens_total') + otherIds.length + longer.length,
      'cached + computed = all prompt positions (the cache-off server did not see the two streamed requests)');
  });

  test('concurrent requests sharing a prefix, and a cancelled one, give their references back', async () => {
    const ask = (base, user) => post(`${base}/v1/chat/completions`, { model: 'tiny-llama', messages: messages(user), max_tokens: 30, temperature: 0 });
    const users = ['one', 'two', 'three', 'four', 'five', 'six'];
    const controller = new AbortController();
    const cut = await fetch(`${on.base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: 'tiny-llama', messages: messages('go on'), max_tokens: 2000, temperature: 0, stream: true }),
    });
    const reader = cut.body.getReader();
    const generated = await metric(on.base, 'tollgate_infer_generated_tokens_total');
    // Its prompt read (and published) once it has generated a token.
    await waitFor(async () => (await metric(on.base, 'tollgate_infer_generated_tokens_total')) > generated, { what: 'the first token' });
    const together = Promise.all(users.map((u) => ask(on.base, u)));
    controller.abort();
    const got = await together;
    for (const [i, r] of got.entries()) {
      const alone = await ask(off.base, users[i]);
      assert.equal(r.json.choices[0].message.content, alone.json.choices[0].message.content, users[i]);
      assert.ok(r.json.usage.prompt_tokens_details.cached_tokens >= block * 10, `${users[i]}: the system prompt reused`);
    }
    await waitFor(async () => (await metric(on.base, 'tollgate_infer_sequences_running')) === 0, { what: 'all sequences done' });
    assert.equal(await metric(on.base, 'tollgate_infer_kv_blocks_in_use'), 0, 'every reference given back');
  });

  test('a small cache evicts the least recently used blocks, never those in use; a cap on cached blocks', async (t) => {
    // 40 blocks of 16: two prompts of about 330 positions (21 blocks each) cannot both stay.
    const small = await serve(model, ['--kv-blocks', '40']);
    const capped = await serve(model, ['--prefix-cache-blocks', '5']);
    try {
      const ask = (base, user) => post(`${base}/v1/chat/completions`, { model: 'tiny-llama', messages: messages(user), max_tokens: 4, temperature: 0 });
      const differently = (user) => [{ role: 'system', content: `Other: ${system}` }, { role: 'user', content: user }];
      const a1 = await ask(small.base, 'A');
      const b1 = await post(`${small.base}/v1/chat/completions`, { model: 'tiny-llama', messages: differently('B'), max_tokens: 4, temperature: 0 });
      assert.equal(b1.json.usage.prompt_tokens_details.cached_tokens, 0);
      assert.ok(await metric(small.base, 'tollgate_infer_kv_blocks_evicted_total') > 0, 'A\'s blocks made room for B');
      // B (most recent) is whole; A lost the blocks evicted (its tail first).
      const b2 = await post(`${small.base}/v1/chat/completions`, { model: 'tiny-llama', messages: differently('B'), max_tokens: 4, temperature: 0 });
      assert.equal(b2.json.usage.prompt_tokens_details.cached_tokens, Math.floor((b1.json.usage.prompt_tokens - 1) / block) * block);
      assert.equal(b2.json.choices[0].message.content, b1.json.choices[0].message.content);
      const a2 = await ask(small.base, 'A');
      assert.ok(a2.json.usage.prompt_tokens_details.cached_tokens < a1.json.usage.prompt_tokens - block,
        `A reused ${a2.json.usage.prompt_tokens_details.cached_tokens} of ${a1.json.usage.prompt_tokens}`);
      assert.equal(a2.json.choices[0].message.content, a1.json.choices[0].message.content);
      t.diagnostic(`A ${a1.json.usage.prompt_tokens} and B ${b1.json.usage.prompt_tokens} positions in 40 blocks: B again reused ${b2.json.usage.prompt_tokens_details.cached_tokens}, A again ${a2.json.usage.prompt_tokens_details.cached_tokens}`);
      await waitFor(async () => (await metric(small.base, 'tollgate_infer_kv_blocks_in_use')) === 0, { what: 'every reference given back' });

      await ask(capped.base, 'A');
      await waitFor(async () => (await metric(capped.base, 'tollgate_infer_kv_blocks_cached')) === 5, { what: 'five cached blocks' });
      const again = await ask(capped.base, 'A');
      assert.equal(again.json.usage.prompt_tokens_details.cached_tokens, 5 * block, 'the first five blocks kept');
    } finally {
      await Promise.all([small.proc.stop(), capped.proc.stop()]);
    }
  });

  test('behind the gateway, a repeated system prompt is billed at the cached rate', async (ctx) => {
    const pg = await startPostgres();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-prefix-bill-'));
    const stack = await startStack({
      config: {
        ...dbConfig(pg, dir),
        upstreams: { infer: { base_url: `${on.base}/v1` } },
        models: { 'tiny-llama': { upstream: 'infer', tokenizer: 'llama3', prompt_format: 'llama3' } },
      },
    });
    try {
      const t = await makeTenant(stack.adminUrl, 'Cached');
      // Per token: input 4 micro-units, cached input 1, output 8 (one tier each: exact).
      const book = await api(stack.adminUrl, 'POST', '/admin/v1/price_books', {
        body: { name: 'Cached', currency: 'USD', effective_at: 1_700_000_000,
          models: { 'tiny-llama': { input: [{ rate: '4000000' }], cached_input: [{ rate: '1000000' }], output: [{ rate: '8000000' }] } } },
      });
      assert.equal(book.status, 201, book.text);
      assert.equal((await api(stack.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
      const billing = `Billing desk. ${system}`;  // a system prompt no earlier request used
      const send = async (user) => {
        const res = await fetch(`${stack.url}/v1/chat/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
          body: JSON.stringify({ model: 'tiny-llama', messages: [{ role: 'system', content: billing }, { role: 'user', content: user }], max_tokens: 5, temperature: 0 }),
        });
        assert.equal(res.status, 200);
        return { json: await res.json(), cost: Number(res.headers.get('x-tollgate-cost-micros')), id: res.headers.get('x-request-id') };
      };
      const first = await send('first question');
      const second = await send('second question');
      const cached = second.json.usage.prompt_tokens_details.cached_tokens;
      assert.equal(first.json.usage.prompt_tokens_details.cached_tokens, 0);
      assert.ok(cached >= 320, `${cached} cached tokens`);
      const price = (u, c) => 4 * (u.prompt_tokens - c) + 1 * c + 8 * u.completion_tokens;
      assert.equal(first.cost, price(first.json.usage, 0), 'the cost header: all input at the input rate');
      assert.equal(second.cost, price(second.json.usage, cached), 'the cost header: the cached tokens at the cached rate');
      assert.ok(second.cost < first.cost);
      ctx.diagnostic(`costs ${first.cost} then ${second.cost} micro-units (${cached} of ${second.json.usage.prompt_tokens} prompt tokens cached)`);

      // Streamed with the official client: the same reuse reaches the ledger.
      const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: t.key, maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'system', content: billing }, { role: 'user', content: 'third question' }],
        max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
      let streamedUsage;
      for await (const chunk of stream) if (chunk.usage) streamedUsage = chunk.usage;
      const thirdCached = streamedUsage.prompt_tokens_details.cached_tokens;
      assert.ok(thirdCached >= 320);

      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 3, { what: 'ledger rows' });
      const rows = pg.query(`SELECT request_id, prompt_tokens, cached_prompt_tokens, cost_micros FROM usage_events
        WHERE tenant_id = '${t.tenant}' ORDER BY occurred_at`).map(([id, p, c, cost]) => ({ id, p: Number(p), c: Number(c), cost: Number(cost) }));
      assert.deepEqual(rows.map((r) => r.c), [0, cached, thirdCached], 'cached_prompt_tokens in the ledger');
      assert.equal(rows[0].cost, first.cost);
      assert.equal(rows[1].cost, second.cost);
      assert.equal(rows[2].cost, price(streamedUsage, thirdCached));

      const period = new Date().toISOString().slice(0, 7);
      const inv = await api(stack.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { tenant_id: t.tenant, period } });
      assert.equal(inv.status, 200, inv.text);
      const lines = inv.json.data[0].lines;
      const line = (cls) => lines.filter((l) => l.token_class === cls).reduce((n, l) => ({ tokens: n.tokens + l.tokens, amount: n.amount + l.amount_micros }), { tokens: 0, amount: 0 });
      assert.deepEqual(line('cached_input'), { tokens: cached + thirdCached, amount: cached + thirdCached });
      const input = rows.reduce((n, r) => n + r.p - r.c, 0);
      assert.deepEqual(line('input'), { tokens: input, amount: 4 * input });
    } finally {
      await stack.stop();
      pg.stop();
    }
  });
});
