// Integration tests of budget windows of any length, budgets limited to models and what a key
// sees of its budgets (GET /v1/budgets, and the admin API's usage fields), against real
// gateways, a real PostgreSQL and, in turn, a single real Redis and a three-master Redis Cluster.
// The sliding windows' guarantee under a randomized clock is tested on the scripts themselves
// (tests/integration/budget_engine_test.cpp).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis, startRedisCluster } from '../lib/redis.mjs';
import { api, makeTenant } from '../lib/ledger.mjs';
import { budgetConfig, addBudget, ask } from '../lib/budgets.mjs';

const redisKinds = [['a single Redis', startRedis, 'single'], ['a three-master Redis Cluster', startRedisCluster, 'cluster']];
for (const [redisKind, startRedisKind, short] of redisKinds) describe(`budget windows, models and listings (real PostgreSQL, ${redisKind})`, () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-budget-windows-${process.pid}-${short}`);
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

  test('a sliding window of any length: whole buckets, rate_limit_exceeded until the oldest leaves', async () => {
    const t = await makeTenant(s.adminUrl, 'Sliding');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: '90s', limit: 3 });
    assert.equal(b.window, '90s');
    const statuses = [];
    const remaining = [];
    let refusal;
    for (let i = 0; i < 4; i += 1) {
      const res = await ask(s.url, t.key);
      statuses.push(res.status);
      const body = await res.json();
      if (res.status === 429) {
        refusal = { body, retryAfter: Number(res.headers.get('retry-after')) };
      } else {
        assert.equal(res.headers.get('x-ratelimit-limit-requests'), '3');
        remaining.push(Number(res.headers.get('x-ratelimit-remaining-requests')));
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.deepEqual(remaining, [2, 1, 0]);
    assert.equal(refusal.body.error.code, 'rate_limit_exceeded');
    assert.equal(refusal.body.error.type, 'requests');
    assert.match(refusal.body.error.message, /3 requests per 90s, tenant\) has 0 left.*Usage leaves the window in/);
    // Until the oldest 8 s bucket holding usage leaves the window: at most 90 + 8 s away.
    assert.ok(refusal.retryAfter >= 90 && refusal.retryAfter <= 98, `Retry-After ${refusal.retryAfter}`);
    // Holds and usage went into 8 s buckets, keyed with the tenant's hash tag.
    const keys = redis.keys(`tg:{${t.tenant}}:b:${b.id}:*`);
    assert.ok(keys.length >= 1 && keys.length <= 3, keys.join(' '));
    for (const k of keys) assert.equal(Number(k.split(':').pop()) % 8000, 0, k);
    await waitFor(() => redis.counters(t.tenant)[b.id]?.held === 0, { what: 'settled' });
    assert.equal(redis.counters(t.tenant)[b.id].used, 3);
  });

  test('a budget limited to models counts only their requests; reconcile only their rows', async () => {
    const t = await makeTenant(s.adminUrl, 'Models');
    const only = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 60, models: ['dev-other'] });
    const every = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'requests', window: 'day', limit: 1000 });
    // Requests for another model are not charged to it, however large.
    for (let i = 0; i < 3; i += 1) {
      const res = await ask(s.url, t.key, { max_tokens: 100 }, `other model ${i}`);
      assert.equal(res.status, 200, await res.text());
      assert.equal(res.headers.get('x-ratelimit-limit-tokens'), null, 'no token budget applies to dev-echo');
    }
    let served = 0;
    for (;;) {
      const res = await ask(s.url, t.key, { model: 'dev-other', max_tokens: 10 }, `its model ${served}`);
      const body = await res.json();
      if (res.status === 429) {
        assert.match(body.error.message, new RegExp(`Budget ${only.id} \\(60 tokens per day`));
        break;
      }
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '60');
      served += 1;
      assert.ok(served < 20, 'the model budget must refuse eventually');
    }
    assert.ok(served >= 1);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 3 + served + 1,
      { what: 'rows' });
    await waitFor(() => Object.values(redis.counters(t.tenant)).every((c) => c.held === 0), { what: 'settled' });
    const billedOther = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}' AND model = 'dev-other'`));
    assert.ok(billedOther <= 60);
    assert.equal(redis.counters(t.tenant)[only.id].used, billedOther);
    assert.equal(redis.counters(t.tenant)[every.id].used, 3 + served);
    // Reconcile rebuilds the counter from that model's rows only.
    for (const k of redis.keys(`tg:{${t.tenant}}:*`)) redis.cli('DEL', k);
    const report = (await api(s.adminUrl, 'POST', '/admin/v1/budgets/reconcile', { body: { tenant_id: t.tenant } })).json.data;
    assert.equal(report.find((r) => r.budget_id === only.id).ledger, billedOther);
    assert.equal(report.find((r) => r.budget_id === every.id).ledger, 3 + served);
    // Limited to every model again (null): dev-echo requests now count against it too.
    await api(s.adminUrl, 'POST', `/admin/v1/budgets/${only.id}`, { body: { models: null } });
    await waitFor(async () => {
      const res = await ask(s.url, t.key, { max_tokens: 100 });
      await res.text();
      return res.status === 429;
    }, { what: 'the budget counts every model' });
  });

  test('GET /v1/budgets: a key sees its tenant\'s, its project\'s and its own budgets and what they count', async () => {
    const t = await makeTenant(s.adminUrl, 'Listing');
    const other = await makeTenant(s.adminUrl, 'ListingOther');
    const k2 = (await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant } })).json;
    const tenantWide = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100000 });
    const project = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'project', scope_id: t.project, metric: 'requests', window: '2h', limit: 1000 });
    const own = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'key', scope_id: t.keyId, metric: 'spend', window: 'week', limit: 1_000_000, models: ['dev-echo'] });
    const key2 = await addBudget(s.adminUrl, { tenant_id: t.tenant, scope: 'key', scope_id: k2.id, metric: 'tokens', window: 'lifetime', limit: 500 });
    const otherTenant = await addBudget(s.adminUrl, { tenant_id: other.tenant, metric: 'tokens', window: 'day', limit: 7 });
    const disabled = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 5 });
    await api(s.adminUrl, 'POST', `/admin/v1/budgets/${disabled.id}`, { body: { status: 'disabled' } });
    const list = async (key) => {
      const res = await fetch(`${s.url}/v1/budgets`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.status, 200, await res.clone().text());
      const body = await res.json();
      assert.equal(body.object, 'list');
      return body.data;
    };

    const sent = Date.now() / 1000;
    const res = await ask(s.url, t.key, { max_tokens: 10 });
    const usage = (await res.json()).usage;
    assert.equal(res.status, 200);
    await waitFor(() => Object.values(redis.counters(t.tenant)).every((c) => c.held === 0), { what: 'settled' });
    const seen = await list(t.key);
    assert.deepEqual(seen.map((b) => b.id), [tenantWide.id, project.id, own.id].sort(), 'its tenant\'s, project\'s and own budgets only');
    const byId = Object.fromEntries(seen.map((b) => [b.id, b]));
    for (const b of seen) {
      assert.deepEqual(Object.keys(b), ['object', 'id', 'scope', 'scope_id', 'metric', 'window', 'mode', 'models', 'limit',
        'used', 'held', 'remaining', 'resets_at']);
      assert.equal(b.object, 'budget');
      assert.equal(b.held, 0);
      assert.equal(b.remaining, b.limit - b.used);
    }
    const now = Date.now() / 1000;
    const tw = byId[tenantWide.id];
    assert.deepEqual([tw.scope, tw.scope_id, tw.metric, tw.window, tw.mode, tw.models, tw.used],
      ['tenant', null, 'tokens', 'day', 'hard', null, usage.total_tokens]);
    assert.equal(tw.resets_at, Math.ceil(now / 86400) * 86400, 'the next UTC midnight');
    const pr = byId[project.id];
    assert.deepEqual([pr.scope, pr.scope_id, pr.window, pr.used], ['project', t.project, '2h', 1]);
    // Once the 10-minute bucket that holds the request leaves the two hours: that bucket ends
    // after the request was sent, and may have ended before this listing (seconds later).
    assert.ok(pr.resets_at > sent + 7200 && pr.resets_at <= now + 7200 + 600 + 1, `${pr.resets_at} vs sent ${sent}, now ${now}`);
    const ow = byId[own.id];
    assert.deepEqual([ow.scope, ow.scope_id, ow.metric, ow.window, ow.models, ow.used],
      ['key', t.keyId, 'spend', 'week', ['dev-echo'], usage.prompt_tokens + 2 * usage.completion_tokens]);

    // A request in flight shows as held.
    const slow = ask(s.url, t.key, { max_tokens: 20 }, 'tg:first_byte_delay_ms=3000');
    await waitFor(async () => (await list(t.key)).find((b) => b.id === tenantWide.id).held > 0, { what: 'the hold listed' });
    const holding = (await list(t.key)).find((b) => b.id === tenantWide.id);
    assert.equal(holding.remaining, 100000 - holding.used - holding.held);
    assert.equal((await slow).status, 200);

    // The other key of the tenant (no project) sees the tenant's budget and its own; another
    // tenant's key only its tenant's.
    assert.deepEqual((await list(k2.key)).map((b) => b.id), [tenantWide.id, key2.id].sort());
    const lifetime = (await list(k2.key)).find((b) => b.id === key2.id);
    assert.deepEqual([lifetime.used, lifetime.remaining, lifetime.resets_at], [0, 500, null]);
    assert.deepEqual((await list(other.key)).map((b) => b.id), [otherTenant.id]);
    const anonymous = await fetch(`${s.url}/v1/budgets`);
    assert.equal(anonymous.status, 401);
    const wrongMethod = await fetch(`${s.url}/v1/budgets`, { method: 'POST', headers: { authorization: `Bearer ${t.key}` } });
    assert.equal(wrongMethod.status, 405);

    // The admin API's budget objects carry the same fields.
    await waitFor(() => Object.values(redis.counters(t.tenant)).every((c) => c.held === 0), { what: 'settled' });
    const listed = Object.fromEntries((await list(t.key)).map((b) => [b.id, b]));
    const got = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${tenantWide.id}`)).json;
    assert.deepEqual([got.used, got.held, got.remaining, got.resets_at],
      [listed[tenantWide.id].used, 0, listed[tenantWide.id].remaining, listed[tenantWide.id].resets_at]);
    assert.equal(got.alert_webhook_url, null, 'the rest of the object is as before');
    const page = (await api(s.adminUrl, 'GET', `/admin/v1/budgets?tenant_id=${t.tenant}&limit=2`)).json;
    assert.equal(page.data.length, 2);
    assert.equal(page.has_more, true);
    assert.equal(page.first_id, page.data[0].id);
    assert.equal(page.last_id, page.data[1].id);
    const rest = (await api(s.adminUrl, 'GET', `/admin/v1/budgets?tenant_id=${t.tenant}&after=${page.last_id}`)).json;
    const all = [...page.data, ...rest.data];
    assert.equal(rest.has_more, false);
    assert.equal(all.length, 5);
    for (const b of all) {
      assert.ok(['used', 'held', 'remaining', 'resets_at'].every((f) => f in b), JSON.stringify(b));
      if (listed[b.id]) assert.equal(b.used, listed[b.id].used, b.id);
    }
    assert.equal(all.find((b) => b.id === key2.id).resets_at, null);
    assert.equal(all.find((b) => b.id === disabled.id).used, 0, 'a disabled budget shows its counters too');
  });
});
