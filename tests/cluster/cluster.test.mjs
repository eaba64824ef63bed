// `make cluster-up`'s cluster (scripts/cluster.sh) on free ports: three gateways behind HAProxy
// share the load, Redis Cluster has three masters with a replica each, and gateways join and
// leave without losing a request: the rolling restart under load, and a plain SIGTERM (the
// gateway's /readyz turns 503, HAProxy's health check takes it out, connections it refuses are
// retried on another gateway). Every 200 is in the ledger exactly once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { sleep, waitFor } from '../lib/harness.mjs';
import { startCluster } from './cluster_lib.mjs';
import { startLoad } from './load.mjs';

describe('a cluster on one machine (scripts/cluster.sh)', () => {
  let c;
  before(async () => { c = await startCluster(); });
  after(() => { c?.stop(); });

  // Every request answered 200 has exactly one ledger row, once the gateways have flushed.
  async function billedOnce(results) {
    const ok = results.filter((r) => r.status === 200);
    const ids = ok.map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
    const list = ids.map((id) => `'${id}'`).join(',');
    await waitFor(() => Number(c.value(`SELECT count(*) FROM usage_events WHERE request_id IN (${list})`)) === ids.length,
      { timeoutMs: 20000, what: `${ids.length} ledger rows` });
    const rows = c.psql(`SELECT request_id, count(*), sum(prompt_tokens + completion_tokens) FROM usage_events
      WHERE request_id IN (${list}) GROUP BY request_id`);
    assert.equal(rows.length, ids.length);
    const tokens = new Map(rows.map(([id, n, t]) => { assert.equal(n, '1', id); return [id, Number(t)]; }));
    for (const r of ok) assert.equal(tokens.get(r.id), r.tokens, `${r.id}: the ledger bills what the client saw`);
    return ok.length;
  }

  test('the shape: three gateways UP behind HAProxy, each serving; three masters with a replica each', async () => {
    await c.waitGatewaysUp();
    const roles = c.redisPorts.map((p) => c.redis(p, 'ROLE').split('\n')[0]);
    assert.deepEqual(roles.filter((r) => r === 'master').length, 3, roles.join());
    assert.deepEqual(roles.filter((r) => r === 'slave').length, 3, roles.join());
    const load = startLoad(c.url, c.key, { clients: 6, maxTokens: 4 });
    await sleep(3000);
    const results = await load.stop();
    assert.ok(results.length >= 6, `${results.length} requests`);
    assert.deepEqual(results.filter((r) => r.status !== 200), []);
    await billedOnce(results);
    // Each gateway wrote usage of its own (its own usage log), so HAProxy spread the load.
    for (const n of [1, 2, 3]) {
      const log = path.join(c.dir, `gw${n}`, 'usage.log');
      assert.ok(existsSync(log) && readFileSync(log, 'utf8').includes('"status":200'), `gw${n} served`);
    }
    // The demo tenant's settings file points clients at HAProxy.
    assert.equal(c.url, `http://127.0.0.1:${c.base}`);
  });

  test('rolling restart under load: every request answered 200 and billed once', async () => {
    const pids = [1, 2, 3].map((n) => c.pid(`gw${n}`));
    const load = startLoad(c.url, c.key, { clients: 6, maxTokens: 4 });
    await sleep(1000);
    const started = Date.now();
    c.sh('rolling-restart');
    const tookMs = Date.now() - started;
    await sleep(1000);
    const results = await load.stop();
    const after = [1, 2, 3].map((n) => c.pid(`gw${n}`));
    for (let i = 0; i < 3; ++i) assert.notEqual(after[i], pids[i], `gw${i + 1} was restarted`);
    assert.deepEqual(results.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.error ?? r.text}`), []);
    const n = await billedOnce(results);
    assert.ok(n >= 10, `${n} requests during ${tookMs} ms`);
    await c.waitGatewaysUp();
  });

  test('SIGTERM alone: the stopping gateway leaves the pool and no request is lost', async () => {
    const load = startLoad(c.url, c.key, { clients: 6, maxTokens: 4 });
    await sleep(1000);
    process.kill(c.pid('gw2'), 'SIGTERM');
    await waitFor(() => c.lbServer(2).status.startsWith('DOWN'), { timeoutMs: 5000, what: 'HAProxy marks gw2 down' });
    await sleep(1500);
    c.sh('start-gateway', '2');
    await c.waitGatewaysUp();
    await sleep(500);
    const results = await load.stop();
    assert.deepEqual(results.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.error ?? r.text}`), []);
    await billedOnce(results);
  });
});
