// Fault tests of the usage ledger: PostgreSQL killed (-9) under a steady request load, and the
// gateway killed (-9) while it spools. Afterwards every request that got a response has exactly
// one usage row: nothing lost, nothing written twice.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startStack, waitFor, sleep } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, makeTenant, chat, api, givePlan, expectRatedOnce, refPrice, planTiers } from '../lib/ledger.mjs';

// Sends requests on `workers` connections until `stop()` says so; collects the request id of
// every response that came back (any status) and, for each, when it was sent and its status.
function load(url, key, workers) {
  let running = true;
  const ids = [];
  const responses = [];
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; running; i += 1) {
      const sent = performance.now();
      try {
        const res = await chat(url, key, `load ${w} ${i}`);
        await res.text();
        ids.push(res.headers.get('x-request-id'));
        responses.push({ sent, status: res.status });
      } catch {
        await sleep(20);  // the gateway itself is down: no response, nothing to bill
      }
    }
  });
  return {
    ids,
    // The statuses of the requests sent between `from` and `to` (performance.now() times).
    sentBetween: (from, to) => responses.filter((r) => r.sent >= from && r.sent < to)
      .map((r) => r.status),
    async stop() { running = false; await Promise.all(loops); },
  };
}

// `gatewayLog` goes into the failure message: a missing replay is diagnosed from it.
// `cutResponses`: how many requests may have reached the upstream and been journaled while
// their response was cut by a kill -9 of the gateway (at most one per load worker). Those are
// billed too (invariant 2: a request that reached a backend has one usage row) though the
// client saw no response.
async function expectExactlyOnce(pg, tenant, ids, gatewayLog, cutResponses = 0) {
  // How many of `ids` have a row (read back whole: an IN list of thousands of ids is too long
  // for psql's command line).
  const count = () => {
    const have = new Set(pg.query(`SELECT request_id FROM usage_events WHERE tenant_id = '${tenant}'`).map((r) => r[0]));
    return ids.filter((id) => have.has(id)).length;
  };
  try {
    await waitFor(() => count() >= ids.length, { timeoutMs: 20000, what: `${ids.length} rows` });
  } catch (e) {
    throw new Error(`${e.message} (have ${count()} of them)\ngateway output:\n${gatewayLog()}`);
  }
  const rows = pg.query(`SELECT request_id, count(*) FROM usage_events WHERE tenant_id = '${tenant}' GROUP BY 1`);
  const counts = new Map(rows.map(([id, n]) => [id, Number(n)]));
  for (const id of ids) assert.equal(counts.get(id), 1, `request ${id} has one row`);
  for (const [id, n] of counts) assert.equal(n, 1, `request ${id} has one row`);
  assert.ok(rows.length >= ids.length && rows.length <= ids.length + cutResponses,
    `${rows.length} rows for ${ids.length} responses (at most ${cutResponses} cut by the kill)`);
}

// Replays and retried batches rate each event once: the period's charges are exactly F(total).
function expectRatedNoMatterTheFaults(pg, tenant) {
  const totals = expectRatedOnce(assert, pg, tenant);
  assert.equal(totals.cost, refPrice(planTiers, Number(totals.input)) + refPrice(planTiers, Number(totals.output)));
}

describe('ledger under faults (real PostgreSQL, kill -9)', () => {
  let pg;
  let s;
  let t;
  const dir = path.join('/tmp', `tollgate-faults-${process.pid}`);
  // Outages must never look like refused rows: nothing is set aside as `.rejected`, in the
  // spool folder or a journal lane's folder in it.
  const rejected = () => (existsSync(path.join(dir, 'spool'))
    ? readdirSync(path.join(dir, 'spool'), { recursive: true }).filter((f) => f.endsWith('.rejected')) : []);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: dbConfig(pg, dir) });
    t = await makeTenant(s.adminUrl, 'Faults');
    await givePlan(s.adminUrl, t.tenant);
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('PostgreSQL killed under load: the gateway keeps serving, spools, replays', async () => {
    const l = load(s.url, t.key, 4);
    await sleep(800);
    pg.kill9();
    const killedAt = performance.now();
    // Longer than the key cache's 2 s: lookups fail during the outage, stale keys still serve.
    await sleep(2500);
    const spooled = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(spooled, /tollgate_ledger_spool_bytes [1-9]/, 'events spooled while the database is down');
    const restartedAt = performance.now();
    pg.start();
    await sleep(800);
    await l.stop();
    // Only the requests sent while PostgreSQL was down: each of them served.
    const outage = l.sentBetween(killedAt, restartedAt);
    assert.ok(outage.length >= 8, `${outage.length} requests during the outage`);
    assert.deepEqual(outage.filter((st) => st !== 200), [],
      `every request sent during the outage is served (${outage.length} sent)`);
    await expectExactlyOnce(pg, t.tenant, l.ids, () => s.gateway.output());
    expectRatedNoMatterTheFaults(pg, t.tenant);
    assert.deepEqual(rejected(), []);
    const metrics = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(metrics, /tollgate_ledger_events_replayed_total [1-9]/);
  });

  test('gateway killed while spooling, then restarted: the spool replays once', async () => {
    // The admin pool may still be in its reconnect backoff after the previous test's restart.
    await waitFor(async () => (await api(s.adminUrl, 'GET', '/admin/v1/tenants?limit=1')).status === 200,
      { timeoutMs: 10000, what: 'admin API back' });
    const t2 = await makeTenant(s.adminUrl, 'Faults2');
    await givePlan(s.adminUrl, t2.tenant);
    const warm = await chat(s.url, t2.key, 'warm the key cache');
    assert.equal(warm.status, 200);
    await warm.text();
    pg.kill9();
    const l = load(s.url, t2.key, 4);
    await sleep(1000);
    s.gateway.child.kill('SIGKILL');
    await l.stop();
    const ids = [warm.headers.get('x-request-id'), ...l.ids];
    assert.ok(ids.length > 10, `${ids.length} responses before the kill`);
    await s.gateway.exited;
    await s.restartGateway();  // the database is still down: the spool waits
    await sleep(300);
    pg.start();
    await expectExactlyOnce(pg, t2.tenant, ids, () => s.gateway.output(), 4);
    expectRatedNoMatterTheFaults(pg, t2.tenant);
    assert.deepEqual(rejected(), []);
  });
});
