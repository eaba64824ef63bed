// Integration tests of plan terms against a real PostgreSQL and gateway: a tenant on a seat plan
// with a base fee, token allowances, a commitment and a credit grant runs through a month of
// usage sent with the official `openai` client through the gateway, the ledger writer and
// rating (the gateway restarted further into the month with the test-only clock offset), and its
// invoice matches an independent computation in BigInt; the clock offset is refused outside test
// mode; seats and terms are read back, audited, and bad ones refused with clear 400s.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync, execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { startStack, binDir, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { dbConfig, api, makeTenant, refPrice, ADMIN, FINANCE } from '../lib/ledger.mjs';

const day = 86_400;
const nextPeriod = () => {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toISOString().slice(0, 7);
};
const tiers = [{ up_to: 120, rate: '2500000.5' }, { up_to: 900, rate: '1250000' }, { rate: '600000.25' }];

describe('plan terms: seats, allowances, commitments (real PostgreSQL)', () => {
  let pg;
  let redis;
  let s;
  const env = { TOLLGATE_TEST_MODE: '1' };
  const dir = path.join('/tmp', `tollgate-plans-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    // Budgets on (Redis) for the webhook dispatcher that announces auto top-ups.
    redis = await startRedis();
    s = await startStack({ config: { ...dbConfig(pg, dir),
      budgets: { ...redis.budgetsConfig, alert_webhook_allow_private: true } }, env });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });
  // The gateway again, its wall clock at `at` (unix seconds).
  const restartAt = async (at) => {
    await s.gateway.stop();
    env.TOLLGATE_TEST_CLOCK_OFFSET_S = String(at - Math.floor(Date.now() / 1000));
    await s.restartGateway();
  };

  test('the test clock offset is refused unless test mode is on', () => {
    const run = spawnSync(path.join(binDir, 'tollgate'), ['--config', s.configPath], {
      env: { ...process.env, TOLLGATE_TEST_MODE: '', TOLLGATE_TEST_CLOCK_OFFSET_S: '86400' },
      timeout: 10_000, encoding: 'utf8',
    });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /TOLLGATE_TEST_CLOCK_OFFSET_S is for tests only and is refused unless TOLLGATE_TEST_MODE=1/);
    const bad = spawnSync(path.join(binDir, 'tollgate'), ['--config', s.configPath], {
      env: { ...process.env, TOLLGATE_TEST_MODE: '1', TOLLGATE_TEST_CLOCK_OFFSET_S: '1d' },
      timeout: 10_000, encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /must be an integer number of seconds/);
  });

  test('plan terms and seats are checked, read back and audited', async () => {
    const t = await makeTenant(s.adminUrl, 'Terms');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Terms book', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input: tiers, output: tiers } } },
    });
    assert.equal(book.status, 201, book.text);
    const plan = `/admin/v1/tenants/${t.tenant}/plan`;
    for (const [body, param] of [
      [{ base_fee_micros: -1 }, 'base_fee_micros'],
      [{ seat_fee_micros: 1_000_000_000_001 }, 'seat_fee_micros'],
      [{ allowances: [{ model: 'dev-echo', token_class: 'input', tokens: 0 }] }, 'allowances'],
      [{ allowances: [{ model: 'dev-echo', token_class: 'input', tokens: 5 }, { model: 'dev-echo', token_class: 'input', tokens: 6 }] }, 'allowances'],
      [{ allowances: 'many' }, 'allowances'],
    ]) {
      const r = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id, ...body } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, param, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
    }
    assert.equal((await api(s.adminUrl, 'GET', plan)).status, 404, 'nothing was set by the refusals');
    const set = await api(s.adminUrl, 'POST', plan, {
      body: { price_book_id: book.json.id, base_fee_micros: 9_000_000, allowances: [
        { model: 'dev-echo', token_class: 'output', tokens: 50 }, { model: 'dev-echo', token_class: 'input', tokens: 40 }] },
    });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.json.terms, { base_fee_micros: 9_000_000, allowances: [
      { model: 'dev-echo', token_class: 'input', tokens: 40 }, { model: 'dev-echo', token_class: 'output', tokens: 50 }] });
    // A later change of terms waits for the next period; members not given are kept, null
    // takes one away.
    const change = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id, commitment_micros: 5, base_fee_micros: null } });
    assert.equal(change.status, 200, change.text);
    assert.deepEqual(change.json.terms, set.json.terms, 'the current period keeps its terms');
    assert.deepEqual(change.json.scheduled.terms, { commitment_micros: 5, allowances: set.json.terms.allowances });

    // Seats: not for days past; read back with their history; tollctl does the same.
    const seats = `/admin/v1/tenants/${t.tenant}/seats`;
    const now = Math.floor(Date.now() / 1000);
    const past = await api(s.adminUrl, 'POST', seats, { body: { seats: 3, effective_at: now - 2 * day } });
    assert.equal(past.status, 400, past.text);
    assert.equal(past.json.error.param, 'effective_at');
    assert.equal((await api(s.adminUrl, 'POST', seats, { body: { seats: -1 } })).status, 400);
    assert.equal((await api(s.adminUrl, 'POST', seats, { body: {} })).status, 400);
    assert.equal((await api(s.adminUrl, 'POST', '/admin/v1/tenants/ten_nobody/seats', { body: { seats: 1 } })).status, 404);
    const three = await api(s.adminUrl, 'POST', seats, { body: { seats: 3 } });
    assert.equal(three.status, 200, three.text);
    assert.equal(three.json.seats, 3);
    const later = new Date((now + 3 * day) * 1000).toISOString().slice(0, 10);
    const cli = (...args) => JSON.parse(execFileSync(path.join(binDir, 'tollctl'), args,
      { env: { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN }, encoding: 'utf8' }));
    const viaCli = cli('seats', 'set', '--tenant', t.tenant, '--seats', '7', '--effective-at', String(now + 3 * day));
    assert.equal(viaCli.seats, 3, 'today still has 3');
    assert.deepEqual(viaCli.history.map((h) => h.seats), [3, 7]);
    assert.equal(viaCli.history[1].effective_day, later);
    assert.deepEqual(cli('seats', 'get', '--tenant', t.tenant).history, viaCli.history);
    // tollctl sets terms too; they merge over the pending change's.
    const cliPlan = cli('plans', 'set', '--tenant', t.tenant, '--price-book', book.json.id,
      '--seat-fee-micros', '7', '--allowances', 'dev-echo:output:9');
    assert.deepEqual(cliPlan.scheduled.terms, { commitment_micros: 5, seat_fee_micros: 7,
      allowances: [{ model: 'dev-echo', token_class: 'output', tokens: 9 }] });
    assert.deepEqual(cliPlan.terms, set.json.terms);
    // Token bundles: bad ones are refused and make nothing; tollctl makes one.
    const bundles = `/admin/v1/tenants/${t.tenant}/token_bundles`;
    const good = { model: 'dev-echo', token_class: 'input', tokens: 1000, price_per_million_micros: 2_000_000 };
    for (const [body, param] of [
      [{ ...good, token_class: 'reasoning' }, 'token_class'],
      [{ ...good, tokens: 0 }, 'tokens'],
      [{ ...good, tokens: 1, price_per_million_micros: 1 }, 'tokens'],
      [{ ...good, price_per_million_micros: undefined }, 'price_per_million_micros'],
      [{ ...good, model: undefined }, 'model'],
      [{ ...good, effective_at: 2_000_000_000, expires_at: 1_999_999_999 }, 'expires_at'],
      [{ ...good, amount_micros: 5 }, 'amount_micros'],
    ]) {
      const r = await api(s.adminUrl, 'POST', bundles, { body });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, param, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
    }
    assert.deepEqual((await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`)).json.grants, [], 'no bundle was made');
    const cliBundle = cli('credits', 'bundle', '--tenant', t.tenant, '--model', 'dev-echo', '--token-class', 'output',
      '--tokens', '3000', '--price-per-million-micros', '1500000', '--memo', 'pack');
    assert.deepEqual([cliBundle.kind, cliBundle.token_class, cliBundle.tokens, cliBundle.tokens_left, cliBundle.amount_micros, cliBundle.price_paid_micros],
      ['bundle', 'output', 3000, 3000, 4500, 4500]);
    const listed = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`);
    assert.equal(listed.json.available_micros, 0, 'a bundle is not money credit');
    assert.equal(listed.json.grants[0].id, cliBundle.id);
    const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${t.tenant}`);
    assert.ok(audit.json.data.filter((a) => a.action === 'seats.set').length === 2, audit.text);
  });

  test('an allowance in money: usage is included up to it, then charged; the cost header, the ledger and the invoice agree', async () => {
    const t = await makeTenant(s.adminUrl, 'Included');
    // 2 and 3 micro-units a token: charges are exact integers, 2 x input + 3 x output.
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Included book', currency: 'USD', effective_at: 1_700_000_000,
        models: { 'dev-echo': { input: [{ rate: '2000000' }], output: [{ rate: '3000000' }] } } },
    });
    assert.equal(book.status, 201, book.text);
    const plan = `/admin/v1/tenants/${t.tenant}/plan`;
    const refused = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id, included_usage_micros: -5 } });
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json.error.param, 'included_usage_micros');
    const included = 500n;
    const set = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id, included_usage_micros: Number(included) } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.json.terms, { included_usage_micros: 500 });
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    let before = 0n;  // the period's charges before the allowance
    const expected = [];
    for (let i = 0; i < 6; i++) {
      const { data: r, response } = await client.chat.completions.create({
        model: 'dev-echo', max_tokens: 30,
        messages: [{ role: 'user', content: `request ${i}: ${'included words '.repeat(8 + 4 * i)}` }],
      }).withResponse();
      const charge = 2n * BigInt(r.usage.prompt_tokens) + 3n * BigInt(r.usage.completion_tokens);
      const over = (c) => (c > included ? c - included : 0n);
      const due = over(before + charge) - over(before);
      before += charge;
      expected.push(due);
      assert.equal(BigInt(response.headers.get('x-tollgate-cost-micros')), due, `request ${i}`);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === i + 1,
        { what: 'the request stored' });
    }
    assert.ok(before > included && expected[0] === 0n, 'the month crosses the allowance');
    const stored = pg.query(`SELECT cost_micros FROM usage_events WHERE tenant_id = '${t.tenant}' ORDER BY occurred_at, request_id`)
      .map(([c]) => BigInt(c));
    assert.deepEqual(stored.reduce((n, c) => n + c, 0n), before - included);
    assert.deepEqual([...stored].sort(), [...expected].sort(), 'each event pays what passes the allowance');
    const period = new Date().toISOString().slice(0, 7);
    const run = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } });
    assert.equal(run.status, 200, run.text);
    const invoice = run.json.data[0];
    assert.equal(BigInt(invoice.total_micros), before - included, run.text);
    const line = invoice.lines.find((l) => l.token_class === 'included_usage');
    assert.deepEqual([line.model, line.included, BigInt(line.amount_micros)], ['*', true, -included]);
    assert.equal(invoice.lines.reduce((n, l) => n + BigInt(l.amount_micros), 0n), before - included);
  });

  test('a token bundle shared with some projects pays for their usage only', async () => {
    const t = await makeTenant(s.adminUrl, 'Shared');
    const other = await makeTenant(s.adminUrl, 'Stranger');
    const p2 = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/projects`, { body: { name: 'Shared batch' } });
    assert.equal(p2.status, 201, p2.text);
    const k2 = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.tenant, project_id: p2.json.id, name: 'Shared batch key' } });
    assert.equal(k2.status, 201, k2.text);
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Shared book', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input: tiers, output: tiers } } },
    });
    assert.equal(book.status, 201, book.text);
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
    const bundles = `/admin/v1/tenants/${t.tenant}/token_bundles`;
    const spec = { model: 'dev-echo', token_class: 'input', tokens: 100_000, price_per_million_micros: 1_000_000 };
    const stranger = await api(s.adminUrl, 'POST', bundles, { body: { ...spec, project_ids: [other.project] } });
    assert.equal(stranger.status, 404, stranger.text);
    const empty = await api(s.adminUrl, 'POST', bundles, { body: { ...spec, project_ids: [] } });
    assert.equal(empty.status, 400, empty.text);
    assert.equal(empty.json.error.param, 'project_ids');
    const made = await api(s.adminUrl, 'POST', bundles, { body: { ...spec, project_ids: [p2.json.id] } });
    assert.equal(made.status, 201, made.text);
    assert.deepEqual(made.json.project_ids, [p2.json.id]);
    const quoted = {};  // the cost header, by request id
    for (const key of [t.key, k2.json.key]) {
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: key, maxRetries: 0 });
      const { data: r, response } = await client.chat.completions.create({ model: 'dev-echo', max_tokens: 5,
        messages: [{ role: 'user', content: 'shared bundle words' }] }).withResponse();
      quoted[response.headers.get('x-request-id') ?? r.id] = response.headers.get('x-tollgate-cost-micros');
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 2, { what: 'both stored' });
    const rows = pg.query(`SELECT project_id, coalesce(bundle_input_tokens, 0), prompt_tokens, request_id, cost_micros
      FROM usage_events WHERE tenant_id = '${t.tenant}'`);
    const byProject = Object.fromEntries(rows.map(([p, b, n]) => [p, [Number(b), Number(n)]]));
    assert.equal(byProject[t.project][0], 0, 'the first project pays at the price book');
    assert.equal(byProject[p2.json.id][0], byProject[p2.json.id][1], 'the bundle pays for the shared project\'s input');
    // The cost header quoted what the ledger stored, the bundle's locked price included.
    for (const [, , , requestId, cost] of rows) assert.equal(quoted[requestId], cost, `request ${requestId}`);
  });

  test('a month of usage on a seat plan with allowances and a commitment: the invoice matches an independent computation', async () => {
    const t = await makeTenant(s.adminUrl, 'Month');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Month book', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input: tiers, output: tiers } } },
    });
    assert.equal(book.status, 201, book.text);
    const allowance = { input: 150n, output: 200n };
    const terms = {
      base_fee_micros: 20_000_000, seat_fee_micros: 30_000_000, commitment_micros: 60_000_000,
      allowances: [{ model: 'dev-echo', token_class: 'input', tokens: 150 }, { model: 'dev-echo', token_class: 'output', tokens: 200 }],
    };
    const set = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id, ...terms } });
    assert.equal(set.status, 200, set.text);
    const grant = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/credit_grants`,
      { body: { kind: 'purchased', amount_micros: 900, price_paid_micros: 800 } });
    assert.equal(grant.status, 201, grant.text);
    // Auto top-up: when the credit falls below 400, a grant of 500 (paid 450), announced by a
    // signed webhook.
    const hooks = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { hooks.push({ headers: req.headers, body }); res.writeHead(204).end(); });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    const topUp = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/auto_top_up`, { body: {
      threshold_micros: 400, amount_micros: 500, price_paid_micros: 450, webhook_url: `http://127.0.0.1:${receiver.address().port}/top-ups` } });
    assert.equal(topUp.status, 200, topUp.text);
    assert.match(topUp.json.webhook_secret, /^whsec_/);
    assert.deepEqual(topUp.json.top_ups, []);
    const bad = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/auto_top_up`, { body: { threshold_micros: 0, amount_micros: 5, price_paid_micros: 1 } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.param, 'threshold_micros');

    // The month after this one, day by day: the gateway's clock moved there for each day.
    const period = nextPeriod();
    const start = Date.parse(`${period}-01T00:00:00Z`) / 1000;
    // Token bundles: 100 input tokens at a locked 1.234567 units per 1M, drawn past the input
    // allowance before the credit; 500 output tokens that expire after day 16, the rest to
    // breakage.
    const bundle = { tokens: 100n, price: 1_234_567n };
    const made = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/token_bundles`, { body: {
      id: `cg_in_${t.tenant}`, model: 'dev-echo', token_class: 'input', tokens: 100, price_per_million_micros: 1_234_567, effective_at: start } });
    assert.equal(made.status, 201, made.text);
    assert.deepEqual([made.json.kind, made.json.amount_micros, made.json.tokens_left, made.json.models], ['bundle', 123, 100, ['dev-echo']]);
    const retry = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/token_bundles`, { body: {
      id: `cg_in_${t.tenant}`, model: 'dev-echo', token_class: 'input', tokens: 100, price_per_million_micros: 1_234_567, effective_at: start } });
    assert.equal(retry.status, 201, retry.text);
    assert.equal(retry.json.id, made.json.id, 'the same id makes the bundle once');
    const expiring = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/token_bundles`, { body: {
      model: 'dev-echo', token_class: 'output', tokens: 500, price_per_million_micros: 2_000_000, effective_at: start, expires_at: start + 16 * day } });
    assert.equal(expiring.status, 201, expiring.text);
    let outputToDay15 = 0n;
    const end = Date.parse(new Date(Date.UTC(Number(period.slice(0, 4)), Number(period.slice(5, 7)), 1)).toISOString()) / 1000;
    const days = BigInt((end - start) / day);
    const totals = { input: 0n, output: 0n };
    let sent = 0;
    const events = [];  // [day, input, output] in the order the ledger stored them
    const plan = [[0, 3, 4], [6, 0, 3], [15, 5, 5], [24, 0, 4], [Number(days) - 1, 0, 3]];  // [day, seats set, requests]
    for (const [d, seats, requests] of plan) {
      await restartAt(start + d * day + 3600);
      if (seats) {
        const r = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/seats`, { body: { seats } });
        assert.equal(r.status, 200, r.text);
      }
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
      for (let i = 0; i < requests; i++) {
        const { data: r, response } = await client.chat.completions.create({
          model: 'dev-echo', max_tokens: 20 + 7 * i,
          messages: [{ role: 'user', content: `day ${d} request ${i}: ${'usage words '.repeat(3 + 5 * i)}` }],
        }).withResponse();
        if (sent === 0) {
          // The month's first request lies inside both allowances: its quoted cost is 0.
          assert.ok(r.usage.prompt_tokens < 150 && r.usage.completion_tokens < 200, JSON.stringify(r.usage));
          assert.equal(response.headers.get('x-tollgate-cost-micros'), '0');
        }
        // One event per ledger batch, so the independent computation can follow each draw.
        await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === sent + 1,
          { what: 'the request stored' });
        events.push([d, BigInt(r.usage.prompt_tokens - (r.usage.prompt_tokens_details?.cached_tokens ?? 0)), BigInt(r.usage.completion_tokens)]);
        totals.input += BigInt(r.usage.prompt_tokens - (r.usage.prompt_tokens_details?.cached_tokens ?? 0));
        totals.output += BigInt(r.usage.completion_tokens);
        if (d <= 15) outputToDay15 += BigInt(r.usage.completion_tokens);
        sent++;
      }
    }
    assert.ok(totals.input > allowance.input && totals.output > allowance.output, 'the month goes past its allowances');
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === sent,
      { what: 'the month of rows' });
    const [stamped] = pg.query(`SELECT min(occurred_at) >= to_timestamp(${start}) AND max(occurred_at) < to_timestamp(${end})
      FROM usage_events WHERE tenant_id = '${t.tenant}'`)[0];
    assert.equal(stamped, 't', 'every event is stamped in the shifted month');

    // The independent computation. Allowances first: the tiers price what is past them, from
    // the first tier. Seats by day: 3 from day 1, 5 from day 16, one floor for the period. The
    // commitment tops usage up to 60 currency units. Credit pays what it holds.
    // Then the bundles: the input bundle pays for the first 100 input tokens past the
    // allowance at its locked price; the output bundle for what days 1 to 16 used past the
    // output allowance.
    const over = (n, a) => (n > a ? n - a : 0n);
    const min = (a, b) => (a < b ? a : b);
    const inBundle = min(bundle.tokens, over(totals.input, allowance.input));
    const outBundle = min(500n, over(outputToDay15, allowance.output));
    assert.ok(outBundle > 0n && outBundle < 500n, 'the output bundle is drawn in part');
    const bundlePaid = (inBundle * bundle.price) / 1_000_000n + (outBundle * 2_000_000n) / 1_000_000n;
    const usage = refPrice(tiers, over(totals.input, allowance.input + inBundle)) +
      refPrice(tiers, over(totals.output, allowance.output + outBundle));
    const seatDays = 15n * 3n + (days - 15n) * 5n;
    const seatFee = (30_000_000n * seatDays) / days;
    const trueUp = usage < 60_000_000n ? 60_000_000n - usage : 0n;
    const total = usage + 20_000_000n + seatFee + trueUp + bundlePaid;
    // Money credit event by event: each event's charge (allowance, then bundle, then tiers), paid
    // from the credit in force; a draw that takes it from >= 400 to < 400 tops it up by 500.
    const pos = { input: 0n, output: 0n };
    const bundleLeft = { input: bundle.tokens, output: 500n };
    let pool = 900n;
    let credit = 0n;
    let topUps = 0;
    for (const [d, input, output] of events) {
      let charge = 0n;
      for (const [cls, q] of [['input', input], ['output', output]]) {
        const a = allowance[cls];
        const toPay = q - min(q, over(a, pos[cls]));
        const inForce = cls === 'input' || d <= 15;
        const b = inForce ? min(toPay, bundleLeft[cls]) : 0n;
        bundleLeft[cls] -= b;
        const rated = q - b;
        charge += refPrice(tiers, over(pos[cls] + rated, a)) - refPrice(tiers, over(pos[cls], a));
        pos[cls] += rated;
      }
      const paid = min(charge, pool);
      const before = pool;
      pool -= paid;
      credit += paid;
      if (before >= 400n && pool < 400n) {
        pool += 500n;
        topUps++;
      }
    }
    assert.ok(topUps >= 1, 'the month crosses the threshold');

    const run = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } });
    assert.equal(run.status, 200, run.text);
    const invoice = run.json.data[0];
    assert.equal(BigInt(invoice.total_micros), total, run.text);
    assert.deepEqual(invoice.fees.map((f) => [f.kind, BigInt(f.quantity), BigInt(f.amount_micros)]), [
      ['base_fee', 1n, 20_000_000n], ['seats', seatDays, seatFee], ...(trueUp > 0n ? [['commitment_true_up', 1n, trueUp]] : []),
      // in drawdown order: the bundle that expires first
      ['token_bundle', outBundle, outBundle * 2n], ['token_bundle', inBundle, (inBundle * bundle.price) / 1_000_000n]]);
    // The bundles' credits come first, then the money credits (the grant, then the top-ups).
    const credits = invoice.credits.map((c) => [c.kind, BigInt(c.amount_micros)]);
    assert.deepEqual(credits.slice(0, 2), [['bundle', outBundle * 2n], ['bundle', (inBundle * bundle.price) / 1_000_000n]]);
    assert.ok(credits.slice(2).every(([k]) => k === 'purchased'));
    assert.equal(credits.slice(2).reduce((n, [, a]) => n + a, 0n), credit);
    assert.equal(invoice.credits[2].grant_id, grant.json.id);
    // Each crossing made one top-up grant and one webhook, signed, delivered once.
    await waitFor(() => hooks.length >= topUps, { what: 'the top-up webhooks' });
    const state = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/auto_top_up`);
    assert.equal(state.json.top_ups.length, topUps, state.text);
    assert.ok(state.json.top_ups.every((u) => u.status === 'delivered' && u.attempts === 1), state.text);
    await new Promise((r) => setTimeout(r, 1500));  // no second delivery comes
    assert.equal(hooks.length, topUps);
    receiver.close();
    for (const h of hooks) {
      const payload = JSON.parse(h.body);
      assert.equal(payload.object, 'credit.auto_top_up');
      assert.equal(payload.amount_micros, 500);
      assert.ok(payload.balance_before_micros >= 400 && payload.balance_after_micros < 400, h.body);
      const [tPart, v1Part] = h.headers['x-tollgate-signature'].split(',');
      const expected = createHmac('sha256', topUp.json.webhook_secret).update(`${tPart.slice(2)}.${h.body}`).digest('hex');
      assert.equal(v1Part, `v1=${expected}`);
    }
    assert.deepEqual(new Set(hooks.map((h) => JSON.parse(h.body).id)).size, topUps, 'one webhook per crossing');
    const granted = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`);
    assert.equal(granted.json.grants.filter((g) => g.memo === 'auto top-up' && g.amount_micros === 500 && g.price_paid_micros === 450).length, topUps);
    const included = invoice.lines.filter((l) => l.included);
    assert.deepEqual(included.map((l) => [l.token_class, l.tier, l.amount_micros]), [['input', 0, 0], ['output', 0, 0]]);
    assert.equal(invoice.lines.reduce((n, l) => n + BigInt(l.amount_micros), 0n), usage);
    assert.equal(BigInt(invoice.lines.reduce((n, l) => n + l.amount_micros, 0) + invoice.fees.reduce((n, f) => n + f.amount_micros, 0)),
      BigInt(invoice.total_micros), 'the total is the lines and the fees');
    assert.equal(invoice.lines.reduce((n, l) => n + l.amount_minor, 0) + invoice.fees.reduce((n, f) => n + f.amount_minor, 0),
      invoice.total_minor, 'minor units add up');
    assert.equal(BigInt(invoice.credits_micros), credit + bundlePaid);
    assert.equal(invoice.total_due_micros, invoice.total_micros - invoice.credits_micros, 'total due = lines - credits');
    // Every event was rated as it was stored; the allowances held, so they add up to the usage
    // and what the bundles paid.
    assert.equal(BigInt(pg.value(`SELECT sum(cost_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), usage + bundlePaid);
    assert.equal(BigInt(pg.value(`SELECT coalesce(sum(credit_micros), 0) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), credit + bundlePaid);
    assert.equal(BigInt(pg.value(`SELECT sum(bundle_input_tokens) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), inBundle);
    // The output bundle expires to breakage, tokens and money, once.
    for (let i = 0; i < 2; i++) {
      const x = await api(s.adminUrl, 'POST', '/admin/v1/credits/expire', { body: { at: start + 17 * day } });
      assert.equal(x.status, 200, x.text);
    }
    assert.deepEqual(pg.query(`SELECT balance_micros, tokens_balance FROM credit_accounts WHERE id = 'breakage:${t.tenant}'`)[0],
      [String(1000n - outBundle * 2n), String(500n - outBundle)]);
    // The books balance, in money and in tokens.
    assert.deepEqual(pg.query(`SELECT coalesce(sum(e.amount_micros), 0), coalesce(sum(e.tokens), 0) FROM credit_entries e
      JOIN credit_transfers x ON x.id = e.transfer_id WHERE x.tenant_id = '${t.tenant}'`)[0], ['0', '0']);
    const balance = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`);
    const inLeft = balance.json.grants.find((g) => g.id === made.json.id);
    assert.equal(BigInt(inLeft.tokens_left), bundle.tokens - inBundle, balance.text);
    // The cost preview of the month: the usage lines and, beside them, what the bundles paid.
    const preview = await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}&period=${period}`, { token: FINANCE });
    assert.equal(preview.status, 200, preview.text);
    assert.equal(BigInt(preview.json.total_micros), usage);
    assert.equal(BigInt(preview.json.token_bundles_micros), bundlePaid);
    assert.deepEqual(preview.json.token_bundles.map((b) => [b.token_class, BigInt(b.tokens), BigInt(b.amount_micros)]),
      invoice.fees.filter((f) => f.kind === 'token_bundle').map((f) => [f.token_class, BigInt(f.quantity), BigInt(f.amount_micros)]));
    // The CSV has the fee rows; the same draft comes back from a second run.
    const csv = await (await fetch(`${s.adminUrl}/finance/v1/invoices/${invoice.id}?format=csv`, { headers: { authorization: `Bearer ${FINANCE}` } })).text();
    assert.match(csv, new RegExp(`,${period},USD,seats,fee,,,${seatDays},${seatFee},`));
    const again = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } });
    assert.deepEqual(again.json.data[0].fees, invoice.fees);
    assert.equal(again.json.data[0].id, invoice.id);
  });
});
