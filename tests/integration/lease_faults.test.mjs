// Budget leases under a lost answer: the gateway talks to a real Redis through a proxy that can
// swallow Redis's replies while passing every command on. A lease flush that Redis runs but
// whose answer never arrives times out in the gateway and is sent again; Redis must apply it
// once (lease_engine.hpp, the flush sequence), so its counter still equals the ledger (real
// PostgreSQL) to the token and holds nothing once the leases are given back.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { api, makeTenant } from '../lib/ledger.mjs';
import { budgetConfig, addBudget, ask, leaseEvents } from '../lib/budgets.mjs';

// A TCP proxy to `port`: commands always reach Redis; while swallowing, what Redis answers is
// dropped, and once that stops every connection that lost part of an answer is closed (its
// replies would no longer match its commands). It counts the budget-change messages Redis
// pushes to subscribers, by tenant.
async function replySwallowingProxy(port) {
  const proxy = { swallowing: false, swallowed: 0, pairs: new Set(), changes: new Map() };
  const server = net.createServer((client) => {
    const redis = net.connect(port, '127.0.0.1');
    const pair = { client, redis, lost: false };
    proxy.pairs.add(pair);
    client.on('data', (d) => redis.write(d));
    redis.on('data', (d) => {
      if (proxy.swallowing) {
        proxy.swallowed += d.length;
        pair.lost = true;
        return;
      }
      for (const m of d.toString('latin1').matchAll(/tg:budgets:changed\r\n\$\d+\r\n([^\r]*)\r\n/g)) {
        proxy.changes.set(m[1], (proxy.changes.get(m[1]) ?? 0) + 1);
      }
      client.write(d);
    });
    const end = () => { client.destroy(); redis.destroy(); proxy.pairs.delete(pair); };
    client.on('close', end);
    redis.on('close', end);
    client.on('error', end);
    redis.on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.address = `127.0.0.1:${server.address().port}`;
  proxy.swallow = (on) => {
    proxy.swallowing = on;
    if (on) return;
    for (const p of proxy.pairs) {
      if (p.lost) { p.client.destroy(); p.redis.destroy(); }
    }
  };
  proxy.close = () => {
    for (const p of proxy.pairs) { p.client.destroy(); p.redis.destroy(); }
    server.close();
  };
  return proxy;
}

describe('budget leases when Redis\'s answer to a flush is lost (real PostgreSQL and Redis)', () => {
  let pg;
  let redis;
  let proxy;
  let s;
  const dir = path.join('/tmp', `tollgate-lease-faults-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    proxy = await replySwallowingProxy(redis.port);
    // Leases far from their limit are flushed only once a minute, so the flushes of this test
    // are the ones a budget change asks for, and the resend of a batch Redis did not answer
    // (both at the next 20 ms tick).
    s = await startStack({ config: budgetConfig(pg, { budgetsConfig: { redis: proxy.address } }, dir,
      { lease_flush_ms: 20, lease_flush_far_ms: 60000, command_timeout_ms: 1500 }) });
  });
  after(async () => {
    await s?.stop();
    proxy?.close();
    redis?.stop();
    pg?.stop();
  });

  test('a flush Redis ran but did not answer is sent again and applied once: Redis == ledger', async () => {
    const t = await makeTenant(s.adminUrl, 'LostAnswer');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 1_000_000 });
    // Each budget change comes back to the gateway over pub/sub a moment later and closes the
    // tenant's leases again; the steps below wait for those echoes.
    const echoes = () => proxy.changes.get(t.tenant) ?? 0;
    await waitFor(() => echoes() === 1, { what: 'the new budget announced' });
    let seen = 0;
    const send = async (n, tag) => {
      for (let i = 0; i < n; i += 1) {
        const res = await ask(s.url, t.key, { max_tokens: 8 + i }, `lost answer ${tag} ${i}`);
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        seen += body.usage.total_tokens;
      }
    };
    const used = () => redis.counters(t.tenant)[b.id]?.used ?? 0;
    await send(6, 'first');
    // A budget change flushes the lease (and loads the flush script into Redis, so that the
    // lost answer below is the script's). Its echo closes the tenant's leases once more before
    // the second requests take a new one.
    let limit = 2_000_000;
    const change = async () => {
      limit += 1;
      const r = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${b.id}`, { body: { limit } });
      assert.equal(r.status, 200, r.text);
    };
    await change();
    await waitFor(() => used() === seen, { what: 'the first flush' });
    await waitFor(() => echoes() === 2, { what: 'the change coming back over pub/sub' });
    await send(6, 'second');
    assert.ok(used() < seen, 'the second requests\' usage is not flushed yet');
    const failedBefore = (await leaseEvents(s.adminUrl)).flush_failed;
    proxy.swallow(true);
    // A budget change closes the tenant's lease and flushes it: settled usage and the unused
    // rest in one batch, which Redis runs and whose answer is lost.
    await change();
    await waitFor(async () => (await leaseEvents(s.adminUrl)).flush_failed > failedBefore, { what: 'a flush timing out' });
    assert.ok(proxy.swallowed > 0, 'Redis answered something that was dropped');
    // Redis did run it: the usage is there already.
    assert.equal(used(), seen, 'the lost batch was applied in Redis');
    proxy.swallow(false);
    // The unanswered batch is sent again at the short interval, with its number, once the
    // gateway's connection is back; Redis finds it applied.
    await waitFor(async () => (await leaseEvents(s.adminUrl)).flush_repeated > 0,
      { what: 'the batch sent again and found applied' });
    const [sequenceKey] = redis.keys(`tg:{${t.tenant}}:f:*`);
    assert.ok(sequenceKey, 'the gateway\'s flush sequence key for the tenant');
    assert.ok(Number(redis.cli('PTTL', sequenceKey).replace(/\D/g, '')) > 60000, 'it outlives the holds');
    await waitFor(() => redis.counters(t.tenant)[b.id].held === 0, { what: 'no hold left' });
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === 12,
      { what: '12 ledger rows' });
    const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.equal(billed, seen, 'the ledger bills what the clients saw');
    assert.equal(redis.counters(t.tenant)[b.id].used, billed, 'Redis settled == ledger: the batch counted once');
    assert.equal(redis.counters(t.tenant)[b.id].held, 0);
    // The gateway still serves and counts.
    const after = await ask(s.url, t.key, { max_tokens: 4 }, 'after the fault');
    assert.equal(after.status, 200);
    await after.json();
  });
});
