// Upstream replicas against real development upstream processes: weighted balancing, a replica
// killed and restarted under load (nothing retryable lost, ejection and re-admission and the
// active health check in /metrics), the retry budget when every replica fails, 429 with a
// short Retry-After retried, a stream that relayed bytes not retried, the concurrency cap's
// 503s, and (real PostgreSQL and Redis) the ledger row's endpoint and attempts, the budget hold
// of a request the cap refused released, and a version 3 journal record replayed.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { binDir, chatBody, freePort, postJson, sleep, startProcess, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { api, chat, dbConfig, makeTenant, spoolSegment } from '../lib/ledger.mjs';

// A development upstream on `port` (a replica), ready when this resolves.
async function startReplica(port, args = []) {
  const p = startProcess(path.join(binDir, 'tollgate-dev-upstream'),
    ['--listen', `127.0.0.1:${port}`, ...args]);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/v1/models`)).ok,
    { what: `replica on ${port}`, timeoutMs: 5000 });
  return p;
}
const stats = async (port) => (await fetch(`http://127.0.0.1:${port}/_dev/stats`)).json();

// Replicas named a, b, c... with their fixture arguments and weights, behind one gateway whose
// upstream `pool` (with `upstream` settings) serves model dev-echo; `more` adds upstreams over
// the same replicas (or, for a function of the endpoints, the settings it returns), with
// models named after them.
async function replicaStack({ replicas, upstream = {}, more = {}, threads = 1, config = {} }) {
  const ports = [];
  for (let i = 0; i < replicas.length; i += 1) ports.push(await freePort());
  const procs = [];
  for (let i = 0; i < replicas.length; i += 1) procs.push(await startReplica(ports[i], replicas[i].args ?? []));
  const names = replicas.map((_, i) => String.fromCharCode(97 + i));
  const endpoints = replicas.map((r, i) => ({
    base_url: `http://127.0.0.1:${ports[i]}/v1`, name: names[i], weight: r.weight ?? 1,
  }));
  const upstreams = { pool: { endpoints, ...upstream } };
  const models = { 'dev-echo': { upstream: 'pool' } };
  for (const [name, settings] of Object.entries(more)) {
    upstreams[name] = typeof settings === 'function' ? settings(endpoints) : { endpoints, ...settings };
    models[name] = { upstream: name, upstream_model: 'dev-echo' };
  }
  const s = await startStack({ config: { upstreams, models, server: { threads }, ...config } });
  return {
    s, ports, procs, names,
    async metrics() { return (await fetch(`${s.adminUrl}/metrics`)).text(); },
    async stop() {
      await s.stop();
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

// The value of one sample in a Prometheus text exposition (0 when absent).
function metric(text, name, labels = {}) {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.includes('{') ? line.slice(line.indexOf('{') + 1, line.indexOf('}')) : '';
    const have = labelText ? labelText.split(',') : [];
    if (want.every((w) => have.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

function promtoolCheck(text) {
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(check.error, undefined, 'promtool is installed');
  assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
}

const ask = (s, content, extra = {}) => postJson(`${s.url}/v1/chat/completions`, chatBody(content, extra));

describe('upstream replicas', { timeout: 150_000 }, () => {
  test('weights are respected: 3:1 at rest; every endpoint healthy in /metrics', async () => {
    const r = await replicaStack({ replicas: [{ weight: 3 }, { weight: 1 }] });
    try {
      const n = 400;
      for (let i = 0; i < n; i += 4) {
        const batch = await Promise.all([0, 1, 2, 3].map(() => ask(r.s, 'weighted')));
        for (const res of batch) { assert.equal(res.status, 200); await res.text(); }
      }
      const [a, b] = [await stats(r.ports[0]), await stats(r.ports[1])];
      assert.equal(a.requests + b.requests, n);
      const share = a.requests / n;
      assert.ok(share > 0.65 && share < 0.85, `a took ${a.requests} of ${n}`);
      const text = await r.metrics();
      promtoolCheck(text);
      assert.equal(metric(text, 'tollgate_upstream_endpoint_healthy', { upstream: 'pool', endpoint: 'a' }), 1);
      assert.equal(metric(text, 'tollgate_upstream_endpoint_healthy', { upstream: 'pool', endpoint: 'b' }), 1);
      assert.equal(metric(text, 'tollgate_upstream_endpoint_attempts_total', { upstream: 'pool', endpoint: 'a' }), a.requests);
      assert.equal(metric(text, 'tollgate_upstream_endpoint_in_flight', { upstream: 'pool', endpoint: 'a' }), 0);
      const rec = r.s.usageRecords().at(-1);
      assert.ok(['a', 'b'].includes(rec.upstream_endpoint), JSON.stringify(rec));
      assert.equal(rec.attempts, 1);
    } finally {
      await r.stop();
    }
  });

  test('a replica killed and restarted under load: no request lost, ejected and re-admitted', async () => {
    const r = await replicaStack({
      replicas: [{}, {}, {}],
      threads: 2,
      upstream: {
        eject_consecutive_failures: 2, ejection_base_ms: 300, ejection_max_ms: 1200, attempts_max: 3,
        retry_budget_percent: 100, retry_budget_min_retries: 1000,
        health_check_path: '/v1/models', health_check_interval_ms: 100, health_check_timeout_ms: 200,
        health_check_unhealthy_threshold: 2, health_check_healthy_threshold: 1,
      },
    });
    try {
      let stop = false;
      const statuses = new Map();
      let sent = 0;
      const worker = async () => {
        while (!stop) {
          sent += 1;
          const res = await ask(r.s, 'under load tg:first_byte_delay_ms=15');
          await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      await sleep(400);
      await r.procs[1].stop('SIGKILL');
      // While b is down: out of rotation in /metrics (ejected or failing its health checks).
      await waitFor(async () => metric(await r.metrics(), 'tollgate_upstream_endpoint_healthy',
        { upstream: 'pool', endpoint: 'b' }) === 0, { what: 'b unhealthy', timeoutMs: 3000 });
      await sleep(600);
      const down = await r.metrics();
      assert.ok(metric(down, 'tollgate_upstream_endpoint_health_checks_total',
        { upstream: 'pool', endpoint: 'b', result: 'fail' }) >= 2);
      r.procs[1] = await startReplica(r.ports[1]);
      // Re-admitted: healthy again, and the new process takes requests.
      await waitFor(async () => metric(await r.metrics(), 'tollgate_upstream_endpoint_healthy',
        { upstream: 'pool', endpoint: 'b' }) === 1, { what: 'b healthy again', timeoutMs: 5000 });
      await waitFor(async () => (await stats(r.ports[1])).requests > 10,
        { what: 'b takes traffic again', timeoutMs: 5000 });
      stop = true;
      await Promise.all(workers);
      assert.deepEqual([...statuses.keys()], [200], `statuses ${JSON.stringify([...statuses])} of ${sent}`);
      assert.equal(statuses.get(200), sent);
      const text = await r.metrics();
      promtoolCheck(text);
      // Ejected by its failures (before its health checks failed twice) and never otherwise.
      assert.ok(metric(text, 'tollgate_upstream_endpoint_ejections_total', { upstream: 'pool', endpoint: 'b' }) >= 1);
      assert.equal(metric(text, 'tollgate_upstream_endpoint_ejections_total', { upstream: 'pool', endpoint: 'a' }), 0);
      const failures = metric(text, 'tollgate_upstream_endpoint_failures_total', { upstream: 'pool', endpoint: 'b' });
      let retries = 0;
      for (const reason of ['connect_error', 'closed', 'status_502', 'status_503']) {
        retries += metric(text, 'tollgate_upstream_retries_total', { upstream: 'pool', reason });
      }
      // Every failed attempt at b was retried elsewhere (the budget is ample here).
      assert.equal(retries, failures, text);
      assert.equal(metric(text, 'tollgate_upstream_retry_budget_exhausted_total', { upstream: 'pool' }), 0);
      const recs = r.s.usageRecords();
      assert.equal(recs.length, sent);
      assert.equal(recs.filter((x) => x.attempts > 1).length, retries);
      for (const x of recs.filter((y) => y.attempts > 1)) assert.notEqual(x.upstream_endpoint, 'b');
    } finally {
      await r.stop();
    }
  });

  test('the retry budget caps retries when every replica fails', async () => {
    const r = await replicaStack({
      replicas: [{ args: ['--fail-status', '503'] }, { args: ['--fail-status', '503'] }],
      upstream: { eject_consecutive_failures: 0, retry_budget_percent: 10, retry_budget_min_retries: 3 },
    });
    try {
      const n = 50;
      for (let i = 0; i < n; i += 1) {
        const res = await ask(r.s, 'brown-out');
        assert.equal(res.status, 503);
        await res.text();
      }
      const text = await r.metrics();
      // 3 retries of floor plus 10 % of 50 requests.
      assert.equal(metric(text, 'tollgate_upstream_retries_total', { upstream: 'pool', reason: 'status_503' }), 8);
      assert.equal(metric(text, 'tollgate_upstream_retry_budget_exhausted_total', { upstream: 'pool' }), 42);
      const [a, b] = [await stats(r.ports[0]), await stats(r.ports[1])];
      assert.equal(a.requests + b.requests, n + 8);
      assert.equal(r.s.usageRecords().filter((x) => x.attempts === 2).length, 8);
    } finally {
      await r.stop();
    }
  });

  test('429 with a short Retry-After is retried on another replica; a long one is relayed', async () => {
    const r = await replicaStack({
      replicas: [{ args: ['--fail-status', '429', '--retry-after', '1'] }, {}],
      upstream: { retry_after_max_ms: 1000, retry_budget_min_retries: 100 },
      more: { strict: { retry_after_max_ms: 500 } },
    });
    try {
      for (let i = 0; i < 30; i += 1) {
        const res = await ask(r.s, 'throttled');
        assert.equal(res.status, 200, await res.text());
      }
      const text = await r.metrics();
      const retried = metric(text, 'tollgate_upstream_retries_total', { upstream: 'pool', reason: 'status_429' });
      assert.ok(retried > 0);
      assert.equal((await stats(r.ports[0])).requests, retried);
      const recs = r.s.usageRecords();
      assert.equal(recs.filter((x) => x.attempts === 2 && x.upstream_endpoint === 'b').length, retried);
      // Retry-After 1 s is over the strict upstream's 500 ms: its 429s reach the client.
      const statuses = [];
      for (let i = 0; i < 30; i += 1) {
        const res = await postJson(`${r.s.url}/v1/chat/completions`, chatBody('strict', { model: 'strict' }));
        statuses.push(res.status);
        await res.text();
      }
      assert.ok(statuses.includes(429) && statuses.includes(200), statuses.join());
      assert.equal(metric(await r.metrics(), 'tollgate_upstream_retries_total', { upstream: 'strict', reason: 'status_429' }), 0);
    } finally {
      await r.stop();
    }
  });

  test('a stream that relayed bytes is not retried when its replica dies', async () => {
    const r = await replicaStack({ replicas: [{}, {}] });
    try {
      const res = await ask(r.s, 'a b c d e f tg:die_after=2 tg:chunk_delay_ms=20', { stream: true });
      assert.equal(res.status, 200);
      const body = await res.text();
      assert.match(body, /Echo:/);
      assert.match(body, /"error"/);  // the in-band error after the relayed chunks
      const [a, b] = [await stats(r.ports[0]), await stats(r.ports[1])];
      assert.equal(a.requests + b.requests, 1);
      const rec = r.s.usageRecords().at(-1);
      assert.equal(rec.attempts, 1);
      assert.equal(rec.stream, true);
      const text = await r.metrics();
      assert.equal(metric(text, 'tollgate_upstream_retries_total', { upstream: 'pool', reason: 'closed' }), 0);
    } finally {
      await r.stop();
    }
  });

  test('the concurrency cap: a full queue and a queue timeout are 503s in the OpenAI shape', async () => {
    const r = await replicaStack({
      replicas: [{}],
      upstream: { concurrent_requests_max: 1, queue_requests_max: 1, queue_timeout_ms: 300 },
    });
    try {
      const slow = ask(r.s, 'slow tg:first_byte_delay_ms=1200');
      await sleep(100);
      const queued = ask(r.s, 'queued');
      await sleep(50);
      const started = Date.now();
      const full = await ask(r.s, 'no room');
      assert.equal(full.status, 503);
      assert.ok(Date.now() - started < 250, 'a full queue answers at once');
      const fullBody = await full.json();
      assert.equal(fullBody.error.code, 'upstream_overloaded');
      assert.equal(fullBody.error.type, 'api_error');
      assert.match(fullBody.error.message, /Upstream 'pool' is at its concurrency limit/);
      assert.equal(full.headers.get('retry-after'), '1');
      const timedOut = await queued;
      assert.equal(timedOut.status, 503);
      assert.match((await timedOut.json()).error.message, /no slot came free within 300 ms/);
      assert.equal((await slow).status, 200);
      // Once the slot is free, a request goes through; a queued one gets the slot handed over.
      const a = ask(r.s, 'first tg:first_byte_delay_ms=200');
      await sleep(50);
      const b = ask(r.s, 'second');
      assert.deepEqual([(await a).status, (await b).status], [200, 200]);
      const text = await r.metrics();
      assert.equal(metric(text, 'tollgate_upstream_queue_rejections_total', { upstream: 'pool', reason: 'queue_full' }), 1);
      assert.equal(metric(text, 'tollgate_upstream_queue_rejections_total', { upstream: 'pool', reason: 'queue_timeout' }), 1);
      const refused = r.s.usageRecords().filter((x) => x.status === 503);
      assert.equal(refused.length, 2);
      for (const x of refused) {
        assert.equal(x.error_code, 'upstream_overloaded');
        assert.equal(x.attempts, 0);
      }
      assert.equal((await stats(r.ports[0])).requests, 3);
    } finally {
      await r.stop();
    }
  });
});

describe('upstream replicas on the ledger (real PostgreSQL and Redis)', { timeout: 120_000 }, () => {
  let pg;
  let redis;
  let r;
  const rowOf = (id) => pg.query(`SELECT coalesce(upstream_endpoint, '<null>'), coalesce(attempts::text, '<null>'),
    coalesce(routing_rule, '<null>'), status FROM usage_events WHERE request_id = '${id}'`)[0];
  const waitRow = (id) => waitFor(() => rowOf(id) !== undefined, { what: `the row of ${id}` }).then(() => rowOf(id));

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-replicas-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    r = await replicaStack({
      replicas: [{ args: ['--fail-status', '503'] }, {}],
      upstream: { eject_consecutive_failures: 0 },
      more: { capped: (endpoints) => ({ endpoints: [endpoints[1]], concurrent_requests_max: 1 }) },
      config: {
        ...dbConfig(pg, dir),
        budgets: redis.budgetsConfig,
        batches: { poll_interval_ms: 50, lease_ms: 2000, concurrency: 4 },
      },
    });
  });
  after(async () => {
    await r?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('the row records the endpoint that answered and the attempts; the finance view shows them', async () => {
    const t = await makeTenant(r.s.adminUrl, 'Replicas');
    const seen = new Set();
    for (let i = 0; i < 12; i += 1) {
      const res = await chat(r.s.url, t.key, 'ledgered');
      assert.equal(res.status, 200);
      await res.text();
      const row = await waitRow(res.headers.get('x-request-id'));
      assert.equal(row[0], 'b');
      assert.equal(row[2], '<null>');
      seen.add(row[1]);
    }
    // Requests that first drew the failing replica took two attempts; the others one.
    assert.deepEqual([...seen].sort(), ['1', '2']);
    const view = pg.query(`SELECT count(*) FROM finance.usage_events
      WHERE tenant_id = '${t.tenant}' AND upstream_endpoint = 'b' AND attempts >= 1`, { role: 'tollgate_finance' });
    assert.equal(view[0][0], '12');
  });

  test('a request the concurrency cap refuses is recorded with no attempt; its hold is released', async () => {
    const t = await makeTenant(r.s.adminUrl, 'ReplicasCapped');
    const b = await api(r.s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 100000 } });
    assert.equal(b.status, 201, b.text);
    const body = (content) => ({ model: 'capped', max_tokens: 50, messages: [{ role: 'user', content }] });
    const post = (content) => fetch(`${r.s.url}/v1/chat/completions`, {
      method: 'POST', body: JSON.stringify(body(content)),
      headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
    });
    const slow = post('slow tg:first_byte_delay_ms=600');
    await sleep(150);
    const refused = await post('refused');
    assert.equal(refused.status, 503);
    assert.equal((await refused.json()).error.code, 'upstream_overloaded');
    assert.deepEqual(await waitRow(refused.headers.get('x-request-id')), ['<null>', '<null>', '<null>', '503']);
    const done = await slow;
    assert.equal(done.status, 200);
    const slowId = done.headers.get('x-request-id');
    await done.text();
    const slowRow = await waitRow(slowId);
    // Every hold is settled: what the budget counts is what the ledger billed.
    await waitFor(() => redis.counters(t.tenant)[b.json.id]?.held === 0, { what: 'no hold left' });
    const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}'`));
    assert.equal(redis.counters(t.tenant)[b.json.id].used, billed);
    assert.ok(billed > 0);
    assert.deepEqual(slowRow, ['b', '1', '<null>', '200']);
  });

  test('batch lines the concurrency cap refuses wait and run again; none fails for it', async () => {
    const t = await makeTenant(r.s.adminUrl, 'ReplicasBatch');
    const budget = await api(r.s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 100000 } });
    assert.equal(budget.status, 201, budget.text);
    const client = new OpenAI({ baseURL: `${r.s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const lines = [];
    for (let i = 0; i < 6; i += 1) {
      lines.push(JSON.stringify({ custom_id: `job-${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: 'capped', max_tokens: 20, messages: [{ role: 'user', content: `line ${i} tg:first_byte_delay_ms=150` }] } }));
    }
    const file = await client.files.create({
      file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'capped.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({
      input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    let batch;
    await waitFor(async () => {
      batch = await client.batches.retrieve(created.id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(batch.status);
    }, { timeoutMs: 40000, intervalMs: 100, what: 'the batch to end' });
    assert.equal(batch.status, 'completed');
    assert.deepEqual(batch.request_counts, { total: 6, completed: 6, failed: 0 });
    const out = (await (await client.files.content(batch.output_file_id)).text()).split('\n').filter(Boolean)
      .map((l) => JSON.parse(l));
    assert.equal(out.length, 6);
    for (const o of out) assert.equal(o.response.status_code, 200);
    const text = await r.metrics();
    assert.ok(metric(text, 'tollgate_upstream_queue_rejections_total', { upstream: 'capped', reason: 'queue_full' }) > 0,
      'lines met the cap');
    // Only the answered runs are on the ledger.
    assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`), '6');
    // A line turned away gave its hold back and held again when it ran: the budget counts
    // exactly what the ledger billed (a rerun under a settled request id would count nothing).
    await waitFor(() => redis.counters(t.tenant)[budget.json.id]?.held === 0, { what: 'no hold left' });
    const billed = Number(pg.value(`SELECT sum(prompt_tokens + completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}'`));
    assert.ok(billed > 0);
    assert.equal(redis.counters(t.tenant)[budget.json.id].used, billed);
  });

  test('a version 3 journal record replays with endpoint, attempts and rule NULL', async () => {
    const t = await makeTenant(r.s.adminUrl, 'ReplicasReplay');
    const res = await chat(r.s.url, t.key, 'replay me');
    const id = res.headers.get('x-request-id');
    await res.text();
    await waitRow(id);
    const cols = 'tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream, stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, usage_reported, estimated, latency_us, ttft_us, client_disconnected, error_code, client_request_id, end_user, ts.tags, session_id';
    const v3Line = execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${cols} FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id WHERE request_id = '${id}') TO STDOUT`], { encoding: 'utf8' }).trim();
    const v4Line = execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${cols}, upstream_endpoint, attempts, routing_rule FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id WHERE request_id = '${id}') TO STDOUT`],
    { encoding: 'utf8' }).trim();
    const v3 = `\0` + `3\t\\N\t\t\t${v3Line.replace(id, `${id}_v3`)}\n`;
    const v4 = `\0` + `4\t\\N\t\t\t${v4Line.replace(id, `${id}_v4`)}\n`;
    await r.s.gateway.stop();
    const spoolDir = JSON.parse(readFileSync(r.s.configPath, 'utf8')).ledger.spool_dir;
    writeFileSync(path.join(spoolDir, 'ledger-9200000000000001.spool'), spoolSegment([v3, v4]));
    await r.s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => f.startsWith('ledger-9200000000000001')).length === 0,
      { what: 'spool replayed' }).catch((e) => { throw new Error(`${e.message}\n${r.s.gateway.output()}`); });
    assert.deepEqual((await waitRow(`${id}_v3`)).slice(0, 3), ['<null>', '<null>', '<null>']);
    const v4Row = await waitRow(`${id}_v4`);
    assert.equal(v4Row[0], 'b');
    assert.ok(['1', '2'].includes(v4Row[1]));
  });
});
