// Budgets on the attribution dimensions, against a real PostgreSQL and a real Redis: a budget per
// end user (each end user its own counter), per tag value and per session; exact refusals at
// their limits; reconcile of per-end-user counters from the ledger; and the overspend proof with
// 1,000 distinct end users over three gateways.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { startStack, chatBody, postJson, waitFor } from '../lib/harness.mjs';
import { budgetConfig, addBudget } from '../lib/budgets.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { api, makeTenant } from '../lib/ledger.mjs';

function ask(url, key, extra = {}, headers = {}, content = 'attributed budget') {
  return postJson(`${url}/v1/chat/completions`, chatBody(content, extra), { authorization: `Bearer ${key}`, ...headers });
}

// The counter id of value `v` under budget `id` (its Redis key is tg:{tenant}:b:<this>:<window>).
const subjectId = (id, v) => `${id}.${createHash('sha256').update(v).digest('hex').slice(0, 32)}`;

describe('budgets per end user, tag and session (real PostgreSQL, real Redis)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-budgets-attr-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({ config: budgetConfig(pg, redis, dir) });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('admin API: the new scopes and what their scope_id may be', async () => {
    const t = await makeTenant(s.adminUrl, 'ScopeApi');
    const each = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', metric: 'requests', window: 'day', limit: 5 });
    assert.equal(each.scope, 'end_user');
    assert.equal(each.scope_id, null);
    const one = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', scope_id: 'cust-1', metric: 'requests', window: 'day', limit: 5 });
    assert.equal(one.scope_id, 'cust-1');
    const tagEach = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'tag', scope_id: 'team', metric: 'tokens', window: 'day', limit: 500 });
    assert.equal(tagEach.scope_id, 'team');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'tag', scope_id: 'team=search', metric: 'tokens', window: 'day', limit: 500 });
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'session', metric: 'requests', window: 'lifetime', limit: 50 });
    for (const [body, param] of [
      [{ scope: 'tag', metric: 'tokens', window: 'day', limit: 1 }, 'scope_id'],
      [{ scope: 'tag', scope_id: '=x', metric: 'tokens', window: 'day', limit: 1 }, 'scope_id'],
      [{ scope: 'end_user', scope_id: 'x'.repeat(300), metric: 'tokens', window: 'day', limit: 1 }, 'scope_id'],
      [{ scope: 'end_user', metric: 'tokens', window: 'day', limit: 1, alert_thresholds: [50] }, 'alert_thresholds'],
      [{ scope: 'customer', metric: 'tokens', window: 'day', limit: 1 }, 'scope'],
    ]) {
      const r = await api(s.adminUrl, 'POST', '/admin/v1/budgets', { body: { tenant_id: t.tenant, ...body } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, param, r.text);
    }
  });

  test('each end user has its own counter and is refused exactly at its limit', async () => {
    const t = await makeTenant(s.adminUrl, 'PerUser');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', metric: 'requests', window: 'day', limit: 3 });
    for (const user of ['alice', 'bob']) {
      for (let i = 0; i < 3; i += 1) {
        const r = await ask(s.url, t.key, { user });
        const text = await r.text();
        assert.equal(r.status, 200, text);
      }
      const refused = await ask(s.url, t.key, { user });
      const body = await refused.json();
      assert.equal(refused.status, 429);
      assert.equal(body.error.code, 'insufficient_quota');
      assert.match(body.error.message, new RegExp(b.id));
      assert.ok(Number(refused.headers.get('retry-after')) > 0);
    }
    // The header names the end user as well; a request without an end user is not counted.
    const hdr = await ask(s.url, t.key, {}, { 'x-tollgate-end-user': 'alice' });
    assert.equal(hdr.status, 429);
    await hdr.text();
    const anon = await ask(s.url, t.key);
    assert.equal(anon.status, 200);
    await anon.text();
    const counters = redis.counters(t.tenant);
    await waitFor(() => redis.counters(t.tenant)[subjectId(b.id, 'alice')]?.used === 3, { what: 'alice settled' });
    // The key holder reads an end user's budget by naming the end user.
    const list = async (query) => {
      const r = await fetch(`${s.url}/v1/budgets${query}`, { headers: { authorization: `Bearer ${t.key}` } });
      return { status: r.status, json: await r.json() };
    };
    assert.deepEqual((await list('')).json.data, [], 'an end user budget is not the key\'s');
    const alice = await list('?end_user=alice');
    assert.equal(alice.status, 200);
    assert.equal(alice.json.data.length, 1);
    assert.equal(alice.json.data[0].id, b.id);
    assert.equal(alice.json.data[0].used, 3);
    assert.equal(alice.json.data[0].remaining, 0);
    assert.ok(alice.json.data[0].resets_at > Date.now() / 1000);
    assert.equal((await list('?end_user=nobody-yet')).json.data[0].remaining, 3);
    const bad = await list(`?end_user=${'x'.repeat(300)}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'end_user');
    assert.equal(counters[subjectId(b.id, 'bob')].used + counters[subjectId(b.id, 'bob')].held, 3);
  });

  test('a tag value budget counts only its tag; a per-key tag budget counts each value', async () => {
    const t = await makeTenant(s.adminUrl, 'PerTag');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'tag', scope_id: 'team=search', metric: 'requests', window: 'day', limit: 2 });
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'tag', scope_id: 'feature', metric: 'requests', window: 'day', limit: 1 });
    const statuses = [];
    for (const [meta, hdr] of [
      [{ team: 'search' }, {}], [{ team: 'ads' }, {}], [{}, { 'x-tollgate-tags': 'team=search' }], [{ team: 'search' }, {}],
      [{ feature: 'a' }, {}], [{ feature: 'b' }, {}], [{ feature: 'a' }, {}],
    ]) {
      const r = await ask(s.url, t.key, { metadata: meta }, hdr);
      statuses.push(r.status);
      await r.text();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 200, 200, 429]);
  });

  test('a session budget caps one agent task', async () => {
    const t = await makeTenant(s.adminUrl, 'PerSession');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'session', metric: 'requests', window: 'lifetime', limit: 4 });
    const run = async (session) => {
      const out = [];
      for (let i = 0; i < 5; i += 1) {
        const r = await ask(s.url, t.key, {}, { 'x-tollgate-session': session });
        out.push(r.status);
        await r.text();
      }
      return out;
    };
    assert.deepEqual(await run('task-1'), [200, 200, 200, 200, 429]);
    assert.deepEqual(await run('task-2'), [200, 200, 200, 200, 429]);
  });

  test('"3 messages every 3 hours" per end user, on one model only', async () => {
    const t = await makeTenant(s.adminUrl, 'PerUserWindow');
    await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', metric: 'requests', window: '3h', limit: 3, models: ['dev-echo'] });
    const statuses = async (user, model = 'dev-echo') => {
      const out = [];
      for (let i = 0; i < 4; i += 1) {
        const r = await ask(s.url, t.key, { user, model });
        out.push(r.status);
        if (r.status === 429) {
          const body = await r.json();
          assert.equal(body.error.code, 'rate_limit_exceeded');
          assert.ok(Number(r.headers.get('retry-after')) > 0);
        } else {
          await r.text();
        }
      }
      return out;
    };
    assert.deepEqual(await statuses('carol'), [200, 200, 200, 429]);
    assert.deepEqual(await statuses('dave'), [200, 200, 200, 429]);
    // Another model is not counted by it.
    assert.deepEqual(await statuses('carol', 'dev-other'), [200, 200, 200, 200]);
  });

  test('reconcile rebuilds per-end-user counters from the ledger', async () => {
    const t = await makeTenant(s.adminUrl, 'PerUserReconcile');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', metric: 'tokens', window: 'day', limit: 100000 });
    const tagged = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'tag', scope_id: 'team=a', metric: 'requests', window: 'day', limit: 100 });
    for (const user of ['u1', 'u2', 'u2']) {
      const r = await ask(s.url, t.key, { user, max_tokens: 5, metadata: { team: user === 'u1' ? 'a' : 'b' } });
      assert.equal(r.status, 200);
      await r.text();
    }
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`) === '3', { what: 'rows' });
    const ledger = Object.fromEntries(pg.query(`SELECT end_user, sum(prompt_tokens + completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}' GROUP BY end_user`).map(([u, n]) => [u, Number(n)]));
    await waitFor(() => redis.counters(t.tenant)[subjectId(b.id, 'u2')]?.used === ledger.u2, { what: 'settled' });
    for (const k of redis.keys(`tg:{${t.tenant}}:*`)) redis.cli('DEL', k);
    const r = await api(s.adminUrl, 'POST', '/admin/v1/budgets/reconcile', { body: { tenant_id: t.tenant } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.filter((row) => row.budget_id === b.id).length, 2, 'one counter per end user');
    const after = redis.counters(t.tenant);
    assert.equal(after[subjectId(b.id, 'u1')].used, ledger.u1);
    assert.equal(after[subjectId(b.id, 'u2')].used, ledger.u2);
    assert.equal(after[tagged.id].used, 1, 'the tag value budget counts only team=a');
  });

  test('overspend: 1,000 end users over 3 gateways, a hard per-end-user budget; none exceeded', async () => {
    const t = await makeTenant(s.adminUrl, 'PerUserOverspend');
    const limit = 120;
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'end_user', metric: 'tokens', window: 'day', limit });
    const g2 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'g2')), upstreamPort: s.upstreamPort });
    const g3 = await startStack({ config: budgetConfig(pg, redis, path.join(dir, 'g3')), upstreamPort: s.upstreamPort });
    try {
      const urls = [s.url, g2.url, g3.url];
      const users = Array.from({ length: 1000 }, (_, i) => `end-user-${i}`);
      let granted = 0;
      let refused = 0;
      // 200 clients; client c serves end users c, c+200, ...; each end user's requests go to
      // all three gateways in turn until it is refused.
      const client = async (c) => {
        for (let u = c; u < users.length; u += 200) {
          for (let i = 0; ; i += 1) {
            const res = await ask(urls[(u + i) % 3], t.key, { user: users[u], max_tokens: 5 + ((u + i) % 30) },
              {}, `user ${u} message ${i} ${'y '.repeat(u % 4)}`);
            const text = await res.text();
            if (res.status === 429) {
              refused += 1;
              break;
            }
            assert.equal(res.status, 200, text);
            granted += 1;
          }
        }
      };
      await Promise.all(Array.from({ length: 200 }, (_, c) => client(c)));
      assert.equal(refused, users.length, 'every end user reached its limit');
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === granted,
        { timeoutMs: 20000, what: `${granted} rows` });
      const billed = pg.query(`SELECT end_user, sum(prompt_tokens + completion_tokens) FROM usage_events
        WHERE tenant_id = '${t.tenant}' AND status = 200 GROUP BY end_user`);
      assert.equal(billed.length, users.length);
      for (const [user, n] of billed) assert.ok(Number(n) <= limit, `${user} billed ${n} > ${limit}`);
      await waitFor(() => {
        const c = redis.counters(t.tenant);
        return billed.every(([user, n]) => c[subjectId(b.id, user)]?.used === Number(n) && c[subjectId(b.id, user)].held === 0);
      }, { timeoutMs: 15000, what: 'Redis equal to the ledger for every end user' });
    } finally {
      await g2.gateway.stop();
      await g3.gateway.stop();
    }
  });
});
