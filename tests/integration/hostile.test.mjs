// Integration tests of the gateway against hostile clients (real PostgreSQL, Redis): floods of
// random keys, saturated listeners, unauthenticated uploads, unbounded usage queries, keys
// revoked mid-batch and alert webhooks aimed at the gateway's own network.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startStack, waitFor, sleep, rawExchange, metric } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant, chat, FINANCE } from '../lib/ledger.mjs';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const randomKey = () => `tg-${[...randomBytes(43)].map((b) => BASE62[b % 62]).join('')}`;

// One GET on a new connection from `localAddress`; resolves to the status (0: no answer).
function getFrom(port, target, key, localAddress) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, localAddress, agent: false,
      headers: { authorization: `Bearer ${key}` } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', () => resolve(0));
    req.end();
  });
}

// Bytes a raw client receives for `head` (and optional first body bytes) until the server
// closes or `ms` pass; `closed` says whether the server closed the connection.
function rawRequest(port, head, { body = '', ms = 3000 } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); resolve({ data, closed: false }); }, ms);
    socket.on('connect', () => { socket.write(head); if (body) socket.write(body); });
    socket.on('data', (d) => { data += d.toString('latin1'); });
    socket.on('close', () => { clearTimeout(timer); resolve({ data, closed: true }); });
    socket.on('error', () => {});
  });
}

describe('hostile clients (real PostgreSQL)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-hostile-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: {
      ...dbConfig(pg, dir, { auth: { key_cache_ttl_ms: 60000, unknown_key_lookups_per_s: 5,
        unknown_key_lookup_burst: 20, negative_key_cache_entries: 1000 } }),
      server: { max_connections: 40, admin_max_connections: 10 },
      batches: { enabled: false },
    } });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('a flood of 10,000 random keys: valid keys stay cached, look-ups of unknown keys are limited', async () => {
    const t = await makeTenant(s.adminUrl, 'Flooded');
    assert.equal(await getFrom(s.apiPort, '/v1/models', t.key, '127.0.0.1'), 200);
    assert.equal(await getFrom(s.apiPort, '/v1/models', t.key, '127.0.0.2'), 200);
    const found0 = await metric(s.adminUrl, 'tollgate_auth_lookups_total', 'result="database_found"');
    const hits0 = await metric(s.adminUrl, 'tollgate_auth_lookups_total', 'result="cache"');
    assert.equal(found0, 1, 'the valid key was looked up once');
    const started = Date.now();
    const statuses = new Map();
    let valid = 0;
    const flood = async () => {
      for (let i = 0; i < 500; ++i) {
        const st = await getFrom(s.apiPort, '/v1/models', randomKey(), '127.0.0.2');
        statuses.set(st, (statuses.get(st) ?? 0) + 1);
      }
    };
    const validLoop = async (done) => {
      while (!done.v) {
        for (const from of ['127.0.0.1', '127.0.0.2']) {
          assert.equal(await getFrom(s.apiPort, '/v1/models', t.key, from), 200, `valid key from ${from}`);
          valid += 1;
        }
        await sleep(20);
      }
    };
    const done = { v: false };
    const checker = validLoop(done);
    await Promise.all(Array.from({ length: 20 }, flood));
    done.v = true;
    await checker;
    const elapsedS = (Date.now() - started) / 1000;
    assert.equal([...statuses.values()].reduce((a, b) => a + b, 0), 10000);
    assert.deepEqual([...statuses.keys()].filter((k) => k !== 401 && k !== 429), [], 'only 401s and 429s');
    assert.ok(statuses.get(429) > 5000, `most of the flood limited: ${JSON.stringify([...statuses])}`);
    const found = await metric(s.adminUrl, 'tollgate_auth_lookups_total', 'result="database_found"');
    const unknown = await metric(s.adminUrl, 'tollgate_auth_lookups_total', 'result="database_unknown"');
    const hits = await metric(s.adminUrl, 'tollgate_auth_lookups_total', 'result="cache"');
    assert.equal(found, found0, 'no database look-up of the valid key during the flood');
    assert.ok(hits - hits0 >= valid, `valid keys served from the cache (${hits - hits0} hits, ${valid} requests)`);
    assert.ok(valid > 0);
    assert.ok(unknown <= 20 + 5 * (elapsedS + 1), `unknown-key look-ups bounded: ${unknown} in ${elapsedS} s`);
  });

  test('the API listener saturated up to its limit: the admin listener still answers', async () => {
    const sockets = [];
    try {
      for (let i = 0; i < 40; ++i) {
        sockets.push(await new Promise((resolve, reject) => {
          const c = net.connect(s.apiPort, '127.0.0.1', () => resolve(c));
          c.on('error', reject);
        }));
      }
      await waitFor(async () => await metric(s.adminUrl, 'tollgate_http_connections_active', 'listener="api"') === 40,
        { what: '40 open API connections' });
      // One more on the API: closed at accept, unanswered.
      const extra = await rawRequest(s.apiPort, 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(extra.data, '');
      assert.ok(extra.closed);
      for (let i = 0; i < 5; ++i) {
        const h = await fetch(`${s.adminUrl}/healthz`);
        assert.equal(h.status, 200, 'admin /healthz answers while the API listener is full');
      }
      assert.ok(await metric(s.adminUrl, 'tollgate_http_connections_rejected_total', 'listener="api"') >= 1);
    } finally {
      for (const c of sockets) c.destroy();
    }
  });

  test('an unauthenticated upload is refused before its body: no 100 Continue, nothing read', async () => {
    const head = (auth, length) => 'POST /v1/files HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n' +
      `${auth}Content-Type: multipart/form-data; boundary=b\r\nContent-Length: ${length}\r\n\r\n`;
    for (const auth of ['', `Authorization: Bearer ${randomKey()}\r\n`, 'Authorization: Basic eA==\r\n']) {
      const r = await rawRequest(s.apiPort, head(auth, 150_000_000));
      assert.match(r.data, /^HTTP\/1\.1 401 /, r.data);
      assert.ok(!r.data.includes('100 Continue'), 'no 100 Continue for an unauthenticated upload');
      assert.match(r.data, /"type":"invalid_request_error"/);
      assert.ok(r.closed, 'the connection is closed');
    }
    // Without Expect, the body already on its way: the answer comes before the body is read.
    const noExpect = 'POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 150000000\r\n\r\n';
    const started = Date.now();
    const r = await rawRequest(s.apiPort, noExpect, { body: 'x'.repeat(64 * 1024) });
    assert.match(r.data, /^HTTP\/1\.1 401 /);
    assert.ok(Date.now() - started < 3000);
    assert.ok(await metric(s.adminUrl, 'tollgate_http_requests_total', 'listener="api",route="refused_before_body",status="401"') >= 4);
    // A valid key gets its 100 Continue.
    const t = await makeTenant(s.adminUrl, 'Uploader');
    const ok = await rawRequest(s.apiPort, head(`Authorization: Bearer ${t.key}\r\n`, 10), { ms: 1000 });
    assert.match(ok.data, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
  });

  test('usage queries are bounded: too many buckets, huge or negative times are 400s', async () => {
    const t = await makeTenant(s.adminUrl, 'Reporter');
    const get = (target) => fetch(`${s.url}${target}`, { headers: { authorization: `Bearer ${t.key}` } });
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await get(`/v1/usage?start_time=${now - 3600}&bucket_width=1m`)).status, 200);
    const many = await get('/v1/usage?start_time=0&bucket_width=1m');
    assert.equal(many.status, 400);
    const body = await many.json();
    assert.match(body.error.message, /at most 100000 /);
    assert.equal(body.error.type, 'invalid_request_error');
    const fin = await api(s.adminUrl, 'GET', '/finance/v1/usage?start_time=0&bucket_width=1h', { token: FINANCE });
    assert.equal(fin.status, 400);
    assert.match(fin.json.error.message, /at most 100000 /);
    for (const q of ['start_time=-1', 'start_time=99999999999999999999', 'start_time=253402300800',
      `start_time=${now - 60}&end_time=9223372036854775807`, `start_time=${now - 60}&end_time=-5`,
      `start_time=${now - 60}&end_time=253402300800&format=csv`]) {
      const r = await get(`/v1/usage?${q}`);
      assert.equal(r.status, 400, q);
      assert.match((await r.json()).error.param, /^(start|end)_time$/);
    }
    const ev = await api(s.adminUrl, 'GET', '/finance/v1/usage_events?start_time=0&end_time=9223372036854775807', { token: FINANCE });
    assert.equal(ev.status, 400);
  });

  test('answers to requests that could not be read carry x-request-id too (400, 413, 431)', async () => {
    const exchange = (bytes) => rawExchange(s.apiPort, bytes, { until: (d) => d.includes('\r\n\r\n') && /\}\s*$/.test(d) });
    const cases = [
      ['GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ' + 'a'.repeat(20000) + '\r\n\r\n', 431],
      ['POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n', 413],
      ['GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n', 400],
    ];
    for (const [bytes, status] of cases) {
      const answer = await exchange(bytes);
      assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), answer.slice(0, 200));
      assert.match(answer, /\r\nx-request-id: req_[0-9a-f]+/i, answer.slice(0, 300));
    }
  });

  test('a HEAD request refused before its body is read gets a length and no body', async () => {
    const cases = [
      ['HEAD /v1/files HTTP/1.1\r\nHost: x\r\n\r\n', 'HTTP/1.1 401 '],  // refused before the body
      ['HEAD /v1/files HTTP/1.0\r\nHost: x\r\n\r\n', 'HTTP/1.0 401 '],  // answered in its version
      ['HEAD /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n',
        'HTTP/1.1 413 '],
    ];
    for (const [bytes, start] of cases) {
      const answer = await rawExchange(s.apiPort, bytes);  // the server closes after a refusal
      assert.ok(answer.startsWith(start), answer.slice(0, 200));
      const end = answer.indexOf('\r\n\r\n');
      assert.ok(Number(answer.slice(0, end).match(/\r\ncontent-length: (\d+)/i)?.[1]) > 0, answer);
      assert.equal(answer.slice(end + 4), '', 'no body after the head');
    }
  });
});

describe('batches obey revocation (real PostgreSQL)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-hostile-batch-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: {
      ...dbConfig(pg, dir, { auth: { key_cache_ttl_ms: 200 } }),
      batches: { poll_interval_ms: 50, concurrency: 1, lease_ms: 5000 },
    } });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('a key revoked mid-batch fails the remaining lines with a clear error', async () => {
    const t = await makeTenant(s.adminUrl, 'Revoked');
    const other = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant, name: 'reader' } });
    assert.equal(other.status, 201, other.text);
    const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ custom_id: `l${i}`, method: 'POST',
      url: '/v1/chat/completions', body: { model: 'dev-echo', max_tokens: 5,
        messages: [{ role: 'user', content: `line ${i} tg:first_byte_delay_ms=250` }] } }));
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${lines.join('\n')}\n`]), 'job.jsonl');
    const auth = { authorization: `Bearer ${t.key}` };
    const file = await (await fetch(`${s.url}/v1/files`, { method: 'POST', headers: auth, body: form })).json();
    assert.ok(file.id, JSON.stringify(file));
    const created = await fetch(`${s.url}/v1/batches`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) });
    const batch = await created.json();
    assert.equal(created.status, 200, JSON.stringify(batch));
    const reader = { authorization: `Bearer ${other.json.key}` };
    const get = async () => (await fetch(`${s.url}/v1/batches/${batch.id}`, { headers: reader })).json();
    await waitFor(async () => (await get()).request_counts?.completed >= 2, { timeoutMs: 20000, what: 'two lines done' });
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}/revoke`)).status, 200);
    let done;
    await waitFor(async () => ['completed', 'failed'].includes((done = await get()).status),
      { timeoutMs: 30000, what: 'the batch finished' });
    assert.equal(done.request_counts.total, 20);
    assert.ok(done.request_counts.completed <= 6, `lines stopped after the revocation: ${JSON.stringify(done.request_counts)}`);
    assert.ok(done.request_counts.failed >= 14);
    const errors = await (await fetch(`${s.url}/v1/files/${done.error_file_id}/content`, { headers: reader })).text();
    const failed = errors.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(failed.length, done.request_counts.failed);
    for (const f of failed) {
      assert.equal(f.response.status_code, 401);
      assert.equal(f.response.body.error.code, 'invalid_api_key');
      assert.match(f.response.body.error.message, /has been revoked/);
    }
    // The key itself is refused too.
    assert.equal((await chat(s.url, t.key)).status, 401);
  });
});

describe('alert webhooks to private addresses (real PostgreSQL, Redis)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-hostile-hooks-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({ config: {
      ...dbConfig(pg, dir),
      budgets: { ...redis.budgetsConfig, alert_webhook_allow_private: false },
    } });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('a webhook to http://127.0.0.1 with alert_webhook_allow_private off is refused and recorded as failed', async () => {
    let calls = 0;
    const receiver = http.createServer((req, res) => { calls += 1; req.resume(); res.writeHead(204).end(); });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const t = await makeTenant(s.adminUrl, 'Hooked');
      const b = await api(s.adminUrl, 'POST', '/admin/v1/budgets', { body: {
        tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 50, mode: 'soft', alert_thresholds: [10],
        alert_webhook_url: `http://127.0.0.1:${receiver.address().port}/hook` } });
      assert.equal(b.status, 201, b.text);
      assert.equal((await chat(s.url, t.key, 'enough words to cross ten percent of fifty tokens', { max_tokens: 8 })).status, 200);
      let alert;
      await waitFor(async () => (alert = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${b.json.id}/alerts`)).json.data[0])?.status === 'failed',
        { timeoutMs: 10000, what: 'the alert recorded as failed' });
      assert.match(alert.last_error, /refused: 127\.0\.0\.1 resolves to 127\.0\.0\.1, a loopback address/);
      assert.equal(alert.attempts, 1, 'a refused target is not retried');
      await sleep(500);
      assert.equal(calls, 0, 'nothing was sent to the loopback receiver');
    } finally {
      receiver.close();
    }
  });
});
