// Integration tests of tenants, API keys, the usage ledger and the admin and finance APIs,
// against a real PostgreSQL (its own cluster, scripts/pg.sh) and the real gateway.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  binDir, startStack, chatBody, postJson, sseData, waitFor,
} from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import {
  ADMIN, FINANCE, dbConfig, api, makeTenant, chat, spoolSegment,
} from '../lib/ledger.mjs';

describe('tenants, keys and the ledger (real PostgreSQL)', () => {
  let pg;
  let s;
  before(async () => {
    pg = await startPostgres();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-ledger-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: dbConfig(pg, dir) });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('migrations: concurrent `tollgate migrate` runs apply each migration once', async () => {
    // A database of its own, empty, so that the runs race for every migration (the suite's
    // database was migrated in before()).
    pg.query('CREATE DATABASE tollgate_migrate_race');
    const url = pg.url.replace(/\/tollgate$/, '/tollgate_migrate_race');
    const runs = await Promise.all([1, 2, 3, 4].map(() => new Promise((resolve) => {
      const child = spawn(path.join(binDir, 'tollgate'), ['migrate'],
        { env: { ...process.env, TOLLGATE_DATABASE__URL: url } });
      let out = '';
      child.stderr.on('data', (d) => { out += d; });
      child.on('exit', (code) => resolve({ code, out }));
    })));
    for (const r of runs) assert.equal(r.code, 0, r.out);
    const race = (sql) => execFileSync('psql', [url, '-X', '-q', '-t', '-A', '-F', '\t', '-c', sql],
      { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.split('\t'));
    // Every file of sql/, each applied once, by exactly one of the runs.
    const files = readdirSync(path.resolve(new URL('../../sql', import.meta.url).pathname))
      .filter((f) => /^\d{3}_.*\.sql$/.test(f)).sort();
    assert.deepEqual(race('SELECT version, name FROM schema_migrations ORDER BY version'),
      files.map((f) => [String(Number(f.slice(0, 3))), f]));
    assert.ok(files.length >= 3);
    const applied = runs.map((r) => Number(/applied (\d+) migration/.exec(r.out)?.[1]));
    assert.equal(applied.reduce((a, b) => a + b, 0), files.length, `applied per run: ${applied}`);
    // Monthly partitions exist ahead of time.
    const parts = Number(race("SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_events'::regclass")[0][0]);
    assert.ok(parts >= 5, `partitions: ${parts}`);
  });

  test('admin API: create, get, list with pagination, update; every change audited', async () => {
    const a = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'Page A' } });
    const b = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'Page B' } });
    const c = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'Page C' } });
    assert.equal(a.status, 201);
    assert.match(a.json.id, /^ten_[0-9A-Za-z]{18}$/);
    assert.equal(a.json.status, 'active');
    const got = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${b.json.id}`);
    assert.equal(got.json.name, 'Page B');

    // Pages of 2 walk every tenant exactly once, in creation order.
    const seen = [];
    let after = '';
    for (;;) {
      const page = await api(s.adminUrl, 'GET', `/admin/v1/tenants?limit=2${after ? `&after=${after}` : ''}`);
      assert.equal(page.status, 200, page.text);
      assert.equal(page.json.object, 'list');
      seen.push(...page.json.data.map((t) => t.id));
      if (!page.json.has_more) break;
      after = page.json.last_id;
    }
    const ids = [a.json.id, b.json.id, c.json.id];
    assert.deepEqual(seen.filter((id) => ids.includes(id)), ids);
    assert.equal(new Set(seen).size, seen.length);

    const upd = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${c.json.id}`,
      { body: { name: 'Page C2', status: 'disabled' }, headers: { 'x-tollgate-actor': 'alice' } });
    assert.equal(upd.status, 200, upd.text);
    assert.equal(upd.json.status, 'disabled');
    const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${c.json.id}`);
    const actions = audit.json.data.map((e) => e.action);
    assert.deepEqual(actions, ['tenant.create', 'tenant.update']);
    const last = audit.json.data[1];
    assert.equal(last.actor, 'admin:alice');
    assert.equal(last.before.name, 'Page C');
    assert.equal(last.after.name, 'Page C2');
  });

  test('admin API: bad input is a 400 naming the field and changes nothing; unknown ids 404', async () => {
    const before = Number(pg.value('SELECT count(*) FROM tenants'));
    for (const body of ['not json', { name: '' }, { name: 7 }, { name: 'x', extra: 1 }, {}]) {
      const r = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
    }
    assert.equal(Number(pg.value('SELECT count(*) FROM tenants')), before);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants/ten_nope')).status, 404);
    const k = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: 'ten_nope' } });
    assert.equal(k.status, 404, k.text);
    const bad = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: 'x', allowed_models: 'all' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'allowed_models');
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants?limit=0')).status, 400);
    assert.equal((await api(s.adminUrl, 'PUT', '/admin/v1/tenants')).status, 405);
  });

  test('admin and finance tokens: missing or wrong 401, finance cannot write (403)', async () => {
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants', { token: null })).status, 401);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants', { token: 'wrong-token-0000000000' })).status, 401);
    const w = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'x' }, token: FINANCE });
    assert.equal(w.status, 403);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/keys', { token: FINANCE })).status, 403);
    const fp = await api(s.adminUrl, 'POST', '/finance/v1/usage?start_time=0', { token: FINANCE, body: {} });
    assert.equal(fp.status, 403);
    assert.equal((await api(s.adminUrl, 'GET', '/finance/v1/usage?start_time=0', { token: null })).status, 401);
    assert.equal((await api(s.adminUrl, 'GET', '/finance/v1/usage?start_time=0', { token: FINANCE })).status, 200);
    // The scheme is case-insensitive (RFC 7235), as for API keys; the token itself is not.
    const lower = await api(s.adminUrl, 'GET', '/admin/v1/tenants', { token: null, headers: { authorization: `bearer  ${ADMIN} ` } });
    assert.equal(lower.status, 200, lower.text);
    const upperToken = await api(s.adminUrl, 'GET', '/admin/v1/tenants', { token: null, headers: { authorization: `Bearer ${ADMIN.toUpperCase()}` } });
    if (ADMIN.toUpperCase() !== ADMIN) assert.equal(upperToken.status, 401);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants', { token: null, headers: { authorization: `Basic ${ADMIN}` } })).status, 401);
  });

  test('API keys: stored only as SHA-256; missing, malformed, unknown keys get 401', async () => {
    const t = await makeTenant(s.adminUrl, 'Keys');
    assert.match(t.key, /^tg-[0-9A-Za-z]{43}$/);
    const stored = pg.query(`SELECT prefix, encode(key_sha256, 'hex') FROM api_keys WHERE id = '${t.keyId}'`)[0];
    assert.equal(stored[0], t.key.slice(0, 11));
    const { createHash } = await import('node:crypto');
    assert.equal(stored[1], createHash('sha256').update(t.key).digest('hex'));
    assert.equal(Number(pg.value(`SELECT count(*) FROM api_keys WHERE prefix = '${t.key}'`)), 0);
    const shown = await api(s.adminUrl, 'GET', `/admin/v1/keys/${t.keyId}`);
    assert.equal(shown.json.key, undefined, 'the secret is shown only at creation');

    const cases = [
      [undefined, 'missing_api_key'],
      ['Basic abc', 'invalid_api_key'],
      ['Bearer    ', 'invalid_api_key'],
      ['Bearer tg-short', 'invalid_api_key'],
      [`Bearer tg-${'A'.repeat(43)}`, 'invalid_api_key'],
    ];
    for (const [authorization, code] of cases) {
      const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('x'), authorization ? { authorization } : {});
      assert.equal(res.status, 401);
      const body = await res.json();
      assert.equal(body.error.code, code);
      assert.equal(body.error.type, 'invalid_request_error');
    }
    const ok = await chat(s.url, t.key);
    assert.equal(ok.status, 200);
    await ok.text();
    assert.equal((await fetch(`${s.url}/v1/models`)).status, 401);
  });

  test('revoked, expired and rotated keys stop working within seconds; disabled tenants too', async () => {
    const t = await makeTenant(s.adminUrl, 'Lifecycle');
    assert.equal((await chat(s.url, t.key)).status, 200);
    const r = await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}/revoke`);
    assert.equal(r.json.status, 'revoked');
    await waitFor(async () => (await chat(s.url, t.key)).status === 401, { timeoutMs: 3000, what: 'revoked key refused' });

    const nowS = Math.floor(Date.now() / 1000);
    const k2 = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant, expires_at: nowS + 2 } });
    assert.equal((await chat(s.url, k2.json.key)).status, 200);
    await waitFor(async () => {
      const res = await chat(s.url, k2.json.key);
      return res.status === 401 && /expired/.test((await res.json()).error.message);
    }, { timeoutMs: 5000, what: 'expired key refused' });

    const k3 = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant } });
    const rot = await api(s.adminUrl, 'POST', `/admin/v1/keys/${k3.json.id}/rotate`, { body: {} });
    assert.equal(rot.status, 201, rot.text);
    assert.equal(rot.json.replaces, k3.json.id);
    assert.equal((await chat(s.url, rot.json.key)).status, 200);
    await waitFor(async () => (await chat(s.url, k3.json.key)).status === 401, { timeoutMs: 3000, what: 'rotated-out key refused' });

    const u = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}`, { body: { status: 'disabled' } });
    assert.equal(u.status, 200);
    await waitFor(async () => {
      const res = await chat(s.url, rot.json.key);
      return res.status === 401 && (await res.json()).error.code === 'account_deactivated';
    }, { timeoutMs: 3000, what: 'disabled tenant refused' });
  });

  test('a model outside the key allowlist does not exist for that key (404), nor in /v1/models', async () => {
    const t = await makeTenant(s.adminUrl, 'Allow', { allowed_models: ['some-other-model'] });
    const res = await chat(s.url, t.key);
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.code, 'model_not_found');
    const models = await (await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${t.key}` } })).json();
    assert.deepEqual(models.data, []);
    const upd = await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}`, { body: { allowed_models: null } });
    assert.equal(upd.json.allowed_models, null);
    await waitFor(async () => (await chat(s.url, t.key)).status === 200, { timeoutMs: 3000, what: 'allowlist lifted' });
  });

  test('every request of a tenant is one usage row with its ids, counts and flags', async () => {
    const t = await makeTenant(s.adminUrl, 'Rows');
    const ids = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await chat(s.url, t.key, `message number ${i}`, {}, { 'x-request-id': `client-${i}` });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-client-request-id'), `client-${i}`);
      ids.push(res.headers.get('x-request-id'));
      await res.text();
    }
    const st = await chat(s.url, t.key, 'streamed one', { stream: true });
    const stText = await st.text();
    assert.ok(sseData(stText).includes('[DONE]'));
    ids.push(st.headers.get('x-request-id'));
    const missing = await chat(s.url, t.key, 'x', { model: 'no-such-model' });
    assert.equal(missing.status, 404);
    ids.push(missing.headers.get('x-request-id'));
    await missing.text();

    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === ids.length,
      { what: 'rows committed' });
    const rows = pg.query(`SELECT request_id, project_id, api_key_id, model, stream, status, prompt_tokens,
      completion_tokens, counted_prompt_tokens, estimated, client_request_id FROM usage_events
      WHERE tenant_id = '${t.tenant}' ORDER BY occurred_at, request_id`);
    assert.deepEqual(rows.map((r) => r[0]).sort(), [...ids].sort());
    for (const r of rows) {
      assert.equal(r[1], t.project);
      assert.equal(r[2], t.keyId);
    }
    const first = rows.find((r) => r[0] === ids[0]);
    assert.equal(first[5], '200');
    assert.ok(Number(first[6]) > 0 && Number(first[7]) > 0);
    assert.ok(Number(first[8]) > 0, 'the gateway counted the prompt');
    assert.equal(first[10], 'client-0');
    assert.equal(rows.find((r) => r[0] === ids[5])[4], 't');
    const nf = rows.find((r) => r[0] === ids[6]);
    assert.equal(nf[5], '404');
    assert.equal(nf[3], 'no-such-model');
  });

  test('idempotency: the same events replayed twice leave one row each', async () => {
    const t = await makeTenant(s.adminUrl, 'Replay');
    for (let i = 0; i < 4; i += 1) await (await chat(s.url, t.key, `replay ${i}`)).text();
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 4,
      { what: 'rows committed' });
    // The committed rows, in COPY text format: exactly what the spool holds.
    const cols = 'tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream, stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, usage_reported, estimated, latency_us, ttft_us, client_disconnected, error_code, client_request_id';
    const { execFileSync } = await import('node:child_process');
    const copyText = execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${cols} FROM usage_events WHERE tenant_id = '${t.tenant}') TO STDOUT`], { encoding: 'utf8' });
    const lines = copyText.split('\n').filter(Boolean).map((l) => `${l}\n`);
    assert.equal(lines.length, 4);
    // Two spool segments holding the same four rows (one of them twice) for the gateway to replay.
    await s.gateway.stop();
    const spoolDir = JSON.parse((await import('node:fs')).readFileSync(s.configPath, 'utf8')).ledger.spool_dir;
    writeFileSync(path.join(spoolDir, 'ledger-9000000000000001.spool'), spoolSegment([...lines, lines[0]]));
    writeFileSync(path.join(spoolDir, 'ledger-9000000000000002.spool'), spoolSegment(lines));
    await s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => /^ledger-900000000000000[12]/.test(f)).length === 0,
      { what: 'spool replayed' }).catch((e) => { throw new Error(`${e.message}\n${s.gateway.output()}`); });
    assert.equal(Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), 4);
    const metrics = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(metrics, /tollgate_ledger_events_replayed_total 9\b/);
  });

  test('the finance API sums equal a plain SQL aggregate over usage_events; CSV matches JSON', async () => {
    const a = await makeTenant(s.adminUrl, 'SumA');
    const b = await makeTenant(s.adminUrl, 'SumB');
    const sends = [];
    for (let i = 0; i < 12; i += 1) {
      const who = i % 3 === 0 ? b : a;
      sends.push(chat(s.url, who.key, `sum test ${'word '.repeat(i)}`, i % 4 === 0 ? { stream: true } : {}).then((r) => r.text()));
    }
    await Promise.all(sends);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id IN ('${a.tenant}', '${b.tenant}')`)) === 12,
      { what: 'rows committed' });
    const start = Math.floor(Date.now() / 1000) - 3600;
    const end = Math.floor(Date.now() / 1000) + 60;
    const r = await api(s.adminUrl, 'GET',
      `/finance/v1/usage?start_time=${start}&end_time=${end}&bucket_width=1h&limit=2&group_by=tenant_id,model`, { token: FINANCE });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'page');
    const totals = new Map();
    for (const bucket of r.json.data) {
      assert.equal(bucket.object, 'bucket');
      assert.equal(bucket.end_time - bucket.start_time, 3600);
      for (const res of bucket.results) {
        const t = totals.get(res.tenant_id) ?? { input: 0, output: 0, cached: 0, n: 0 };
        t.input += res.input_tokens; t.output += res.output_tokens; t.cached += res.input_cached_tokens; t.n += res.num_model_requests;
        totals.set(res.tenant_id, t);
      }
    }
    const sql = pg.query(`SELECT tenant_id, sum(prompt_tokens), sum(completion_tokens), sum(cached_prompt_tokens), count(*)
      FROM usage_events WHERE occurred_at >= to_timestamp(${start}) AND occurred_at < to_timestamp(${end})
      GROUP BY tenant_id`);
    assert.equal(sql.length, totals.size);
    for (const [tenant, input, output, cached, n] of sql) {
      assert.deepEqual(totals.get(tenant), { input: Number(input), output: Number(output), cached: Number(cached), n: Number(n) }, tenant);
    }
    const csv = await api(s.adminUrl, 'GET',
      `/finance/v1/usage?start_time=${start}&end_time=${end}&bucket_width=1h&group_by=tenant_id&format=csv`, { token: FINANCE });
    assert.equal(csv.status, 200);
    assert.match(csv.headers.get('content-type'), /^text\/csv/);
    const lines = csv.text.trim().split('\n');
    assert.equal(lines[0], 'start_time,end_time,tenant_id,project_id,api_key_id,model,batch,input_tokens,input_cached_tokens,output_tokens,output_reasoning_tokens,num_model_requests,end_user,session_id,cost_micros,cost_minor,currency,unrated_requests');
    let csvInput = 0;
    for (const l of lines.slice(1)) csvInput += Number(l.split(',')[7]);
    assert.equal(csvInput, [...totals.values()].reduce((x, t) => x + t.input, 0));

    // Raw events, walked with keyset pagination, list each of tenant A's rows once.
    const seen = [];
    let after = '';
    for (;;) {
      const page = await api(s.adminUrl, 'GET',
        `/finance/v1/usage_events?tenant_id=${a.tenant}&limit=3${after ? `&after=${encodeURIComponent(after)}` : ''}`, { token: FINANCE });
      assert.equal(page.status, 200, page.text);
      seen.push(...page.json.data.map((e) => e.request_id));
      if (!page.json.has_more) break;
      after = page.json.next_page;
    }
    assert.equal(seen.length, 8);
    assert.equal(new Set(seen).size, 8);
  });

  test('tenant isolation: a key sees only its own tenant through /v1/usage, whatever it asks', async () => {
    const a = await makeTenant(s.adminUrl, 'IsoA');
    const b = await makeTenant(s.adminUrl, 'IsoB');
    for (let i = 0; i < 3; i += 1) await (await chat(s.url, a.key, 'a'.repeat(10))).text();
    await (await chat(s.url, b.key, 'b')).text();
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id IN ('${a.tenant}','${b.tenant}')`)) === 4,
      { what: 'rows committed' });
    const start = Math.floor(Date.now() / 1000) - 600;
    const get = async (key, q) => (await fetch(`${s.url}/v1/usage?start_time=${start}${q}`,
      { headers: { authorization: `Bearer ${key}` } })).json();
    const mine = await get(b.key, '&bucket_width=1h');
    const count = (page) => page.data.flatMap((bk) => bk.results).reduce((x, r) => x + r.num_model_requests, 0);
    assert.equal(count(mine), 1);
    // Naming the other tenant, its project or its key changes nothing.
    assert.equal(count(await get(b.key, `&bucket_width=1h&tenant_id=${a.tenant}`)), 1);
    assert.equal(count(await get(b.key, `&bucket_width=1h&project_id=${a.project}`)), 0);
    assert.equal(count(await get(b.key, `&bucket_width=1h&api_key_id=${a.keyId}`)), 0);
    const grouped = await get(b.key, '&bucket_width=1h&group_by=tenant_id');
    assert.ok(grouped.error, 'tenant_id is not a grouping on /v1/usage');
    // The finance and admin APIs are not served on the API listener.
    assert.equal((await fetch(`${s.url}/finance/v1/usage?start_time=0`, { headers: { authorization: `Bearer ${b.key}` } })).status, 404);
    assert.equal((await fetch(`${s.url}/admin/v1/tenants`, { headers: { authorization: `Bearer ${b.key}` } })).status, 404);
    // Nor does an API key open the operator listener.
    assert.equal((await api(s.adminUrl, 'GET', '/finance/v1/usage?start_time=0', { token: b.key })).status, 401);
  });

  test('the finance role reads the finance views only and cannot write', () => {
    // The finance role sees every usage row, and the daily view sums to the same requests.
    const total = Number(pg.value('SELECT count(*) FROM public.usage_events'));
    assert.ok(total > 0, 'the earlier tests left usage rows');
    const asFinance = (sql) => Number(pg.query(sql, { role: 'tollgate_finance' })[0][0]);
    assert.equal(asFinance('SELECT count(*) FROM finance.usage_events'), total);
    assert.equal(asFinance('SELECT sum(requests) FROM finance.usage_daily'), total);
    assert.throws(() => pg.query('SELECT count(*) FROM public.usage_events', { role: 'tollgate_finance' }), /permission denied/);
    assert.throws(() => pg.query('SELECT count(*) FROM public.api_keys', { role: 'tollgate_finance' }), /permission denied/);
    assert.throws(() => pg.query("INSERT INTO public.tenants (id, name) VALUES ('ten_x', 'x')", { role: 'tollgate_finance' }), /permission denied/);
    assert.throws(() => pg.query("DELETE FROM finance.tenants", { role: 'tollgate_finance' }), /permission denied/);
  });

  test('two gateways writing at once: every response is exactly one row', async () => {
    const t = await makeTenant(s.adminUrl, 'Concurrent');
    const second = await startStack({ config: dbConfig(pg, path.join(s.dir, 'second')), upstreamPort: s.upstreamPort });
    try {
      const ids = [];
      const worker = async (url, n) => {
        for (let i = 0; i < n; i += 1) {
          const res = await chat(url, t.key, `concurrent ${i}`);
          if (res.status === 200) ids.push(res.headers.get('x-request-id'));
          await res.text();
        }
      };
      await Promise.all([worker(s.url, 60), worker(s.url, 60), worker(second.url, 60), worker(second.url, 60)]);
      assert.equal(ids.length, 240);
      assert.equal(new Set(ids).size, 240, 'each response has its own x-request-id');
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) >= 240,
        { what: '240 rows' });
      // The rows are the responses: the same request ids, each once (not merely as many rows).
      const rows = pg.query(`SELECT request_id FROM usage_events WHERE tenant_id = '${t.tenant}' ORDER BY request_id`)
        .map((r) => r[0]);
      assert.deepEqual(rows, [...ids].sort());
    } finally {
      await second.gateway.stop();
    }
  });

  test('a buffered usage log: nothing written before its interval, every line whole, the rest at shutdown', async () => {
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-ledger-buffered-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    // To a file, with an interval longer than the test (a minute, the most): the lines wait
    // until the gateway stops.
    const late = await startStack({ config: dbConfig(pg, dir), env: { TOLLGATE_LOGGING__USAGE_LOG_FLUSH_MS: '60000' } });
    const t = await makeTenant(late.adminUrl, 'Buffered usage log');
    const ids = [];
    try {
      for (let i = 0; i < 20; i += 1) {
        const res = await chat(late.url, t.key, `buffered ${i}`);
        assert.equal(res.status, 200, await res.text());
        ids.push(res.headers.get('x-request-id'));
      }
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 20,
        { what: 'twenty ledger rows' });
      assert.deepEqual(late.usageRecords().filter((r) => r.tenant_id === t.tenant), [], 'still buffered');
    } finally {
      await late.stop();
    }
    const written = late.usageRecords().filter((r) => r.tenant_id === t.tenant).map((r) => r.request_id);
    assert.deepEqual(written.sort(), [...ids].sort(), 'all written when the gateway stopped');

    // To stderr, shared with the process log (not a regular file: the test's reader is a
    // socket): 300 concurrent requests (more than the 64 KiB buffer) in writes of whole lines;
    // every line of the output is one JSON object.
    const piped = await startStack({ config: dbConfig(pg, path.join(dir, 'piped')),
      env: { TOLLGATE_LOGGING__USAGE_LOG: 'stderr', TOLLGATE_LOGGING__USAGE_LOG_FLUSH_MS: '200' } });
    const u = await makeTenant(piped.adminUrl, 'Buffered to stderr');
    let logged = [];
    try {
      const statuses = await Promise.all(Array.from({ length: 300 }, (_, i) => chat(piped.url, u.key, `piped ${i}`).then(async (r) => { await r.text(); return r.status; })));
      assert.ok(statuses.every((x) => x === 200));
      // Within the interval of the last answer, with room for a loaded machine.
      await waitFor(() => {
        logged = piped.gateway.output().split('\n').filter((l) => l.includes(u.tenant));
        return logged.length === 300;
      }, { what: 'the 300 lines on stderr', timeoutMs: 5000 });
    } finally {
      await piped.stop();
    }
    for (const line of piped.gateway.output().split('\n').filter(Boolean)) JSON.parse(line);
    assert.equal(new Set(logged.map((l) => JSON.parse(l).request_id)).size, 300);
  });

  test('with usage_log "off" the ledger alone records usage: rows, and no usage log line', async () => {
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-ledger-nolog-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const quiet = await startStack({ config: dbConfig(pg, dir), env: { TOLLGATE_LOGGING__USAGE_LOG: 'off' } });
    try {
      const t = await makeTenant(quiet.adminUrl, 'No usage log');
      for (let i = 0; i < 3; i += 1) assert.equal((await chat(quiet.url, t.key, `quiet ${i}`)).status, 200);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 3,
        { what: 'three ledger rows' });
      assert.deepEqual(quiet.usageRecords(), [], 'no usage log line');
      assert.ok(!existsSync(path.join(process.cwd(), 'off')), '"off" is not a file name');
      assert.doesNotMatch(quiet.gateway.output(), /"request_id"/, 'nor usage lines on stderr');
      // The same requests on a gateway with the usage log: one line each.
      assert.equal((await chat(s.url, t.key, 'logged')).status, 200);
      await waitFor(() => s.usageRecords().some((r) => r.tenant_id === t.tenant), { what: 'a usage log line' });
    } finally {
      await quiet.stop();
    }
  });
});

