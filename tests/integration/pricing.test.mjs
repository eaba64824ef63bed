// Integration tests of price books and plans through the admin API and tollctl, against a real
// PostgreSQL: versions with exact decimal rates, Stripe-style tiers, immutable history, plans,
// the audit log, and clear 400s for bad prices.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { startStack, binDir, chatBody, postJson, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, api, makeTenant, refPrice, expectRatedOnce, spoolSegment, ADMIN, FINANCE } from '../lib/ledger.mjs';

// Billing periods are calendar months in UTC.
const thisPeriod = () => new Date().toISOString().slice(0, 7);
const shiftPeriod = (period, months) => {
  const d = new Date(`${period}-01T00:00:00Z`);
  d.setUTCMonth(d.getUTCMonth() + months);
  return d.toISOString().slice(0, 7);
};
const nextPeriod = (period) => shiftPeriod(period, 1);
const previousPeriod = (period) => shiftPeriod(period, -1);

const stripeTiers = [{ up_to: 5_000_000, rate: '7000000' }, { up_to: 10_000_000, rate: '6500000' }, { rate: '6000000' }];

describe('price books and plans (real PostgreSQL)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-pricing-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: dbConfig(pg, dir) });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('a price book with tiers is created, read back exactly, and versioned in order', async () => {
    const created = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: {
        name: 'Standard', currency: 'USD', tier_mode: 'graduated', effective_at: 1_790_000_000,
        models: {
          'dev-echo': { input: stripeTiers, output: [{ rate: '600000.25', flat_fee: 100 }] },
        },
      },
    });
    assert.equal(created.status, 201, created.text);
    const book = created.json;
    assert.match(book.id, /^pb_/);
    assert.equal(book.tier_scope, 'model');
    assert.equal(book.versions.length, 1);
    const v1 = book.versions[0];
    assert.equal(v1.effective_at, 1_790_000_000);
    assert.deepEqual(v1.prices['dev-echo'].input, stripeTiers);
    assert.deepEqual(v1.prices['dev-echo'].cached_input, stripeTiers, 'cached input defaults to input');
    assert.deepEqual(v1.prices['dev-echo'].output, [{ rate: '600000.25', flat_fee: 100 }]);

    // A second version takes effect later, never in the past (usage up to now is rated by the
    // version in force); one that is not after the latest is refused.
    const cheap = { 'dev-echo': { input: [{ rate: '1' }], output: [{ rate: '1' }] } };
    const past = await api(s.adminUrl, 'POST', `/admin/v1/price_books/${book.id}/versions`, {
      body: { effective_at: 1_790_000_001, models: cheap },
    });
    assert.equal(past.status, 400, past.text);
    assert.match(past.json.error.message, /not be in the past/);
    const v2 = await api(s.adminUrl, 'POST', `/admin/v1/price_books/${book.id}/versions`, {
      body: { effective_at: 1_900_000_000, models: { 'dev-echo': { input: [{ rate: '5' }], output: [{ rate: '10' }] } } },
    });
    assert.equal(v2.status, 201, v2.text);
    assert.equal(v2.json.version, 2);
    const early = await api(s.adminUrl, 'POST', `/admin/v1/price_books/${book.id}/versions`, {
      body: { effective_at: 1_899_999_999, models: cheap },
    });
    assert.equal(early.status, 400, early.text);
    assert.match(early.json.error.message, /after the latest version/);
    const read = await api(s.adminUrl, 'GET', `/admin/v1/price_books/${book.id}`);
    assert.deepEqual(read.json.versions.map((v) => v.version), [1, 2]);
    assert.deepEqual(read.json.versions[0].prices, v1.prices, 'version 1 is unchanged');
    const list = await api(s.adminUrl, 'GET', '/admin/v1/price_books?limit=100');
    assert.ok(list.json.data.some((b) => b.id === book.id));

    // Versions are immutable in the database itself.
    assert.throws(() => pg.query(`UPDATE price_book_versions SET prices = '{}' WHERE book_id = '${book.id}'`), /immutable/);
  });

  test('bad price books are a 400 that names the problem, and nothing is stored', async () => {
    const before = (await api(s.adminUrl, 'GET', '/admin/v1/price_books?limit=100')).json.data.length;
    const cases = [
      [{ name: 'x', currency: 'usd', models: { m: { input: [{ rate: '1' }], output: [{ rate: '1' }] } } }, /currency/],
      [{ name: 'x', currency: 'USD', models: { m: { input: [{ rate: 0.5 }], output: [{ rate: '1' }] } } }, /floating-point/],
      [{ name: 'x', currency: 'USD', models: { m: { input: [{ up_to: 10, rate: '1' }], output: [{ rate: '1' }] } } }, /unbounded/],
      [{ name: 'x', currency: 'USD', models: { m: { input: [{ rate: '1' }] } } }, /output/],
      [{ name: 'x', currency: 'USD', tier_scope: 'all_models', models: { m: { input: [{ rate: '1' }], output: [{ rate: '1' }] } } }, /"\*"/],
      [{ name: 'x', currency: 'USD', tier_mode: 'stairs', models: {} }, /tier_mode/],
      [{ name: 'x', currency: 'USD', models: {}, extra: 1 }, /extra/],
    ];
    for (const [body, message] of cases) {
      const r = await api(s.adminUrl, 'POST', '/admin/v1/price_books', { body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.json.error.message, message);
    }
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/price_books?limit=100')).json.data.length, before);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/price_books/pb_nope')).status, 404);
  });

  test('a tenant plan names its price book, batch discount and settlement mode; tollctl works too', async () => {
    const t = await makeTenant(s.adminUrl, 'Planned');
    const book = (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'All models', currency: 'EUR', tier_mode: 'volume', tier_scope: 'all_models',
        models: { '*': { input: stripeTiers, output: stripeTiers } } },
    })).json;
    assert.equal((await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/plan`)).status, 404);
    const set = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.id } });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.json.batch_discount_bp, 5000, 'the batch discount defaults to 50 %');
    assert.equal(set.json.settlement_mode, 'credit_then_invoice');
    assert.equal(set.json.from_period, thisPeriod(), 'a first plan prices the current period');
    assert.equal(set.json.scheduled, null);
    const changed = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`,
      { body: { price_book_id: book.id, settlement_mode: 'credit_only' } });
    assert.equal(changed.json.settlement_mode, 'credit_only', 'a settlement mode applies at once');
    assert.equal(changed.json.batch_discount_bp, 5000, 'unchanged when not given');
    assert.equal(changed.json.scheduled, null);
    for (const body of [{ price_book_id: 'pb_missing' }, { price_book_id: book.id, batch_discount_bp: 10001 },
      { price_book_id: book.id, settlement_mode: 'later' }]) {
      const r = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body });
      assert.ok([400, 404].includes(r.status), `${JSON.stringify(body)}: ${r.text}`);
    }
    const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${t.tenant}`);
    assert.ok(audit.json.data.filter((a) => a.action === 'plan.set').length === 2);

    // tollctl: a book from a file, a plan, both read back.
    const file = path.join(dir, 'book.json');
    writeFileSync(file, JSON.stringify({ name: 'From file', currency: 'EUR', models: { 'dev-echo': { input: [{ rate: '2.5' }], output: [{ rate: '10' }] } } }));
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const tollctl = (...args) => JSON.parse(execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' }));
    const fromFile = tollctl('price-books', 'create', '--file', file);
    assert.equal(fromFile.versions[0].prices['dev-echo'].input[0].rate, '2.5');
    // A new book or discount takes effect at the next period.
    const plan = tollctl('plans', 'set', '--tenant', t.tenant, '--price-book', fromFile.id, '--batch-discount-bp', '2500');
    assert.equal(plan.price_book_id, book.id);
    assert.deepEqual(plan.scheduled, { from_period: nextPeriod(thisPeriod()), price_book_id: fromFile.id, batch_discount_bp: 2500, terms: {} });
    assert.equal(tollctl('plans', 'get', '--tenant', t.tenant).scheduled.price_book_id, fromFile.id);
    assert.equal(tollctl('price-books', 'get', fromFile.id).id, fromFile.id);
  });

  test('a new price book or discount takes effect at the next period, so one plan prices each whole period', async () => {
    const book = async (name, rate, currency = 'USD') => (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name, currency, effective_at: 1_700_000_000, models: { 'dev-echo': { input: [{ rate }], output: [{ rate }] } } },
    })).json;
    const a = await book('Plan A', '1000000');  // 1 micro-unit a token
    const b = await book('Plan B', '3000000');  // 3
    const euro = await book('Plan EUR', '1000000', 'EUR');
    const setPlan = (tenant, body) => api(s.adminUrl, 'POST', `/admin/v1/tenants/${tenant}/plan`, { body });
    const send = async (tenant, n) => {
      for (let i = 0; i < n; i++) {
        const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`repriced request ${i}`, { max_tokens: 5 }),
          { authorization: `Bearer ${tenant.key}` });
        assert.equal(r.status, 200);
        await r.text();
      }
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${tenant.tenant}'`)) === n, { what: 'ledger rows' });
      return pg.query(`SELECT DISTINCT price_book_id, sum(cost_micros) OVER (), sum(prompt_tokens + completion_tokens) OVER ()
        FROM usage_events WHERE tenant_id = '${tenant.tenant}'`);
    };
    const preview = async (tenant, period) =>
      (await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${tenant}&period=${period}`, { token: FINANCE })).json;
    const now = thisPeriod();

    // A change is scheduled; usage until the period ends is rated by the plan in force.
    const t = await makeTenant(s.adminUrl, 'Repriced');
    assert.equal((await setPlan(t.tenant, { price_book_id: a.id })).status, 200);
    const change = await setPlan(t.tenant, { price_book_id: b.id, batch_discount_bp: 2000 });
    assert.equal(change.status, 200, change.text);
    assert.equal(change.json.price_book_id, a.id);
    assert.equal(change.json.batch_discount_bp, 5000);
    assert.deepEqual(change.json.scheduled, { from_period: nextPeriod(now), price_book_id: b.id, batch_discount_bp: 2000, terms: {} });
    const rows = await send(t, 3);
    assert.equal(rows.length, 1, 'one price book rated them all');
    assert.equal(rows[0][0], a.id);
    assert.equal(rows[0][1], rows[0][2], 'at plan A\'s 1 micro-unit a token');
    const p = await preview(t.tenant, now);
    assert.equal(p.price_book_id, a.id);
    assert.equal(String(p.total_micros), rows[0][1], 'the period\'s events add up to its preview');
    // Asking for the current prices again cancels the pending change; a book in another
    // currency is refused; the audit log has each change.
    assert.equal((await setPlan(t.tenant, { price_book_id: a.id, batch_discount_bp: 5000 })).json.scheduled, null);
    const other = await setPlan(t.tenant, { price_book_id: euro.id });
    assert.equal(other.status, 400, other.text);
    assert.match(other.json.error.message, /one currency/);
    assert.equal((await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/plan`)).json.scheduled, null, 'nothing changed');
    const audit = (await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${t.tenant}`)).json.data;
    assert.equal(audit.filter((e) => e.action === 'plan.set').length, 3);

    // When the period turns (moved here in the database: the plans one period back), the
    // scheduled plan prices the new period and the old one keeps its own.
    const u = await makeTenant(s.adminUrl, 'Turned');
    await setPlan(u.tenant, { price_book_id: a.id });
    await setPlan(u.tenant, { price_book_id: b.id, batch_discount_bp: 2000 });
    pg.query(`UPDATE tenant_plans SET from_period = '${previousPeriod(now)}' WHERE tenant_id = '${u.tenant}' AND from_period = '${now}'`);
    pg.query(`UPDATE tenant_plans SET from_period = '${now}' WHERE tenant_id = '${u.tenant}' AND from_period = '${nextPeriod(now)}'`);
    const turned = (await api(s.adminUrl, 'GET', `/admin/v1/tenants/${u.tenant}/plan`)).json;
    assert.deepEqual([turned.price_book_id, turned.batch_discount_bp, turned.from_period, turned.scheduled], [b.id, 2000, now, null]);
    const later = await send(u, 3);
    assert.equal(later[0][0], b.id);
    assert.equal(Number(later[0][1]), 3 * Number(later[0][2]), 'at plan B\'s 3 micro-units a token');
    const q = await preview(u.tenant, now);
    assert.deepEqual([q.price_book_id, q.batch_discount_bp, String(q.total_micros)], [b.id, 2000, later[0][1]]);
    assert.equal((await preview(u.tenant, previousPeriod(now))).price_book_id, a.id, 'the earlier period keeps plan A');

    // A late event of the earlier period (handed to the ledger writer as its spool replays it)
    // is rated by that period's plan, A, while the current period's events stay on B.
    await s.gateway.stop();
    const spoolDir = JSON.parse(readFileSync(s.configPath, 'utf8')).ledger.spool_dir;
    const late = [u.tenant, `${previousPeriod(now)}-15 12:00:00+00`, `late_${u.tenant}`, '\\N', '\\N', '/v1/chat/completions',
      'dev-echo', 'dev', 'f', 'f', '200', '10', '0', '5', '0', '\\N', '\\N', 't', 'f', '1000', '\\N', 'f', '\\N', '\\N'].join('\t') + '\n';
    writeFileSync(path.join(spoolDir, 'ledger-9200000000000001.spool'), spoolSegment([late]));
    await s.restartGateway();
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = 'late_${u.tenant}'`) === '1', { what: 'the late event replayed' });
    assert.deepEqual(pg.query(`SELECT price_book_id, cost_micros FROM usage_events WHERE request_id = 'late_${u.tenant}'`)[0],
      [a.id, '15'], 'rated by plan A at 1 micro-unit a token');
    assert.equal(String((await preview(u.tenant, previousPeriod(now))).total_micros), '15');
  });

  test('the cost preview prices the ledger totals of the period, per model, class and batch flag', async () => {
    const t = await makeTenant(s.adminUrl, 'Costly');
    // Small tiers so that a few requests cross them: input 1..40 tokens at 3.5 micro-units
    // each, then 1.25; output 2 each with a flat fee of 7 once past 30 tokens.
    const input = [{ up_to: 40, rate: '3500000' }, { rate: '1250000' }];
    const output = [{ up_to: 30, rate: '2000000' }, { rate: '2000000', flat_fee: 7 }];
    const book = (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Preview', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input, output } } },
    })).json;
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.id, batch_discount_bp: 4000 } });
    assert.equal(plan.status, 200, plan.text);
    // Each response quotes its cost in x-tollgate-cost-micros (a trailer for streams).
    const quoted = new Map();
    for (let i = 0; i < 6; i++) {
      const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`preview request number ${i} with some words`, { max_tokens: 9 }),
        { authorization: `Bearer ${t.key}` });
      assert.equal(r.status, 200);
      await r.text();
      assert.match(r.headers.get('x-tollgate-cost-micros') ?? '', /^[0-9]+$/);
      quoted.set(r.headers.get('x-request-id'), Number(r.headers.get('x-tollgate-cost-micros')));
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 6, { what: 'ledger rows' });
    // Each event was rated as it was stored, one flush each: on the period's accumulators the
    // charges telescope to exactly F(total), and each names the version that priced it.
    const rated = expectRatedOnce(assert, pg, t.tenant);
    assert.equal(rated.cost, refPrice(input, Number(rated.input)) + refPrice(output, Number(rated.output)));
    assert.equal(pg.value(`SELECT string_agg(DISTINCT price_book_id || '/' || price_book_version, ',') FROM usage_events
      WHERE tenant_id = '${t.tenant}'`), `${book.id}/1`);
    const raw = (await api(s.adminUrl, 'GET', `/finance/v1/usage_events?tenant_id=${t.tenant}&limit=100`, { token: FINANCE })).json.data;
    // One gateway, requests one after the other: each quote is exactly what the ledger rated.
    for (const e of raw) assert.equal(quoted.get(e.request_id), e.cost_micros, `the quote of ${e.request_id}`);
    assert.equal(raw.reduce((n, e) => n + e.cost_micros, 0), Number(rated.cost), 'the finance API shows each event\'s cost');
    assert.ok(raw.every((e) => e.price_book_id === book.id && e.price_book_version === 1));
    // A batch row (written here directly; tests/e2e/openai_batches.test.mjs runs real batch
    // jobs) is priced on its own accumulator with the plan's discount.
    pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, endpoint, model, upstream, stream, batch, status,
      prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_reported, estimated, latency_us, client_disconnected)
      VALUES ('${t.tenant}', now(), 'batch_req_1', '/v1/chat/completions', 'dev-echo', 'dev', false, true, 200, 55, 0, 33, 0, true, false, 1, false)`);
    const [live] = pg.query(`SELECT sum(prompt_tokens - cached_prompt_tokens), sum(completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}' AND NOT batch`).map((r) => r.map(Number));
    const r = await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}`, { token: FINANCE });
    assert.equal(r.status, 200, r.text);
    const p = r.json;
    assert.equal(p.currency, 'USD');
    assert.equal(p.batch_discount_bp, 4000);
    // One line per tier: a class's lines add up to its accumulator.
    const line = (cls, batch) => p.lines.filter((l) => l.token_class === cls && l.batch === batch)
      .reduce((sum, l) => ({ tokens: sum.tokens + l.tokens, amount_micros: sum.amount_micros + l.amount_micros }), { tokens: 0, amount_micros: 0 });
    assert.equal(line('input', false).tokens, live[0]);
    assert.equal(BigInt(line('input', false).amount_micros), refPrice(input, live[0]));
    assert.equal(BigInt(line('output', false).amount_micros), refPrice(output, live[1]));
    assert.equal(BigInt(line('input', true).amount_micros), refPrice(input, 55, 4000));
    assert.equal(BigInt(line('output', true).amount_micros), refPrice(output, 33, 4000));
    assert.equal(p.total_micros, p.lines.reduce((n, l) => n + l.amount_micros, 0));
    assert.ok(live[0] > 40 && live[1] > 30, 'the requests crossed the tiers');
    assert.deepEqual(p.unpriced, []);
    // The month is under way: the forecast projects each class's tokens to its end at the run
    // rate so far and prices them with the same tiers (tokens * period / elapsed, floored).
    assert.equal(p.forecast.method, 'run_rate');
    const [start, end] = [Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) / 1000,
      Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() + 1, 1) / 1000];
    assert.equal(p.forecast.period_s, end - start);
    assert.ok(p.forecast.elapsed_s > 0 && p.forecast.elapsed_s < p.forecast.period_s);
    const projected = (n) => Number((BigInt(n) * BigInt(p.forecast.period_s)) / BigInt(p.forecast.elapsed_s));
    const fline = (cls, batch) => p.forecast.lines.filter((l) => l.token_class === cls && l.batch === batch)
      .reduce((sum, l) => ({ tokens: sum.tokens + l.tokens, amount_micros: sum.amount_micros + l.amount_micros }), { tokens: 0, amount_micros: 0 });
    assert.equal(fline('input', false).tokens, projected(live[0]));
    assert.equal(BigInt(fline('input', false).amount_micros), refPrice(input, projected(live[0])));
    assert.equal(p.forecast.total_micros, p.forecast.lines.reduce((n, l) => n + l.amount_micros, 0));
    assert.ok(p.forecast.total_micros >= p.total_micros);
    // tollctl with the finance token; bad periods and unknown tenants are clear errors.
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_FINANCE_TOKEN: FINANCE };
    const viaCli = JSON.parse(execFileSync(path.join(binDir, 'tollctl'), ['costs', 'preview', '--tenant', t.tenant], { env, encoding: 'utf8' }));
    assert.equal(viaCli.total_micros, p.total_micros);
    assert.equal((await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}&period=2026-13`, { token: FINANCE })).status, 400);
    assert.equal((await api(s.adminUrl, 'GET', '/finance/v1/cost_preview', { token: FINANCE })).status, 400);
    const none = await api(s.adminUrl, 'GET', '/finance/v1/cost_preview?tenant_id=ten_nobody', { token: FINANCE });
    assert.equal(none.status, 404);
    const empty = await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}&period=2020-01`, { token: FINANCE });
    assert.equal(empty.json.total_micros, 0);
    assert.equal(empty.json.forecast, null, 'a period that is over has no forecast');

    // A stream carries its cost as an HTTP trailer (announced in `Trailer`), read here with
    // node's own HTTP client; it is the cost the ledger stores.
    const streamed = await new Promise((resolve, reject) => {
      const req = http.request(`${s.url}/v1/chat/completions`, { method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ headers: res.headers, trailers: res.trailers }));
      });
      req.on('error', reject);
      req.end(chatBody('a streamed request for the trailer', { stream: true, max_tokens: 9 }));
    });
    assert.equal(streamed.headers.trailer, 'x-tollgate-cost-micros');
    assert.match(streamed.trailers['x-tollgate-cost-micros'] ?? '', /^[0-9]+$/);
    const id = streamed.headers['x-request-id'];
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = '${id}'`) === '1', { what: 'the stream\'s row' });
    assert.equal(pg.value(`SELECT cost_micros FROM usage_events WHERE request_id = '${id}'`), streamed.trailers['x-tollgate-cost-micros']);
  });

  test('invoices: drafts are repeatable, lines add up in minor units, finalized ones are numbered and immutable', async () => {
    const t = await makeTenant(s.adminUrl, 'Invoiced');
    const input = [{ up_to: 30, rate: '3333333.333333' }, { rate: '1250000' }];
    const output = [{ rate: '2000000.5' }];
    const book = (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Invoices', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input, output } } },
    })).json;
    await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.id } });
    for (let i = 0; i < 4; i++) {
      const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`invoice request ${i} with several more words`, { max_tokens: 7 }),
        { authorization: `Bearer ${t.key}` });
      assert.equal(r.status, 200);
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 4, { what: 'ledger rows' });
    const period = new Date().toISOString().slice(0, 7);
    const run = async (body) => api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { tenant_id: t.tenant, ...body } });
    const first = await run({ period });
    assert.equal(first.status, 200, first.text);
    const draft = first.json.data[0];
    assert.equal(draft.status, 'draft');
    assert.equal(draft.number, null);
    const [live] = pg.query(`SELECT sum(prompt_tokens - cached_prompt_tokens), sum(completion_tokens) FROM usage_events
      WHERE tenant_id = '${t.tenant}'`).map((r) => r.map(Number));
    // Tier lines: the input splits at 30 tokens; every line adds up to F(total) per class.
    const inputLines = draft.lines.filter((l) => l.token_class === 'input');
    assert.deepEqual(inputLines.map((l) => l.tier), [1, 2]);
    assert.equal(inputLines[0].tokens, 30);
    assert.equal(inputLines.reduce((n, l) => n + l.tokens, 0), live[0]);
    assert.equal(BigInt(inputLines.reduce((n, l) => n + l.amount_micros, 0)), refPrice(input, live[0]));
    assert.equal(BigInt(draft.lines.find((l) => l.token_class === 'output').amount_micros), refPrice(output, live[1]));
    // Minor units: the total rounded half up, the lines adding up to it exactly.
    const totalMicros = draft.lines.reduce((n, l) => n + l.amount_micros, 0);
    assert.equal(draft.total_micros, totalMicros);
    assert.equal(draft.total_minor, Math.floor((totalMicros + 5000) / 10000));
    assert.equal(draft.lines.reduce((n, l) => n + l.amount_minor, 0), draft.total_minor);
    // The same ledger gives the same invoice.
    const again = (await run({ period })).json.data[0];
    assert.equal(again.id, draft.id);
    assert.deepEqual(again.lines, draft.lines);
    // Not before the period's end plus the grace period.
    const early = await run({ period, finalize: true });
    assert.equal(early.status, 400);
    assert.equal(early.json.error.code, 'too_early');

    // A past period: finalized, numbered, then frozen.
    pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, endpoint, model, upstream, stream, batch, status,
      prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_reported, estimated, latency_us, client_disconnected)
      VALUES ('${t.tenant}', '2026-09-15T12:00:00Z', 'past_req_1', '/v1/chat/completions', 'dev-echo', 'dev', false, false, 200, 45, 5, 20, 0, true, false, 1, false)`);
    const final = await run({ period: '2026-09', finalize: true });
    assert.equal(final.status, 200, final.text);
    const inv = final.json.data[0];
    assert.equal(inv.status, 'finalized');
    assert.match(inv.number, /^TG-\d{6}$/);
    assert.equal(inv.lines.find((l) => l.token_class === 'cached_input').tokens, 5);
    const repeat = (await run({ period: '2026-09', finalize: true })).json.data[0];
    assert.equal(repeat.number, inv.number, 'a finalized invoice is returned unchanged');
    assert.throws(() => pg.query(`UPDATE invoices SET total_micros = 0 WHERE id = '${inv.id}'`), /finalized/);
    // A late event after finalization does not change the finalized invoice.
    pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, endpoint, model, upstream, stream, batch, status,
      prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, usage_reported, estimated, latency_us, client_disconnected)
      VALUES ('${t.tenant}', '2026-09-20T12:00:00Z', 'past_req_2', '/v1/chat/completions', 'dev-echo', 'dev', false, false, 200, 10, 0, 10, 0, true, false, 1, false)`);
    assert.deepEqual((await run({ period: '2026-09' })).json.data[0].lines, inv.lines);
    // It becomes an adjustment on the next invoice, priced at its place in its own period
    // (after the 40 input and 20 output tokens already invoiced).
    const october = (await run({ period: '2026-10', finalize: true })).json.data[0];
    assert.equal(october.status, 'finalized');
    assert.deepEqual(october.lines, []);
    const adj = Object.fromEntries(october.adjustments.map((a) => [a.token_class, a]));
    assert.deepEqual(Object.keys(adj).sort(), ['input', 'output']);
    assert.equal(adj.input.period, '2026-09');
    assert.equal(adj.input.tokens, 10);
    assert.equal(BigInt(adj.input.amount_micros), refPrice(input, 50) - refPrice(input, 40));
    assert.equal(BigInt(adj.output.amount_micros), refPrice(output, 30) - refPrice(output, 20));
    assert.equal(october.total_micros, adj.input.amount_micros + adj.output.amount_micros);
    assert.equal(october.adjustments.reduce((n, a) => n + a.amount_minor, 0), october.total_minor);
    // Adjusted once: the current period's draft does not charge it again.
    assert.deepEqual((await run({ period })).json.data[0].adjustments, []);

    // Finance API: list, get, CSV; tollctl.
    const list = await api(s.adminUrl, 'GET', `/finance/v1/invoices?tenant_id=${t.tenant}`, { token: FINANCE });
    assert.deepEqual(list.json.data.map((i) => i.period).sort(), ['2026-09', '2026-10', period]);
    const got = await api(s.adminUrl, 'GET', `/finance/v1/invoices/${inv.id}`, { token: FINANCE });
    assert.equal(got.json.number, inv.number);
    const csv = await fetch(`${s.adminUrl}/finance/v1/invoices/${inv.id}?format=csv`, { headers: { authorization: `Bearer ${FINANCE}` } });
    assert.equal(csv.headers.get('content-type'), 'text/csv');
    const rows = (await csv.text()).trim().split('\n');
    assert.equal(rows[0], 'invoice_number,period,currency,model,token_class,batch,tier,tokens,amount_micros,amount_minor');
    assert.equal(rows.length, 1 + inv.lines.length + 2, 'lines, total, total due (no credits)');
    assert.equal(rows.at(-2), `${inv.number},2026-09,USD,total,,,,,${inv.total_micros},${inv.total_minor}`);
    assert.equal(rows.at(-1), `${inv.number},2026-09,USD,total_due,,,,,${inv.total_micros},${inv.total_minor}`);
    assert.equal((await api(s.adminUrl, 'GET', '/finance/v1/invoices/inv_nope', { token: FINANCE })).status, 404);
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const cli = (...args) => execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' });
    assert.equal(JSON.parse(cli('invoices', 'run', '--period', '2026-09', '--tenant', t.tenant)).data[0].number, inv.number);
    assert.ok(cli('invoices', 'get', inv.id, '--csv').startsWith('invoice_number,'));
    assert.equal((await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period: '2026-9' } })).status, 400);
  });
});
