// Integrity of the ledger and the budgets under faults and hostile input, against a real
// PostgreSQL and Redis: the spool's disk filling up (a small tmpfs) with PostgreSQL up and then
// down, torn and damaged spool segments, spool records of the format before versions existed,
// hostile max_tokens / n / prompt arrays against a hard token budget, stream_options: null,
// spend budgets with a tiered price book over two gateways (reconcile: zero difference), and a
// stream still open when the drain times out.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readdirSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { startStack, postJson, sseData, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant, chat, spoolSegment } from '../lib/ledger.mjs';

const metric = async (s, name) => {
  const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name)) sum += Number(line.split(' ').pop());
  }
  return sum;
};

// Fills a filesystem: writes until it refuses (ENOSPC).
function fill(file) {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}

const idsOf = (pg, tenant) => pg.query(`SELECT request_id, count(*) FROM usage_events
  WHERE tenant_id = '${tenant}' GROUP BY 1`);

describe('the ledger: zero loss, fail closed (real PostgreSQL, a full spool disk)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-integrity-${process.pid}`);
  const spoolDir = path.join(dir, 'spool');
  before(async () => {
    pg = await startPostgres();
    mkdirSync(spoolDir, { recursive: true });
    // A 2 MiB tmpfs for the spool (the tests run as root, as CI does).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', spoolDir]);
    s = await startStack({ config: dbConfig(pg, dir, { ledger: { spool_dir: spoolDir } }) });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
    try { execFileSync('umount', [spoolDir]); } catch { /* not mounted */ }
  });
  const filler = path.join(spoolDir, 'filler');

  test('every 200 reaches usage_events while the journal cannot write; 503s while nothing can record; recovery without a restart', async () => {
    const t = await makeTenant(s.adminUrl, 'FullDisk');
    fill(filler);
    const answered = [];
    const refused = [];
    const send = async (i) => {
      const r = await chat(s.url, t.key, `full disk ${i}`, { max_tokens: 5 });
      await r.text();
      if (r.status === 200) answered.push(r.headers.get('x-request-id'));
      else if (r.status === 503) refused.push(r.headers.get('retry-after'));
      else assert.fail(`unexpected status ${r.status}`);
      return r.status;
    };
    // 1. PostgreSQL healthy: rows the journal cannot take go to PostgreSQL from memory.
    const first = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i)));
    assert.deepEqual([...new Set(first)], [200], 'the database takes the rows: no refusal');
    assert.ok(await metric(s, 'tollgate_ledger_failures_total{stage="spool"}') > 0, 'the journal failed');
    await waitFor(() => idsOf(pg, t.tenant).length === answered.length, { what: 'rows of the first 200s' });

    // 2. PostgreSQL away as well: the gateway stops answering 200 (503 + Retry-After).
    pg.stop();
    await waitFor(async () => (await send('down')) === 503, { timeoutMs: 15000, what: 'a 503 once nothing can record' });
    assert.ok(refused.every((v) => Number(v) >= 1), 'a 503 carries Retry-After');
    const body = await (await chat(s.url, t.key, 'refused', { max_tokens: 5 })).json();
    assert.equal(body.error.code, 'ledger_unavailable');
    // The admin API cannot reach the database either: a 503 that says when to retry.
    const admin = await api(s.adminUrl, 'GET', '/admin/v1/tenants');
    assert.equal(admin.status, 503, admin.text);
    assert.equal(admin.json?.error?.code, 'database_unavailable', admin.text);
    assert.equal(admin.headers.get('retry-after'), '1');

    // 3. Space comes back: the journal takes rows again and the gateway serves (spooling).
    rmSync(filler);
    await waitFor(async () => (await send('space')) === 200, { timeoutMs: 15000, what: 'serving again with space' });
    for (let i = 0; i < 10; i += 1) assert.equal(await send(`spooled ${i}`), 200);

    // 4. PostgreSQL back: every answered request is in the ledger exactly once.
    pg.start();
    await waitFor(() => idsOf(pg, t.tenant).length >= answered.length,
      { timeoutMs: 30000, what: 'the spool replayed' });
    const rows = new Map(idsOf(pg, t.tenant).map(([id, n]) => [id, Number(n)]));
    for (const id of answered) assert.equal(rows.get(id), 1, `request ${id} answered 200 is in the ledger once`);
    const statuses = pg.query(`SELECT DISTINCT status FROM usage_events WHERE tenant_id = '${t.tenant}' AND request_id = ANY('{${answered.join(',')}}')`);
    assert.deepEqual(statuses.map((r) => r[0]), ['200']);
  });

  test('torn and damaged segments are replayed up to the damage and moved aside; v1 records still replay', async () => {
    rmSync(filler, { force: true });  // left by the test before if it failed
    // PostgreSQL was restarted by the test before. The admin API's pool failed to connect while
    // it was away and waits out its backoff (up to 5 s, answering 503 meanwhile) before it
    // tries again: wait for it, then make the tenant.
    await waitFor(async () => (await api(s.adminUrl, 'GET', '/admin/v1/tenants')).status === 200,
      { timeoutMs: 15000, what: 'the admin API reaching PostgreSQL again' });
    const t = await makeTenant(s.adminUrl, 'Damaged');
    await s.gateway.stop();
    const at = new Date().toISOString().replace('T', ' ').replace('Z', '+00');
    // Version 1 records: the bare COPY line of the 24 usage_events columns, as the release
    // before journal versions wrote them.
    const line = (id) => [t.tenant, at, id, t.project, t.keyId, '/v1/chat/completions', 'dev-echo', 'dev',
      'f', 'f', '200', '3', '0', '2', '0', '3', '\\N', 't', 'f', '1000', '\\N', 'f', '\\N', '\\N'].join('\t') + '\n';
    const good = spoolSegment([line('req_v1_a'), line('req_v1_b'), line('req_v1_c')]);
    // A torn last record (a crash mid-append) and a record whose checksum is wrong.
    const torn = Buffer.concat([spoolSegment([line('req_torn_a')]), spoolSegment([line('req_torn_b')]).subarray(0, 20)]);
    const bad = spoolSegment([line('req_bad_a'), line('req_bad_b')]);
    bad[bad.length - 3] ^= 0xff;
    writeFileSync(path.join(spoolDir, 'ledger-9100000000000001.spool'), good);
    writeFileSync(path.join(spoolDir, 'ledger-9100000000000002.spool'), torn);
    writeFileSync(path.join(spoolDir, 'ledger-9100000000000003.spool'), bad);
    await s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => /^ledger-910000000000000[123]\.spool$/.test(f)).length === 0,
      { what: 'segments replayed' }).catch((e) => { throw new Error(`${e.message}\n${s.gateway.output()}`); });
    const ids = idsOf(pg, t.tenant).map(([id]) => id).sort();
    assert.deepEqual(ids, ['req_bad_a', 'req_torn_a', 'req_v1_a', 'req_v1_b', 'req_v1_c']);
    const aside = readdirSync(spoolDir).filter((f) => /^ledger-91.*\.damaged$/.test(f)).sort();
    assert.deepEqual(aside, ['ledger-9100000000000002.damaged', 'ledger-9100000000000003.damaged']);
    assert.equal(await metric(s, 'tollgate_ledger_segments_quarantined_total'), 2);
  });
});

describe('budgets under hostile input (real PostgreSQL and Redis)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-integrity-budgets-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({ config: { ...dbConfig(pg, dir), budgets: redis.budgetsConfig } });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  const raw = (url, key, target, body) => postJson(`${url}${target}`, body, { authorization: `Bearer ${key}` });

  test('hostile max_tokens, n and prompt arrays are 400s or held at their worst case; the budget still refuses', async () => {
    const t = await makeTenant(s.adminUrl, 'Hostile');
    const b = await api(s.adminUrl, 'POST', '/admin/v1/budgets', { body: { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 1000 } });
    assert.equal(b.status, 201, b.text);
    const msg = '"messages":[{"role":"user","content":"hostile numbers"}]';
    for (const [extra, code] of [
      ['"max_tokens":9223372036854775807', 'context_length_exceeded'],
      ['"max_tokens":4611686018427387904', 'context_length_exceeded'],
      ['"max_completion_tokens":9223372036854775807', 'context_length_exceeded'],
      ['"max_tokens":-1', 'integer_below_min_value'],
      ['"max_tokens":1e300', 'invalid_type'],
      ['"max_tokens":"1000"', 'invalid_type'],
      ['"n":0', 'integer_below_min_value'],
      ['"n":1000000000', 'integer_above_max_value'],
      ['"model":"other"', 'duplicate_parameter'],
    ]) {
      const body = `{"model":"dev-echo",${msg},${extra}}`;
      const r = await raw(s.url, t.key, '/v1/chat/completions', body);
      const j = await r.json();
      assert.equal(r.status, 400, `${extra}: ${JSON.stringify(j)}`);
      assert.equal(j.error.code, code, extra);
    }
    const prompts = JSON.stringify({ model: 'dev-echo', prompt: Array.from({ length: 100000 }, () => 'a'), max_tokens: 1 });
    const many = await raw(s.url, t.key, '/v1/completions', prompts);
    assert.equal(many.status, 400);
    assert.equal((await many.json()).error.code, 'array_above_max_length');

    // n copies: (prompt + max_tokens) x n is held. One copy fits 1000, four do not (4 x 259).
    const one = await raw(s.url, t.key, '/v1/chat/completions', `{"model":"dev-echo",${msg},"max_tokens":250}`);
    assert.equal(one.status, 200, await one.text());
    const four = await raw(s.url, t.key, '/v1/chat/completions', `{"model":"dev-echo",${msg},"max_tokens":250,"n":4}`);
    assert.equal(four.status, 429, await four.text());
    // Each prompt of a prompt array is held: 20 prompts of max_tokens 60 cannot fit (20 x 63).
    const twenty = JSON.stringify({ model: 'dev-echo', prompt: Array.from({ length: 20 }, (_, i) => `prompt ${i}`), max_tokens: 60 });
    assert.equal((await raw(s.url, t.key, '/v1/completions', twenty)).status, 429);
    // Nothing opened the budget: a request over what is left is still refused.
    const over = await raw(s.url, t.key, '/v1/chat/completions', `{"model":"dev-echo",${msg},"max_tokens":5000}`);
    assert.equal(over.status, 429);
    await waitFor(() => redis.counters(t.tenant)[b.json.id]?.held === 0, { what: 'holds settled' });
    const billed = Number(pg.value(`SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.equal(redis.counters(t.tenant)[b.json.id].used, billed);
    assert.ok(billed <= 1000);
  });

  test('a stream with "stream_options": null is still billed with the upstream\'s usage', async () => {
    const t = await makeTenant(s.adminUrl, 'NullOptions');
    const r = await raw(s.url, t.key, '/v1/chat/completions',
      '{"model":"dev-echo","stream":true,"stream_options":null,"messages":[{"role":"user","content":"count these words please"}]}');
    assert.equal(r.status, 200);
    const events = sseData(await r.text()).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
    assert.ok(events.every((e) => !('usage' in e)), 'the client did not ask for usage and gets none');
    const id = r.headers.get('x-request-id');
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = '${id}'`) === '1', { what: 'row' });
    const [reported, estimated] = pg.query(`SELECT usage_reported, estimated FROM usage_events WHERE request_id = '${id}'`)[0];
    assert.equal(reported, 't', 'the upstream reported usage');
    assert.equal(estimated, 'f');
    const last = await s.lastUpstreamRequest();
    assert.deepEqual(last.body.stream_options, { include_usage: true });

    // An upstream that still reports nothing: billed by the gateway's count, flagged, counted.
    const before = await metric(s, 'tollgate_usage_unreported_total{upstream="dev"}');
    const quiet = await raw(s.url, t.key, '/v1/chat/completions',
      '{"model":"dev-echo","stream":true,"messages":[{"role":"user","content":"tg:no_usage five words in here"}]}');
    assert.equal(quiet.status, 200);
    await quiet.text();
    const qid = quiet.headers.get('x-request-id');
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = '${qid}'`) === '1', { what: 'row' });
    const [qReported, qEstimated, qCompletion] = pg.query(`SELECT usage_reported, estimated, completion_tokens FROM usage_events WHERE request_id = '${qid}'`)[0];
    assert.equal(qReported, 'f');
    assert.equal(qEstimated, 't');
    assert.ok(Number(qCompletion) > 0);
    assert.equal(await metric(s, 'tollgate_usage_unreported_total{upstream="dev"}'), before + 1);
  });

  test('spend budgets with a tiered book count what the ledger bills: two gateways, reconcile shows zero difference', async () => {
    const t = await makeTenant(s.adminUrl, 'TieredSpend');
    // Graduated tiers: the first 300 tokens of a class at the high rate, the rest lower.
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Tiered', currency: 'USD', effective_at: 1_700_000_000,
        models: { 'dev-echo': { input: [{ up_to: 300, rate: '9000000' }, { rate: '2000000' }],
                                output: [{ up_to: 300, rate: '15000000' }, { rate: '3000000' }] } } },
    });
    assert.equal(book.status, 201, book.text);
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
    const limit = 40_000;
    const b = await api(s.adminUrl, 'POST', '/admin/v1/budgets', { body: { tenant_id: t.tenant, metric: 'spend', window: 'month', limit } });
    assert.equal(b.status, 201, b.text);
    const g2 = await startStack({ config: { ...dbConfig(pg, path.join(dir, 'g2')), budgets: redis.budgetsConfig }, upstreamPort: s.upstreamPort });
    try {
      const urls = [s.url, g2.url];
      let granted = 0;
      const client = async (c) => {
        for (let i = 0; i < 200; i += 1) {
          const r = await chat(urls[(c + i) % 2], t.key, `tiered spend ${c} ${i} ${'w '.repeat(c % 7)}`, { max_tokens: 8 });
          await r.text();
          if (r.status === 429) return;
          assert.equal(r.status, 200);
          granted += 1;
        }
      };
      await Promise.all(Array.from({ length: 16 }, (_, c) => client(c)));
      assert.ok(granted > 20, `granted ${granted}`);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === granted,
        { timeoutMs: 15000, what: 'rows' });
      const billed = Number(pg.value(`SELECT sum(cost_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
      assert.ok(billed <= limit, `billed ${billed} > ${limit}`);
      // The settlements count the highest tier; the ledger's corrections bring Redis to the bill.
      await waitFor(() => redis.counters(t.tenant)[b.json.id]?.held === 0 && redis.counters(t.tenant)[b.json.id].used === billed,
        { timeoutMs: 15000, what: `Redis spend == billed ${billed} (now ${JSON.stringify(redis.counters(t.tenant)[b.json.id])})` });
      const report = await api(s.adminUrl, 'POST', '/admin/v1/budgets/reconcile', { body: { tenant_id: t.tenant } });
      assert.equal(report.status, 200, report.text);
      for (const row of report.json.data) assert.equal(row.difference, 0, JSON.stringify(row));
      assert.ok(await metric(s, 'tollgate_budget_spend_corrections_total{outcome="applied"}') +
        await metric(g2, 'tollgate_budget_spend_corrections_total{outcome="applied"}') > 0);
    } finally {
      await g2.gateway.stop();
    }
  });
});

describe('the drain (real PostgreSQL)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-integrity-drain-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: { ...dbConfig(pg, dir), server: { drain_timeout_ms: 1500 } } });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('a stream still open when the drain times out is recorded with what it streamed', async () => {
    const t = await makeTenant(s.adminUrl, 'Drain');
    // 120 tokens 500 ms apart: a minute-long stream.
    const r = await chat(s.url, t.key, 'tg:tokens=120 tg:chunk_delay_ms=500 long stream', { stream: true });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-request-id');
    const reader = r.body.getReader();
    let received = '';
    while ((received.match(/data:/g) ?? []).length < 4) received += new TextDecoder().decode((await reader.read()).value);
    const stoppedAt = Date.now();
    s.gateway.child.kill('SIGTERM');
    const exit = await s.gateway.exited;
    assert.equal(exit.code, 0, s.gateway.output());
    const took = Date.now() - stoppedAt;
    assert.ok(took >= 1400 && took < 12000, `stopped after ${took} ms`);
    const rows = pg.query(`SELECT status, error_code, completion_tokens, estimated FROM usage_events WHERE request_id = '${id}'`);
    assert.equal(rows.length, 1, 'the stream cut by the drain has its ledger row');
    const [status, code, completion, estimated] = rows[0];
    assert.equal(status, '200');
    assert.equal(code, 'drain_timeout');
    assert.ok(Number(completion) >= 3 && Number(completion) < 120, `completion ${completion}`);
    assert.equal(estimated, 't');
    await s.restartGateway();
  });
});
