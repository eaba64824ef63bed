// Fallback models and routing rules against real development upstream processes, PostgreSQL and
// Redis: a fallback taken when the primary's upstream is killed and when it answers a listed
// status (the hold moved: Redis counts what the ledger bills; the row names the fallback, its
// endpoint and every attempt), the fallback's reservation refused (429, its upstream never
// called), a stream not switched once a byte was relayed, embeddings and batch lines falling
// back too; a virtual model routing by prompt size, header, tools and the key's tags, a
// weighted split, the allowlist through the virtual model, and routing_rule on the ledger.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { binDir, freePort, postJson, sleep, startProcess, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { api, dbConfig, makeTenant } from '../lib/ledger.mjs';

async function startUpstream(port, args = []) {
  const p = startProcess(path.join(binDir, 'tollgate-dev-upstream'), ['--listen', `127.0.0.1:${port}`, ...args]);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/v1/models`)).ok,
    { what: `upstream on ${port}`, timeoutMs: 5000 });
  return p;
}
const requestsAt = async (port) => (await (await fetch(`http://127.0.0.1:${port}/_dev/stats`)).json()).requests;

function metric(text, name, labels = {}) {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const have = line.slice(line.indexOf('{') + 1, line.indexOf('}')).split(',');
    if (want.every((w) => have.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

const long = Array.from({ length: 150 }, (_, i) => `word${i}`).join(' ');

describe('fallback models and routing rules (real PostgreSQL and Redis)', { timeout: 110_000 }, () => {
  let pg;
  let redis;
  let s;
  const ports = {};
  const procs = {};

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    // down: killed before the tests; flaky: every completion answers 503; ok: healthy;
    // pricey: only the budget-refused fallback uses it; tail: only the stream's fallback.
    for (const name of ['down', 'flaky', 'ok', 'pricey', 'tail']) ports[name] = await freePort();
    for (const name of ['down', 'flaky', 'ok', 'pricey', 'tail']) {
      procs[name] = await startUpstream(ports[name], name === 'flaky' ? ['--fail-status', '503'] : []);
    }
    const upstreams = {};
    for (const name of Object.keys(ports)) {
      upstreams[name] = { endpoints: [{ base_url: `http://127.0.0.1:${ports[name]}/v1`, name: `${name}-1` }] };
    }
    const m = (upstream, extra = {}) => ({ upstream, context_tokens: 8192, ...extra });
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-routing-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({
      config: {
        ...dbConfig(pg, dir),
        budgets: redis.budgetsConfig,
        batches: { poll_interval_ms: 50, lease_ms: 2000, concurrency: 2 },
        upstreams,
        models: {
          'down-model': m('down', { fallbacks: ['backup'] }),
          'flaky-model': m('flaky', { fallbacks: ['backup'] }),
          'flaky-pricey': m('flaky', { fallbacks: ['pricey-model'] }),
          'flaky-kept': m('flaky', { fallbacks: ['backup'], fallback_on_status: [429] }),
          backup: m('ok', { tokenizer: 'cl100k_base' }),
          'pricey-model': m('pricey'),
          streamy: m('ok', { fallbacks: ['stream-backup'] }),
          'stream-backup': m('tail'),
          small: m('ok'),
          large: m('ok'),
          tooly: m('ok'),
        },
        virtual_models: {
          auto: {
            rules: [
              { name: 'by-header', header: 'x-route', header_value: 'big', target: 'large' },
              { name: 'long-prompt', prompt_tokens_min: 100, target: 'large' },
              { name: 'tools', tools: true, target: 'tooly' },
              { name: 'gold-keys', caller_tags: { tier: 'gold' }, target: 'large' },
            ],
            default: 'small',
          },
          split: { default: [{ model: 'small', weight: 80 }, { model: 'large', weight: 20 }] },
        },
      },
    });
    await procs.down.stop('SIGKILL');
  });
  after(async () => {
    await s?.stop();
    await Promise.all(Object.values(procs).map((p) => p.stop()));
    redis?.stop();
    pg?.stop();
  });

  const rowOf = (id) => pg.query(`SELECT model, upstream, coalesce(upstream_endpoint, '<null>'),
    coalesce(attempts::text, '<null>'), coalesce(routing_rule, '<null>'), status, prompt_tokens + completion_tokens
    FROM usage_events WHERE request_id = '${id}'`)[0];
  const waitRow = (id) => waitFor(() => rowOf(id) !== undefined, { what: `the row of ${id}` }).then(() => rowOf(id));
  const post = (key, body, headers = {}, endpoint = 'chat/completions') =>
    postJson(`${s.url}/v1/${endpoint}`, JSON.stringify(body), { authorization: `Bearer ${key}`, ...headers });
  const chatOf = (model, content, extra = {}) => ({ model, max_tokens: 20, messages: [{ role: 'user', content }], ...extra });
  const metrics = async () => (await fetch(`${s.adminUrl}/metrics`)).text();

  test('killed upstream and a listed status: the fallback serves, the hold moves, Redis equals the ledger', async () => {
    const t = await makeTenant(s.adminUrl, 'Fallback');
    const budget = async (metric) => (await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric, window: 'month', limit: 1_000_000 } })).json.id;
    const tokensBudget = await budget('tokens');
    const requestsBudget = await budget('requests');
    const ids = [];
    for (const [model, reason] of [['down-model', 'connect_error'], ['flaky-model', 'status_503']]) {
      for (let i = 0; i < 3; i += 1) {
        const res = await post(t.key, chatOf(model, `fallback please ${i}`));
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal(res.headers.get('x-tollgate-model'), 'backup');
        assert.equal(res.headers.get('x-tollgate-fallback-from'), model);
        const body = await res.json();
        assert.equal(body.model, 'backup');  // the fallback's upstream's answer, as it sent it
        assert.match(body.choices[0].message.content, /fallback please/);
        ids.push(res.headers.get('x-request-id'));
      }
      assert.equal(metric(await metrics(), 'tollgate_model_fallbacks_total', { from: model, to: 'backup', reason }), 3);
    }
    for (const id of ids) {
      const [model, upstream, endpoint, attempts, rule, status] = await waitRow(id);
      assert.deepEqual([model, upstream, endpoint, attempts, rule, status], ['backup', 'ok', 'ok-1', '2', '<null>', '200']);
    }
    await waitFor(() => redis.counters(t.tenant)[tokensBudget]?.held === 0
      && redis.counters(t.tenant)[requestsBudget]?.held === 0, { what: 'every hold settled' });
    const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.ok(billed > 0);
    assert.equal(redis.counters(t.tenant)[tokensBudget].used, billed);
    // One request each: the released first holds counted nothing.
    assert.equal(redis.counters(t.tenant)[requestsBudget].used, 6);
  });

  test('a status not listed is relayed as is; a stream answered 503 falls back with its headers', async () => {
    const t = await makeTenant(s.adminUrl, 'FallbackStatus');
    const kept = await post(t.key, chatOf('flaky-kept', 'stay'));
    assert.equal(kept.status, 503);
    assert.equal(kept.headers.get('x-tollgate-fallback-from'), null);
    await kept.text();
    const streamed = await post(t.key, chatOf('flaky-model', 'stream me', { stream: true }));
    assert.equal(streamed.status, 200);
    assert.equal(streamed.headers.get('x-tollgate-fallback-from'), 'flaky-model');
    assert.equal(streamed.headers.get('x-tollgate-model'), 'backup');
    assert.match(await streamed.text(), /\[DONE\]/);
    assert.deepEqual((await waitRow(streamed.headers.get('x-request-id'))).slice(0, 4), ['backup', 'ok', 'ok-1', '2']);
  });

  test("the fallback's reservation refused: that 429, and its upstream is never called", async () => {
    const t = await makeTenant(s.adminUrl, 'FallbackRefused');
    const b = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 10, models: ['pricey-model'] } });
    assert.equal(b.status, 201, b.text);
    const before = await requestsAt(ports.pricey);
    const res = await post(t.key, chatOf('flaky-pricey', 'too dear'));
    assert.equal(res.status, 429);
    const body = await res.json();
    assert.equal(body.error.type, 'insufficient_quota');
    assert.equal(await requestsAt(ports.pricey), before);
    const [model, , , attempts, , status] = await waitRow(res.headers.get('x-request-id'));
    assert.deepEqual([model, attempts, status], ['flaky-pricey', '1', '429']);
    await waitFor(() => redis.counters(t.tenant)[b.json.id] === undefined || redis.counters(t.tenant)[b.json.id].held === 0,
      { what: 'nothing held' });
  });

  test('a stream is not switched once a byte was relayed', async () => {
    const t = await makeTenant(s.adminUrl, 'FallbackStream');
    const before = await requestsAt(ports.tail);
    const res = await post(t.key, chatOf('streamy', 'a b c d e f tg:die_after=2 tg:chunk_delay_ms=20', { stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-fallback-from'), null);
    const text = await res.text();
    assert.match(text, /Echo:/);
    assert.match(text, /"error"/);  // the in-band error after the relayed chunks
    assert.equal(await requestsAt(ports.tail), before);
    const [model, , , attempts] = await waitRow(res.headers.get('x-request-id'));
    assert.deepEqual([model, attempts], ['streamy', '1']);
  });

  test('embeddings and batch lines fall back too', async () => {
    const t = await makeTenant(s.adminUrl, 'FallbackOther');
    const emb = await post(t.key, { model: 'down-model', input: ['embed me'] }, {}, 'embeddings');
    assert.equal(emb.status, 200, await emb.clone().text());
    assert.equal(emb.headers.get('x-tollgate-fallback-from'), 'down-model');
    await emb.json();
    assert.deepEqual((await waitRow(emb.headers.get('x-request-id'))).slice(0, 4), ['backup', 'ok', 'ok-1', '2']);

    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const lines = ['flaky-model', 'auto'].map((model, i) => JSON.stringify({ custom_id: `job-${i}`, method: 'POST',
      url: '/v1/chat/completions', body: chatOf(model, `line ${i}`) }));
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'f.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    let batch;
    await waitFor(async () => {
      batch = await client.batches.retrieve(created.id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(batch.status);
    }, { timeoutMs: 20000, intervalMs: 100, what: 'the batch to end' });
    assert.equal(batch.status, 'completed');
    assert.deepEqual(batch.request_counts, { total: 2, completed: 2, failed: 0 });
    const rows = pg.query(`SELECT model, coalesce(routing_rule, '<null>'), attempts FROM usage_events
      WHERE tenant_id = '${t.tenant}' AND batch ORDER BY model`);
    assert.deepEqual(rows, [['backup', '<null>', '2'], ['small', 'auto/default', '1']]);
  });

  test('a virtual model routes by header, prompt size, tools and the key tags; the ledger names the rule', async () => {
    const t = await makeTenant(s.adminUrl, 'Routing', { allowed_models: ['auto'] });
    const gold = await makeTenant(s.adminUrl, 'RoutingGold', { default_tags: { tier: 'gold' } });
    const tool = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };
    const cases = [
      [t.key, chatOf('auto', 'short one'), {}, 'small', 'auto/default'],
      [t.key, chatOf('auto', long), {}, 'large', 'auto/long-prompt'],
      [t.key, chatOf('auto', 'short one'), { 'x-route': 'big' }, 'large', 'auto/by-header'],
      [t.key, chatOf('auto', 'short one'), { 'x-route': 'small' }, 'small', 'auto/default'],
      [t.key, chatOf('auto', 'call a tool', { tools: [tool] }), {}, 'tooly', 'auto/tools'],
      [gold.key, chatOf('auto', 'short one'), {}, 'large', 'auto/gold-keys'],
    ];
    for (const [key, body, headers, model, rule] of cases) {
      const res = await post(key, body, headers);
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get('x-tollgate-model'), model);
      assert.equal(res.headers.get('x-tollgate-routing-rule'), rule);
      assert.equal((await res.json()).model, model);
      const [rowModel, upstream, , , rowRule, status] = await waitRow(res.headers.get('x-request-id'));
      assert.deepEqual([rowModel, upstream, rowRule, status], [model, 'ok', rule, '200']);
    }
    assert.equal(metric(await metrics(), 'tollgate_routing_decisions_total', { model: 'auto', rule: 'long-prompt', target: 'large' }), 1);
    // Allowed through `auto` only: `large` by its own name does not exist for this key.
    const direct = await post(t.key, chatOf('large', 'by name'));
    assert.equal(direct.status, 404);
    assert.equal((await direct.json()).error.code, 'model_not_found');
    const models = await (await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${t.key}` } })).json();
    assert.deepEqual(models.data.map((x) => x.id), ['auto']);
    const all = await (await fetch(`${s.url}/v1/models/split`, { headers: { authorization: `Bearer ${gold.key}` } })).json();
    assert.equal(all.id, 'split');
  });

  test('a weighted split sends about its share to each target, decided per request', async () => {
    const t = await makeTenant(s.adminUrl, 'Split');
    const served = { small: 0, large: 0 };
    const n = 120;
    for (let i = 0; i < n; i += 6) {
      const batch = await Promise.all(Array.from({ length: 6 }, () => post(t.key, chatOf('split', 'split me'))));
      for (const res of batch) {
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('x-tollgate-routing-rule'), 'split/default');
        served[res.headers.get('x-tollgate-model')] += 1;
        await res.text();
      }
    }
    assert.equal(served.small + served.large, n);
    // 20 % of 120 is 24; binomial standard deviation about 4.4.
    assert.ok(served.large >= 10 && served.large <= 40, JSON.stringify(served));
    await sleep(100);
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`) === String(n),
      { what: 'every row' });
    const byModel = Object.fromEntries(pg.query(`SELECT model, count(*) FROM usage_events
      WHERE tenant_id = '${t.tenant}' AND routing_rule = 'split/default' GROUP BY model`));
    assert.equal(Number(byModel.large ?? 0), served.large);
    assert.equal(Number(byModel.small ?? 0), served.small);
  });
});
