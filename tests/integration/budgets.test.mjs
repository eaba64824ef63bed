// Integration tests of budgets and rate limits: the admin API, enforcement on the request path
// (429s, Retry-After, x-ratelimit-* headers), scopes, Redis failure modes, and the overspend
// tests: three gateways, 200 concurrent clients, one hard token budget, and three gateways
// serving from budget leases near exhaustion (slices shrinking to per-request holds), leases
// renewed ahead of need under steady traffic and a limit changed behind pub/sub's back applying
// within the budget cache's bound, against a real PostgreSQL and, in turn, a single real Redis and a real three-master Redis Cluster. Windows
// of any length, models and GET /v1/budgets: budget_windows.test.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { startStack, sseData, waitFor, binDir } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis, startRedisCluster, startRedisTls, startRedisClusterTls } from '../lib/redis.mjs';
import { api, makeTenant, ADMIN } from '../lib/ledger.mjs';
import { budgetConfig, addBudget, ask, localWindowStart, leaseEvents } from '../lib/budgets.mjs';

const redisKinds = [['a single Redis', startRedis, 'single'], ['a three-master Redis Cluster', startRedisCluster, 'cluster']];
for (const [redisKind, startRedisKind, short] of redisKinds) describe(`budgets and rate limits (real PostgreSQL, ${redisKind})`, () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-budgets-${process.pid}-${short}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedisKind();
    s = await startStack({ config: budgetConfig(pg, redis, dir) });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('admin API: budgets are created, listed, changed and audited; bad input is a 400', async () => {
    const t = await makeTenant(s.adminUrl, 'BudgetAdmin');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 1000 });
    assert.match(b.id, /^bud_/);
    assert.equal(b.scope, 'tenant');
    assert.equal(b.mode, 'hard');
    const p = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'project', scope_id: t.project, metric: 'requests', window: 'minute', limit: 5, mode: 'soft' });
    assert.equal(p.scope_id, t.project);
    const list = await api(s.adminUrl, 'GET', `/admin/v1/budgets?tenant_id=${t.tenant}`);
    assert.deepEqual(list.json.data.map((x) => x.id), [b.id, p.id]);
    const upd = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${b.id}`, { body: { limit: 2000, status: 'disabled' } });
    assert.equal(upd.json.limit, 2000);
    assert.equal(upd.json.status, 'disabled');
    const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${t.tenant}`);
    assert.ok(audit.json.data.some((e) => e.action === 'budget.update' && e.before.limit_value === 1000));
    for (const body of [
      { tenant_id: t.tenant, metric: 'dollars', window: 'day', limit: 1 },
      { tenant_id: t.tenant, metric: 'spend', window: 'day', limit: 1.5 },
      { tenant_id: t.tenant, metric: 'tokens', window: 'fortnight', limit: 1 },
      { tenant_id: t.tenant, metric: 'tokens', window: '59s', limit: 1 },
      { tenant_id: t.tenant, metric: 'tokens', window: '32d', limit: 1 },
      { tenant_id: t.tenant, metric: 'tokens', window: '1.5h', limit: 1 },
      { tenant_id: t.tenant, metric: 'tokens', window: 5, limit: 1 },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1, models: [] },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1, models: ['a', 'a'] },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1, models: 'dev-echo' },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1, models: [''] },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day' },
      { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: -1 },
      { tenant_id: t.tenant, scope: 'project', metric: 'tokens', window: 'day', limit: 1 },
      { tenant_id: t.tenant, scope_id: t.project, metric: 'tokens', window: 'day', limit: 1 },
    ]) {
      const r = await api(s.adminUrl, 'POST', '/admin/v1/budgets', { body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error.type, 'invalid_request_error');
      if (typeof body.window !== 'string' || !['day', 'minute'].includes(body.window)) assert.equal(r.json.error.param, 'window', r.text);
      if (body.models !== undefined) assert.equal(r.json.error.param, 'models', r.text);
    }
    // Windows of any length from a minute to 31 days, named in their largest whole unit; the
    // calendar week and quarter; budgets limited to models.
    for (const [window, named] of [['90s', '90s'], ['120s', '2m'], ['3h', '3h'], ['48h', '2d'], ['31d', '31d'], ['week', 'week'], ['quarter', 'quarter']]) {
      const w = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window, limit: 1000 });
      assert.equal(w.window, named);
      assert.equal(w.models, null);
    }
    const m = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: '15m', limit: 10, models: ['gpt-4o', 'dev-echo'] });
    assert.deepEqual(m.models, ['gpt-4o', 'dev-echo']);
    const mu = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${m.id}`, { body: { models: null } });
    assert.equal(mu.status, 200, mu.text);
    assert.equal(mu.json.models, null);
    const bad = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${m.id}`, { body: { models: [] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'models');
    const other = await makeTenant(s.adminUrl, 'BudgetOther');
    const cross = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, scope: 'key', scope_id: other.keyId, metric: 'tokens', window: 'day', limit: 1 } });
    assert.equal(cross.status, 404, 'a key of another tenant cannot be a scope');
  });

  test('a hard token budget: headers count down, then 429 insufficient_quota with Retry-After', async () => {
    const t = await makeTenant(s.adminUrl, 'HardTokens');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100 });
    await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1000 });
    const remaining = [];
    const used = [];  // each answer's tokens
    for (;;) {
      const res = await ask(s.url, t.key, { max_tokens: 10 });
      const body = await res.json();
      if (res.status === 429) {
        assert.equal(body.error.code, 'insufficient_quota');
        assert.equal(body.error.type, 'insufficient_quota');
        assert.match(body.error.message, /100 tokens per day/);
        assert.ok(Number(res.headers.get('retry-after')) > 0);
        break;
      }
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '100');
      assert.equal(res.headers.get('x-ratelimit-limit-requests'), '1000');
      assert.match(res.headers.get('x-ratelimit-reset-tokens'), /^(\d+h)?(\d+m)?\d+s$/);
      remaining.push(Number(res.headers.get('x-ratelimit-remaining-tokens')));
      used.push(body.usage.prompt_tokens + body.usage.completion_tokens);
      assert.ok(remaining.length < 20, 'the budget must refuse eventually');
    }
    // The header counts down: each answer's remaining leaves out at least what this request and
    // the ones before it used (it holds the request's worst case; an earlier request's unused
    // hold may come back between two answers, so two neighbours need not fall strictly).
    let spent = 0;
    for (let i = 0; i < remaining.length; i += 1) {
      spent += used[i];
      assert.ok(remaining[i] <= 100 - spent, `remaining ${remaining} after using ${used}`);
    }
    assert.ok(remaining.at(-1) < remaining[0], `remaining ${remaining}`);
    // Billed tokens stay within the budget.
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === remaining.length + 1,
      { what: 'rows' });
    const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.ok(billed <= 100, `billed ${billed}`);
  });

  test('a requests-per-minute limit answers 429 rate_limit_exceeded; scopes apply to their own keys only', async () => {
    const t = await makeTenant(s.adminUrl, 'Rpm');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'key', scope_id: t.keyId, metric: 'requests', window: 'minute', limit: 3 });
    const statuses = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await ask(s.url, t.key);
      statuses.push(res.status);
      const body = await res.json();
      if (res.status === 429) {
        assert.equal(body.error.code, 'rate_limit_exceeded');
        assert.equal(body.error.type, 'requests');
        assert.ok(Number(res.headers.get('retry-after')) >= 1);
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    // Another key of the same tenant is not under that key's limit.
    const k2 = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant } });
    assert.equal((await ask(s.url, k2.json.key)).status, 200);
  });

  test('a lowered limit applies at once: what this gateway leased before is not held against it',
    async () => {
    const t = await makeTenant(s.adminUrl, 'Lowered');
    const budget = await addBudget(s.adminUrl,
      { tenant_id: t.tenant, metric: 'requests', window: 'day', limit: 100 });
    const first = await ask(s.url, t.key);
    assert.equal(first.status, 200);
    await first.json();
    // The first request leased a slice of the 100; the change closes that lease, and what it
    // did not use goes back before the next request is refused for want of it.
    const lowered = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${budget.id}`,
      { body: { limit: 4 } });
    assert.equal(lowered.status, 200, lowered.text);
    const statuses = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await ask(s.url, t.key);
      statuses.push(res.status);
      await res.json();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  });

  test('streaming requests reserve and settle too', async () => {
    const t = await makeTenant(s.adminUrl, 'Stream');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'hour', limit: 10000 });
    const res = await ask(s.url, t.key, { stream: true, max_tokens: 50 });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '10000');
    assert.ok(sseData(await res.text()).includes('[DONE]'));
    await waitFor(() => {
      const c = redis.counters(t.tenant);
      const only = Object.values(c)[0];
      return only && only.held === 0 && only.used > 0;
    }, { what: 'the stream settled' });
    const rows = pg.query(`SELECT prompt_tokens + completion_tokens FROM usage_events WHERE tenant_id = '${t.tenant}'`);
    assert.equal(Object.values(redis.counters(t.tenant))[0].used, Number(rows[0][0]));
  });

  test('overspend: 3 gateways, 200 concurrent clients, one hard budget; never exceeded, all settled', async () => {
    const t = await makeTenant(s.adminUrl, 'Overspend');
    const budget = 5000;
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: budget });
    const g2 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'g2')), upstreamPort: s.upstreamPort });
    const g3 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'g3')), upstreamPort: s.upstreamPort });
    try {
      const urls = [s.url, g2.url, g3.url];
      let seen = 0;  // usage the clients saw
      let granted = 0;
      const client = async (c) => {
        for (let i = 0; ; i += 1) {
          const stream = (c + i) % 2 === 0;
          const res = await ask(urls[c % 3], t.key,
            { max_tokens: 5 + ((c * 7 + i) % 40), ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) },
            `client ${c} message ${i} ${'x '.repeat(c % 5)}`);
          const text = await res.text();
          if (res.status === 429) return;
          assert.equal(res.status, 200, text);
          granted += 1;
          if (stream) {
            const usage = sseData(text).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)).find((e) => e.usage);
            seen += usage.usage.total_tokens;
          } else {
            seen += JSON.parse(text).usage.total_tokens;
          }
        }
      };
      await Promise.all(Array.from({ length: 200 }, (_, c) => client(c)));
      assert.ok(granted > 50, `granted ${granted}`);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === granted,
        { timeoutMs: 15000, what: `${granted} rows` });
      const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
      assert.ok(billed <= budget, `billed ${billed} > budget ${budget}`);
      assert.equal(billed, seen, 'the ledger bills what the clients saw');
      await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'no hold left' });
      assert.equal(redis.counters(t.tenant)[b.id].used, billed, 'Redis settled == ledger');
    } finally {
      await g2.gateway.stop();
      await g3.gateway.stop();
    }
  });

  test('leases near exhaustion: 3 gateways, 120 clients; slices shrink to per-request holds, never exceeded', async () => {
    const t = await makeTenant(s.adminUrl, 'LeaseEdge');
    // 3,000 tokens: shared by three gateways a slice is 3,000 / (8 x 3) = 125 tokens while
    // all is left, and below 8 x 3 x ~60 (a request's worst case) every lease is one request's.
    const budget = 3000;
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: budget });
    const rpm = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 100000 });
    const g2 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'edge2')), upstreamPort: s.upstreamPort });
    const g3 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'edge3')), upstreamPort: s.upstreamPort });
    const gateways = [s, g2, g3];
    const events = (g) => leaseEvents(g.adminUrl);
    const before = await Promise.all(gateways.map(events));
    try {
      let seen = 0;
      let granted = 0;
      const client = async (c) => {
        let refusals = 0;
        for (let i = 0; ; i += 1) {
          const res = await ask(gateways[c % 3].url, t.key, { max_tokens: 5 + ((c * 7 + i) % 40) }, `edge ${c} ${i}`);
          const text = await res.text();
          if (res.status === 429) {
            // Capacity another gateway leased comes back once its lease is recalled (a flush,
            // 100 ms): try again a little later, a few times, then stop.
            if (++refusals > 3) return;
            await new Promise((r) => setTimeout(r, 250));
            continue;
          }
          assert.equal(res.status, 200, text);
          granted += 1;
          seen += JSON.parse(text).usage.total_tokens;
        }
      };
      await Promise.all(Array.from({ length: 120 }, (_, c) => client(c)));
      assert.ok(granted > 30, `granted ${granted}`);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === granted,
        { timeoutMs: 15000, what: `${granted} rows` });
      const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
      assert.ok(billed <= budget, `billed ${billed} > budget ${budget}`);
      assert.equal(billed, seen, 'the ledger bills what the clients saw');
      assert.ok(billed > budget * 0.8, `the budget was used up (billed ${billed} of ${budget})`);
      // Every lease flushed and gave back what it did not use: Redis == ledger, nothing held.
      await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'no hold left' });
      assert.equal(redis.counters(t.tenant)[b.id].used, billed, 'Redis settled == ledger');
      await waitFor(() => redis.counters(t.tenant)[rpm.id]?.held === 0, { what: 'no request hold left' });
      assert.equal(redis.counters(t.tenant)[rpm.id].used, granted, 'every request counted once');
      // Slices were leased while the budget was far from its limit, and every gateway held
      // per request near it.
      const after = await Promise.all(gateways.map(events));
      const leased = after.reduce((n, a, i) => n + a.leased - before[i].leased, 0);
      assert.ok(leased >= 3, `slices leased: ${leased}`);
      after.forEach((a, i) => assert.ok(a.exact - before[i].exact > 0, `gateway ${i} held per request`));
    } finally {
      await g2.gateway.stop();
      await g3.gateway.stop();
    }
  });

  test('steady traffic: leases renewed ahead of need; a limit changed behind pub/sub applies within two cache lifetimes and a lease', async () => {
    // Leases of 400 ms (renewed in their last 50 ms) and a budget list trusted for 300 ms.
    const gR = await startStack({
      config: budgetConfig(pg, redis, path.join(dir, 'renew'), { lease_ms: 400, cache_ttl_ms: 300 }),
      upstreamPort: s.upstreamPort,
    });
    try {
      const t = await makeTenant(gR.adminUrl, 'Renew');
      const b = await addBudget(gR.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1_000_000_000 });
      const rpm = await addBudget(gR.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1_000_000 });
      const renewed = async () => (await leaseEvents(gR.adminUrl)).renewed;
      const renewedBefore = await renewed();
      let granted = 0;
      let seen = 0;
      const until = Date.now() + 1500;
      await Promise.all(Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; Date.now() < until; i += 1) {
          const res = await ask(gR.url, t.key, { max_tokens: 10 }, `renew ${c} ${i}`);
          const text = await res.text();
          assert.equal(res.status, 200, text);
          granted += 1;
          seen += JSON.parse(text).usage.total_tokens;
        }
      }));
      assert.ok(await renewed() > renewedBefore, 'leases were renewed ahead of need');
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === granted,
        { timeoutMs: 15000, what: `${granted} rows` });
      // Every lease ended and was flushed (far from the limit: every lease_flush_far_ms).
      await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'no hold left' });
      assert.equal(redis.counters(t.tenant)[b.id].used, seen, 'Redis settled == what the clients saw');
      await waitFor(() => redis.counters(t.tenant)[rpm.id]?.held === 0, { what: 'no request hold left' });
      assert.equal(redis.counters(t.tenant)[rpm.id].used, granted, 'every request counted once');

      // The limit lowered in the database itself (no pub/sub): the expired list is used while
      // one request reads it again (at most another 300 ms), then the open lease ends (400 ms).
      pg.query(`UPDATE budgets SET limit_value = 1 WHERE id = '${b.id}'`);
      const changedAt = Date.now();
      const answers = [];
      await Promise.all(Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; Date.now() < changedAt + 4000; i += 1) {
          const sentAt = Date.now();
          const res = await ask(gR.url, t.key, { max_tokens: 10 }, `lowered ${c} ${i}`);
          await res.text();
          answers.push({ sentAt, status: res.status });
        }
      }));
      const late = answers.filter((a) => a.status === 200 && a.sentAt > changedAt + 2500);
      assert.equal(late.length, 0, `requests sent more than 2.5 s after the change were served: ${late.length}`);
      assert.ok(answers.some((a) => a.status === 429), 'the lowered limit refused');
      assert.ok(answers.every((a) => a.status === 200 || a.status === 429));
    } finally {
      await gR.gateway.stop();
    }
  });

  test('a spend budget prices requests at the model\'s estimate prices and refuses past its limit', async () => {
    const t = await makeTenant(s.adminUrl, 'Spend');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'spend', window: 'month', limit: 300 });
    assert.equal(b.metric, 'spend');
    let served = 0;
    for (;;) {
      const res = await ask(s.url, t.key, { max_tokens: 12 });
      const body = await res.json();
      if (res.status === 429) {
        assert.equal(body.error.code, 'insufficient_quota');
        assert.match(body.error.message, /300 micro-units of spend per month/);
        break;
      }
      assert.equal(res.status, 200, JSON.stringify(body));
      served += 1;
      assert.ok(served < 30, 'the spend budget must refuse eventually');
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === served + 1,
      { what: 'rows' });
    const spent = Number(pg.value(`SELECT sum(prompt_tokens + 2 * completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.ok(spent <= 300, `spent ${spent}`);
    await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'settled' });
    assert.equal(redis.counters(t.tenant)[b.id].used, spent, 'Redis counts the estimated spend the ledger implies');
  });

  test('a spend budget of a tenant with a plan prices requests by its price book', async () => {
    const t = await makeTenant(s.adminUrl, 'PlanSpend');
    // One tier per class at whole micro-units per token: the worst case is the rated cost.
    const book = (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Spend', currency: 'USD', effective_at: 1_700_000_000,
        models: { 'dev-echo': { input: [{ rate: '3000000' }], output: [{ rate: '5000000' }] } } },
    })).json;
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.id } })).status, 200);
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'spend', window: 'month', limit: 600 });
    let served = 0;
    for (;;) {
      const res = await ask(s.url, t.key, { max_tokens: 12 });
      const body = await res.json();
      if (res.status === 429) {
        assert.match(body.error.message, /600 micro-units of spend per month/);
        break;
      }
      assert.equal(res.status, 200, JSON.stringify(body));
      served += 1;
      assert.ok(served < 40, 'the spend budget must refuse eventually');
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === served + 1,
      { what: 'rows' });
    const [rated, priced] = pg.query(`SELECT sum(cost_micros), sum(3 * prompt_tokens + 5 * completion_tokens)
      FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)[0].map(Number);
    assert.equal(rated, priced, 'the ledger rated the book\'s prices');
    assert.ok(rated <= 600, `billed ${rated}`);
    await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'settled' });
    assert.equal(redis.counters(t.tenant)[b.id].used, rated, 'Redis counts what the ledger bills');
  });

  test('a budget change reaches every gateway at once through Redis pub/sub', async () => {
    // A minute-long cache: only the pub/sub announcement can make the change visible within
    // `soon` (polled, so a slow run under ASan on two cores still passes when pub/sub works).
    const slow = { cache_ttl_ms: 60000 };
    const soon = 15000;
    const gA = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'pubsubA'), slow), upstreamPort: s.upstreamPort });
    const gB = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'pubsubB'), slow), upstreamPort: s.upstreamPort });
    try {
      const t = await makeTenant(gA.adminUrl, 'PubSub');
      const b = await addBudget(gA.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1_000_000 });
      await waitFor(async () => (await ask(gB.url, t.key)).status === 200, { what: 'gateway B serves' });
      const changedAt = Date.now();
      await api(gA.adminUrl, 'POST', `/admin/v1/budgets/${b.id}`, { body: { limit: 1 } });
      await waitFor(async () => (await ask(gB.url, t.key)).status === 429, { timeoutMs: soon, what: 'gateway B sees the new limit' });
      assert.ok(Date.now() - changedAt < soon);
      // A new budget too: gateway B drops its cached list when gateway A creates one.
      await api(gA.adminUrl, 'POST', `/admin/v1/budgets/${b.id}`, { body: { status: 'disabled' } });
      await waitFor(async () => (await ask(gB.url, t.key)).status === 200, { timeoutMs: soon, what: 'the limit is gone' });
      await addBudget(gA.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1 });
      await waitFor(async () => (await ask(gB.url, t.key)).status === 429, { timeoutMs: soon, what: 'the new budget applies' });
    } finally {
      await gA.stop();
      await gB.stop();
    }
  });

  test('tollctl budgets reconcile rebuilds lost Redis counters from the ledger', async () => {
    const t = await makeTenant(s.adminUrl, 'Reconcile');
    const tokens = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 400 });
    const spend = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'spend', window: 'month', limit: 1_000_000 });
    const rpm = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'key', scope_id: t.keyId, metric: 'requests', window: 'minute', limit: 1000 });
    for (let i = 0; i < 4; i += 1) assert.equal((await ask(s.url, t.key, { max_tokens: 20 }, `reconcile ${i}`)).status, 200);
    // A bad request reaches the ledger but never held anything: it is not a request to count.
    assert.equal((await ask(s.url, t.key, { max_tokens: -1 })).status, 400);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 5, { what: 'rows' });
    await waitFor(() => Object.values(redis.counters(t.tenant)).every((c) => c.held === 0), { what: 'settled' });
    const before = redis.counters(t.tenant);
    const billedTokens = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    const billedSpend = Number(pg.value(`SELECT sum(prompt_tokens + 2 * completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.equal(before[tokens.id].used, billedTokens);
    // Redis loses the tenant's counters.
    for (const k of redis.keys(`tg:{${t.tenant}}:*`)) redis.cli('DEL', k);
    assert.deepEqual(redis.counters(t.tenant), {});
    const tollctl = (...args) => execFileSync(path.join(binDir, 'tollctl'), args, {
      env: { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN }, encoding: 'utf8' });
    const report = JSON.parse(tollctl('budgets', 'reconcile', '--tenant', t.tenant)).data;
    const row = (id) => report.find((r) => r.budget_id === id);
    assert.deepEqual([row(tokens.id).ledger, row(tokens.id).redis_before, row(tokens.id).difference], [billedTokens, 0, billedTokens]);
    assert.equal(row(spend.id).ledger, billedSpend);
    assert.equal(report.filter((r) => r.budget_id === rpm.id).length, 13, 'the sliding minute rebuilds its 13 buckets');
    assert.equal(report.filter((r) => r.budget_id === rpm.id).reduce((a, r) => a + r.ledger, 0), 4);
    const after = redis.counters(t.tenant);
    assert.equal(after[tokens.id].used, billedTokens);
    assert.equal(after[spend.id].used, billedSpend);
    // A second run finds nothing to fix, and enforcement counts from the rebuilt counters.
    const again = JSON.parse(tollctl('budgets', 'reconcile', '--tenant', t.tenant)).data;
    assert.ok(again.every((r) => r.difference === 0), JSON.stringify(again));
    const left = 400 - billedTokens;
    const res = await ask(s.url, t.key, { max_tokens: left });
    assert.equal(res.status, 429, 'the rebuilt counter refuses what the lost one would have');
    assert.match((await res.json()).error.message, new RegExp(`has ${left} left`));
  });

  test('a soft budget: the webhook sees exactly the threshold alerts, signed, retried after a failure', async () => {
    // A webhook receiver that fails its first call (the alert must be retried) and records the rest.
    const received = [];
    let calls = 0;
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        calls += 1;
        if (calls === 1) { res.writeHead(500).end('not yet'); return; }
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const t = await makeTenant(s.adminUrl, 'SoftAlerts');
      const b = await addBudget(s.adminUrl, {
        tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 200, mode: 'soft',
        alert_thresholds: [100, 50, 80], alert_webhook_url: `http://127.0.0.1:${receiver.address().port}/hooks/budget`,
      });
      assert.deepEqual(b.alert_thresholds, [50, 80, 100]);
      assert.match(b.alert_webhook_secret, /^whsec_[0-9A-Za-z]{43}$/);
      // A soft budget never refuses: go well past 100 %.
      let used = 0;
      while (used < 300) {
        const res = await ask(s.url, t.key, { max_tokens: 8 }, `soft alert ${used}`);
        assert.equal(res.status, 200);
        used += (await res.json()).usage.total_tokens;
      }
      await waitFor(() => received.length === 3, { timeoutMs: 10000, what: 'three alerts' });
      await new Promise((r) => setTimeout(r, 1500));  // nothing more arrives
      assert.equal(received.length, 3);
      const alerts = received.map((r) => {
        const [tPart, v1Part] = r.headers['x-tollgate-signature'].split(',');
        const ts = tPart.slice(2);
        const expected = createHmac('sha256', b.alert_webhook_secret).update(`${ts}.${r.body}`).digest('hex');
        assert.equal(v1Part, `v1=${expected}`, 'a valid HMAC-SHA256 signature');
        assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 60);
        const a = JSON.parse(r.body);
        assert.equal(r.headers['x-tollgate-alert-id'], a.id);
        return a;
      });
      assert.deepEqual(alerts.map((a) => a.threshold_percent).sort((x, y) => x - y), [50, 80, 100]);
      for (const a of alerts) {
        assert.equal(a.object, 'budget.alert');
        assert.equal(a.budget_id, b.id);
        assert.equal(a.tenant_id, t.tenant);
        assert.equal(a.mode, 'soft');
        assert.equal(a.limit, 200);
        assert.ok(a.used >= a.threshold_percent * 2, `${a.used} crosses ${a.threshold_percent} %`);
      }
      // Every delivery is recorded; the one that failed first was retried.
      const recorded = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${b.id}/alerts`)).json.data;
      assert.equal(recorded.length, 3);
      assert.ok(recorded.every((a) => a.status === 'delivered' && a.delivered_at > 0));
      assert.equal(recorded.reduce((n, a) => n + a.attempts, 0), 4);
      assert.deepEqual(recorded.map((a) => a.attempts).sort(), [1, 1, 2], 'the first attempt failed (HTTP 500) and was retried');
      // Bad alert settings are a 400.
      for (const body of [
        { alert_thresholds: [0] }, { alert_thresholds: [50, 50] }, { alert_thresholds: 'x' },
        { alert_webhook_url: 'https://user@example.com/x' }, { alert_webhook_url: 'ftp://x' }, { alert_webhook_url: 'http://' },
      ]) {
        const r = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${b.id}`, { body });
        assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      }
      // The secret never reaches the audit log.
      const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${t.tenant}`);
      assert.ok(!audit.text.includes(b.alert_webhook_secret));
    } finally {
      receiver.close();
    }
  });

  test('a tenant\'s time zone sets where its day and month windows turn', async () => {
    const bad = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'BadZone', time_zone: 'Mars/Olympus' } });
    assert.equal(bad.status, 400, bad.text);
    for (const tz of ['America/New_York', 'Asia/Kolkata']) {
      const t = await makeTenant(s.adminUrl, `Zone ${tz}`);
      const upd = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}`, { body: { time_zone: tz } });
      assert.equal(upd.json.time_zone, tz);
      const day = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100000 });
      const month = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'month', limit: 100000 });
      const hour = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'hour', limit: 100000 });
      const week = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'week', limit: 100000 });
      const quarter = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'quarter', limit: 100000 });
      const now = Date.now();
      const res = await ask(s.url, t.key);
      assert.equal(res.status, 200);
      await res.text();
      const keys = redis.keys(`tg:{${t.tenant}}:b:*`);
      const startOf = (id) => Number(keys.find((k) => k.includes(`:${id}:`)).split(':').pop());
      assert.equal(startOf(day.id), localWindowStart(tz, now, 'day'), `${tz} day`);
      assert.equal(startOf(month.id), localWindowStart(tz, now, 'month'), `${tz} month`);
      assert.equal(startOf(hour.id), now - (now % 3600000), 'hours stay UTC hours');
      assert.equal(startOf(week.id), localWindowStart(tz, now, 'week'), `${tz} week (from Monday)`);
      assert.equal(startOf(quarter.id), localWindowStart(tz, now, 'quarter'), `${tz} quarter`);
      // The admin API says when the week turns: the next local Monday, 7 days on (or 7 days
      // and the hour a daylight saving change adds or takes).
      const w = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${week.id}`)).json;
      assert.ok(Math.abs(w.resets_at * 1000 - localWindowStart(tz, now, 'week') - 7 * 86400000) <= 3600000, JSON.stringify(w));
      // Reconcile rebuilds the same window instances.
      const report = (await api(s.adminUrl, 'POST', '/admin/v1/budgets/reconcile', { body: { tenant_id: t.tenant } })).json.data;
      assert.equal(report.find((r) => r.budget_id === day.id).window_start * 1000, localWindowStart(tz, now, 'day'));
    }
  });

  test('kill -9 with requests in flight: their holds expire and the budget is whole again', async () => {
    const t = await makeTenant(s.adminUrl, 'KillNine');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1000 });
    const holdTtlMs = 3000;
    const doomed = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'doomed'), { hold_ttl_ms: holdTtlMs }),
      upstreamPort: s.upstreamPort });
    // Two slow requests hold about 800 tokens between them; the gateway dies under them.
    const inFlight = [0, 1].map(() => ask(doomed.url, t.key, { max_tokens: 390 }, 'tg:first_byte_delay_ms=30000').catch(() => null));
    await waitFor(() => (redis.counters(t.tenant)[b.id]?.held ?? 0) > 780, { what: 'two holds' });
    const killedAt = Date.now();
    await doomed.gateway.stop('SIGKILL');
    await Promise.all(inFlight);
    const refused = await ask(s.url, t.key, { max_tokens: 390 });
    assert.equal(refused.status, 429, 'the dead gateway\'s holds still count until they expire');
    await refused.text();
    // A hold lives hold_ttl_ms rounded up to an eighth of it.
    await waitFor(() => Date.now() - killedAt > holdTtlMs * 9 / 8, { timeoutMs: holdTtlMs * 9 / 8 + 1000 });
    const granted = await ask(s.url, t.key, { max_tokens: 390 });
    assert.equal(granted.status, 200, await granted.text());
    await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'no hold left' });
    const used = redis.counters(t.tenant)[b.id].used;
    assert.ok(used > 0 && used < 100, `only the served request is counted, got ${used}`);
    await doomed.stop();
  });

  test('a gateway stopped with SIGTERM settles the requests it answered before it exits', async () => {
    const t = await makeTenant(s.adminUrl, 'Drain');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1000000 });
    // Settlements wait a second for their batch: the stop comes while they still wait.
    const g = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'drain'), { settle_batch_ms: 1000 }),
      upstreamPort: s.upstreamPort });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => ask(g.url, t.key, { max_tokens: 8 }, `drain ${i}`)));
    let seen = 0;
    for (const res of answers) {
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      seen += body.usage.total_tokens;
    }
    await g.gateway.stop();
    const counter = redis.counters(t.tenant)[b.id];
    assert.equal(counter.held, 0, 'no hold left behind');
    assert.equal(counter.used, seen, 'every answered request settled');
    await g.stop();
  });

  test('Redis unreachable: failure_mode closed answers 503 with Retry-After; open serves', async () => {
    const t = await makeTenant(s.adminUrl, 'Failure');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1_000_000 });
    const open = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'open'), { failure_mode: 'open' }), upstreamPort: s.upstreamPort });
    try {
      assert.equal((await ask(s.url, t.key)).status, 200);
      redis.stop();
      // What this gateway has leased is held in Redis already: it is served from memory until
      // the lease ends (budgets.lease_ms, 2 s); then, Redis unreachable, 503.
      let closed;
      await waitFor(async () => {
        closed = await ask(s.url, t.key);
        return closed.status === 503;
      }, { timeoutMs: 5000, intervalMs: 100, what: 'a 503 once the lease has ended' });
      assert.equal(closed.status, 503);
      assert.equal(closed.headers.get('retry-after'), '1');
      assert.equal((await closed.json()).error.code, 'service_unavailable');
      const served = await ask(open.url, t.key);
      assert.equal(served.status, 200);
      const metrics = await (await fetch(`${open.adminUrl}/metrics`)).text();
      assert.match(metrics, /tollgate_budget_reservations_total\{outcome="unenforced"\} [1-9]/);
    } finally {
      redis.start();
      await open.gateway.stop();
    }
    await waitFor(async () => (await ask(s.url, t.key)).status === 200, { timeoutMs: 5000, what: 'Redis back' });
  });
});

describe('budgets over TLS: a TLS-only Redis, https webhooks (real PostgreSQL)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-budgets-${process.pid}-tls`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedisTls();
    s = await startStack({ config: budgetConfig(pg, redis, dir, { alert_webhook_ca_file: path.join(redis.certs, 'ca.crt') }) });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('reservations and settlements travel over a verified TLS connection', async () => {
    const t = await makeTenant(s.adminUrl, 'Tls');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100_000 });
    const r = await ask(s.url, t.key);
    assert.equal(r.status, 200, await r.text());
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), '100000');
    await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'settled' });
    assert.ok(redis.counters(t.tenant)[b.id].used > 0, 'the counter moved in the TLS Redis');
  });

  test('a gateway that does not trust the Redis certificate fails closed with 503', async () => {
    const t = await makeTenant(s.adminUrl, 'TlsUntrusted');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100_000 });
    const config = budgetConfig(pg, redis, path.join(dir, 'untrusted'), { redis_tls_ca_file: path.join(redis.certs, 'other-ca.crt') });
    const other = await startStack({ config, upstreamPort: s.upstreamPort });
    try {
      const r = await ask(other.url, t.key);
      assert.equal(r.status, 503);
      assert.equal((await r.json()).error.code, 'service_unavailable');
    } finally {
      await other.gateway.stop();
    }
  });

  test('https webhooks: delivered over a verified connection; a failed handshake is retried and recorded', async () => {
    const received = [];
    const receiver = https.createServer({
      key: readFileSync(path.join(redis.certs, 'server.key')), cert: readFileSync(path.join(redis.certs, 'server.crt')),
    }, (req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { received.push({ headers: req.headers, body }); res.writeHead(204).end(); });
    });
    const plain = http.createServer((req, res) => res.writeHead(204).end());  // speaks no TLS
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    await new Promise((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const t = await makeTenant(s.adminUrl, 'HttpsAlerts');
      const good = await addBudget(s.adminUrl, {
        tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 20, mode: 'soft',
        alert_thresholds: [50], alert_webhook_url: `https://127.0.0.1:${receiver.address().port}/hooks`,
      });
      const bad = await addBudget(s.adminUrl, {
        tenant_id: t.tenant, metric: 'tokens', window: 'hour', limit: 20, mode: 'soft',
        alert_thresholds: [50], alert_webhook_url: `https://localhost:${plain.address().port}/hooks`,
      });
      assert.equal((await ask(s.url, t.key, { max_tokens: 8 })).status, 200);
      await waitFor(() => received.length === 1, { timeoutMs: 10000, what: 'the https alert' });
      const r = received[0];
      const [tPart, v1Part] = r.headers['x-tollgate-signature'].split(',');
      const expected = createHmac('sha256', good.alert_webhook_secret).update(`${tPart.slice(2)}.${r.body}`).digest('hex');
      assert.equal(v1Part, `v1=${expected}`);
      assert.equal(JSON.parse(r.body).budget_id, good.id);
      // The receiver has the body before the dispatcher has the 204 and records the delivery.
      await waitFor(async () => {
        const a = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${good.id}/alerts`)).json.data[0];
        return a?.status === 'delivered';
      }, { timeoutMs: 10000, what: 'the https alert recorded as delivered' });
      await waitFor(async () => {
        const a = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${bad.id}/alerts`)).json.data[0];
        return a && a.attempts >= 1 && /TLS handshake failed/.test(a.last_error ?? '');
      }, { timeoutMs: 10000, what: 'the failed handshake recorded' });
      const failing = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${bad.id}/alerts`)).json.data[0];
      assert.equal(failing.status, 'pending', 'retried later');
    } finally {
      receiver.close();
      plain.close();
    }
  });
});

describe('budgets on a Redis Cluster over TLS (real PostgreSQL)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-budgets-${process.pid}-cluster-tls`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedisClusterTls();
    s = await startStack({ config: budgetConfig(pg, redis, dir) });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('tenants on every node: reservations, settlements and refusals over verified TLS connections', async () => {
    // Tenants hash to slots on different masters; each connection is TLS, verified by the CA.
    const tenants = [];
    for (let i = 0; i < 6; i++) {
      const t = await makeTenant(s.adminUrl, `ClusterTls${i}`);
      t.budget = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 200 });
      tenants.push(t);
    }
    for (const t of tenants) {
      const r = await ask(s.url, t.key, { max_tokens: 20 });
      assert.equal(r.status, 200, await r.text());
      assert.equal(r.headers.get('x-ratelimit-limit-tokens'), '200');
      const refused = await ask(s.url, t.key, { max_tokens: 500 });
      assert.equal(refused.status, 429);
      await waitFor(() => redis.counters(t.tenant)[t.budget.id]?.held === 0, { what: 'settled' });
      assert.ok(redis.counters(t.tenant)[t.budget.id].used > 0);
    }
    // `redis-cli --cluster create` gives three masters the slots 0-5460, 5461-10922, 10923-16383.
    const masters = new Set(tenants.map((t) => {
      const slot = Number(redis.cli('cluster', 'keyslot', `{${t.tenant}}`).replace(/\D/g, ''));
      return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
    }));
    assert.ok(masters.size >= 2, 'the tenants live on more than one master');
  });
});
