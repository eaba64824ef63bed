// Integration test of token banking against a real PostgreSQL and gateway: a plan whose input
// allowance rolls over for one period; usage sent with the official `openai` client through the
// gateway, the ledger writer and rating, with the gateway's test-only clock moved month by
// month. The unused allowance becomes a rollover grant when the next month's first request is
// rated, it is drawn after that month's own allowance, late usage of a settled month pays, the
// invoices list what rolled in and out, what is left at expiry goes to breakage, and every
// transfer sums to zero in tokens; all checked against an independent computation. And a token
// bundle drawn by late usage of a month whose invoice is finalized: the next invoice lists the
// draw beside the credit it is paid with.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import OpenAI from 'openai';
import { startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, api, makeTenant, FINANCE } from '../lib/ledger.mjs';

const day = 86_400;
// The start (unix seconds) and name of the month `k` months after the current one.
const month = (k) => {
  const d = new Date();
  const start = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + k, 1));
  return { start: start.getTime() / 1000, name: start.toISOString().slice(0, 7) };
};
const allowance = 300;  // input tokens a month, at 1 micro-unit a token beyond

describe('token banking: unused allowance rolls over (real PostgreSQL)', () => {
  let pg;
  let s;
  const env = { TOLLGATE_TEST_MODE: '1' };
  const dir = path.join('/tmp', `tollgate-rollover-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: dbConfig(pg, dir), env });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });
  const restartAt = async (at) => {
    await s.gateway.stop();
    env.TOLLGATE_TEST_CLOCK_OFFSET_S = String(at - Math.floor(Date.now() / 1000));
    await s.restartGateway();
  };
  // Sends one chat request with the tenant's key at the gateway's clock and waits until the
  // ledger has stored it (rated in the same transaction): its prompt tokens, its charge, the
  // input tokens bundles paid for, and the cost header.
  const sendStored = async (t, content, maxTokens) => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const { data, response } = await client.chat.completions.create({
      model: 'dev-echo', max_tokens: maxTokens, messages: [{ role: 'user', content }],
    }).withResponse();
    const row = () => pg.query(`SELECT cost_micros, coalesce(bundle_input_tokens, 0) FROM usage_events
      WHERE tenant_id = '${t.tenant}' AND request_id = '${response.headers.get('x-request-id')}'`);
    await waitFor(() => row().length === 1, { what: 'the request stored' });
    const [cost, drawn] = row()[0];
    return { input: data.usage.prompt_tokens, cost: Number(cost), drawn: Number(drawn),
      header: response.headers.get('x-tollgate-cost-micros') };
  };

  test('a month of unused allowance is drawn the next month, then expires', async () => {
    const t = await makeTenant(s.adminUrl, 'Banking');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', { body: {
      name: 'Banking book', currency: 'USD', effective_at: 1_700_000_000,
      models: { 'dev-echo': { input: [{ rate: '1000000' }], output: [{ rate: '0' }] } } } });
    assert.equal(book.status, 201, book.text);
    const plan = `/admin/v1/tenants/${t.tenant}/plan`;
    for (const bad of [13, -1, '1']) {
      const r = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id,
        allowances: [{ model: 'dev-echo', token_class: 'input', tokens: allowance, rollover_periods: bad }] } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, 'allowances');
      assert.match(r.json.error.message, /rollover_periods|roll over/);
    }
    const set = await api(s.adminUrl, 'POST', plan, { body: { price_book_id: book.json.id,
      allowances: [{ model: 'dev-echo', token_class: 'input', tokens: allowance, rollover_periods: 1 }] } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.json.terms.allowances, [{ model: 'dev-echo', token_class: 'input', tokens: allowance, rollover_periods: 1 }]);

    const cur = month(0);
    const m1 = month(1);
    const m2 = month(2);
    const m3 = month(3);
    const send = (words) => sendStored(t, `banking ${'words '.repeat(words)}`, 8);
    const grants = () => pg.query(`SELECT g.rolled_over_from, g.bundle_tokens, a.tokens_balance,
        extract(epoch from g.effective_at)::bigint, extract(epoch from g.expires_at)::bigint
        FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id
        WHERE g.tenant_id = '${t.tenant}' AND g.kind = 'rollover' ORDER BY g.rolled_over_from`)
      .map(([from, tokens, left, eff, exp]) => ({ from, tokens: Number(tokens), left: Number(left), eff: Number(eff), exp: Number(exp) }));

    // Month 1: a little usage, inside the allowance. Its first request settles the current
    // month, whose allowance (the plan's first period, unused) rolls into month 1.
    await restartAt(m1.start + day);
    let used1 = 0;
    for (const words of [10, 20]) {
      const r = await send(words);
      assert.equal(r.cost, 0, 'inside the allowance');
      used1 += r.input;
    }
    assert.ok(used1 < allowance);
    assert.deepEqual(grants(), [{ from: cur.name, tokens: allowance, left: allowance, eff: m1.start, exp: m2.start }]);

    // Month 2: its own allowance first, then what month 1 left, then the price book.
    await restartAt(m2.start + day);
    const left1 = allowance - used1;
    let own = allowance;
    let bank = left1;
    let charged2 = 0;
    let drawn2 = 0;
    let drawBatches = 0;  // one drawdown transfer per ledger batch that drew
    for (let i = 0; i < 12 && bank > 0; i++) {
      // The cost header's state is read at most once a second, in the background: a pause
      // lets it see the grant that the month's first rated request made.
      if (i > 0) await new Promise((res) => setTimeout(res, 1100));
      const r = await send(40 + 10 * i);
      const fromOwn = Math.min(own, r.input);
      const fromBank = Math.min(bank, r.input - fromOwn);
      own -= fromOwn;
      bank -= fromBank;
      assert.equal(r.drawn, fromBank, `request ${i}: the rollover grant pays what the allowance leaves`);
      assert.equal(r.cost, r.input - fromOwn - fromBank, `request ${i}: the rest is charged`);
      if (i > 1) assert.equal(r.header, String(r.cost), `request ${i}: the cost header quotes the rollover grant`);
      charged2 += r.cost;
      drawn2 += r.drawn;
      if (r.drawn > 0) drawBatches++;
    }
    assert.equal(bank, 0, 'month 2 used all that month 1 left');
    assert.ok(charged2 > 0, 'and went on to pay');
    const g2 = grants();
    assert.deepEqual(g2[1], { from: m1.name, tokens: left1, left: 0, eff: m2.start, exp: m3.start });
    assert.equal(g2[0].left, allowance, 'the current month\'s rollover was not drawn in month 2: it expired as month 2 began');
    assert.equal(pg.value(`SELECT rolled_over FROM rating_accumulators WHERE tenant_id = '${t.tenant}'
      AND period = '${m1.name}' AND token_class = 'input' AND NOT batch`), String(left1));

    // Late usage of month 1, after month 1 was settled: its allowance is frozen at what it had
    // covered, so the current month's rollover grant (in force in month 1) pays for it all.
    await restartAt(m1.start + 20 * day);
    const late = await send(60);
    assert.ok(late.input <= left1, 'month 1\'s own allowance would have covered it unfrozen');
    assert.equal(late.drawn, late.input, 'the rollover grant pays, not the frozen allowance');
    assert.equal(late.cost, 0);

    // The invoices: month 1 covers what it used and lists what rolled out; month 2 lists what
    // rolled in; both totals are what the events were charged.
    await restartAt(m3.start + day);
    const inv = async (period) => {
      const run = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } });
      assert.equal(run.status, 200, run.text);
      return run.json.data[0];
    };
    const i1 = await inv(m1.name);
    assert.equal(i1.total_micros, 0, JSON.stringify(i1));
    assert.deepEqual(i1.lines.filter((l) => l.included).map((l) => [l.token_class, l.tokens]), [['input', used1]]);
    assert.deepEqual(i1.fees.map((f) => [f.kind, f.quantity, f.amount_micros, f.model, f.token_class]),
      [['allowance_rollover_in', late.input, 0, 'dev-echo', 'input'],
        ['allowance_rollover_out', left1, 0, 'dev-echo', 'input']]);
    const i2 = await inv(m2.name);
    assert.equal(i2.total_micros, charged2, JSON.stringify(i2));
    assert.deepEqual(i2.fees.map((f) => [f.kind, f.quantity, f.amount_micros]), [['allowance_rollover_in', drawn2, 0]]);
    assert.equal(BigInt(pg.value(`SELECT sum(cost_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`)),
      BigInt(charged2));

    // Expiry: what is left of the current month's rollover goes to breakage, in tokens, once.
    for (let i = 0; i < 2; i++) {
      const x = await api(s.adminUrl, 'POST', '/admin/v1/credits/expire', { body: { at: m3.start } });
      assert.equal(x.status, 200, x.text);
    }
    assert.deepEqual(pg.query(`SELECT balance_micros, tokens_balance FROM credit_accounts WHERE id = 'breakage:${t.tenant}'`)[0],
      ['0', String(allowance - late.input)]);
    // Recorded as transfers: allowance -> grant, grant -> usage, grant -> breakage; they all
    // sum to zero in tokens and money.
    assert.deepEqual(pg.query(`SELECT kind, count(*) FROM credit_transfers WHERE tenant_id = '${t.tenant}'
      GROUP BY kind ORDER BY kind`), [['drawdown', String(drawBatches + 1)], ['expiry', '1'], ['rollover', '2']]);
    assert.equal(pg.value(`SELECT tokens_balance FROM credit_accounts WHERE id = 'allowance:${t.tenant}'`),
      String(-(allowance + left1)));
    assert.deepEqual(pg.query(`SELECT coalesce(sum(e.amount_micros), 0), coalesce(sum(e.tokens), 0) FROM credit_entries e
      JOIN credit_transfers x ON x.id = e.transfer_id WHERE x.tenant_id = '${t.tenant}'`)[0], ['0', '0']);
    const listed = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`);
    assert.equal(listed.status, 200, listed.text);
    const shown = listed.json.grants.filter((g) => g.kind === 'rollover');
    assert.deepEqual(shown.map((g) => [g.rolled_over_from, g.tokens, g.tokens_left, g.amount_micros]),
      [[cur.name, allowance, 0, 0], [m1.name, left1, 0, 0]]);
  });

  test('a bundle drawn by late usage of a finalized month is listed, with its credit, on the next invoice', async () => {
    const t = await makeTenant(s.adminUrl, 'Late draws');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', { body: {
      name: 'Late book', currency: 'USD', effective_at: 1_700_000_000,
      models: { 'dev-echo': { input: [{ rate: '1000000' }], output: [{ rate: '0' }] } } } });
    assert.equal(book.status, 201, book.text);
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
    // 10,000 input tokens at a locked 2 micro-units each.
    const bundle = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/token_bundles`, { body: {
      model: 'dev-echo', token_class: 'input', tokens: 10_000, price_per_million_micros: 2_000_000, effective_at: 1_700_000_000 } });
    assert.equal(bundle.status, 201, bundle.text);
    const m1 = month(1);
    const m2 = month(2);
    const m3 = month(3);
    const send = async (words) => (await sendStored(t, `late ${'words '.repeat(words)}`, 4)).input;
    const run = async (period, finalize = false) => {
      const r = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant, finalize } });
      assert.equal(r.status, 200, r.text);
      return r.json.data[0];
    };
    const feesOf = (inv) => inv.fees.map((f) => [f.kind, f.period ?? inv.period, f.quantity, f.amount_micros]);
    const creditsOf = (inv) => inv.credits.map((c) => [c.period, c.amount_micros]);

    await restartAt(m1.start + day);
    const a = await send(10);
    await restartAt(m2.start + 4 * day);  // past month 1's grace period (72 h)
    const i1 = await run(m1.name, true);
    assert.equal(i1.status, 'finalized');
    assert.deepEqual(feesOf(i1), [['token_bundle', m1.name, a, 2 * a]]);
    assert.deepEqual([i1.total_micros, i1.total_due_micros], [2 * a, 0]);
    // Late usage of month 1, stored after its invoice was finalized; then month 2's own.
    await restartAt(m1.start + 10 * day);
    const b = await send(20);
    await restartAt(m2.start + 5 * day);
    const c = await send(30);
    await restartAt(m3.start + 4 * day);
    const i2 = await run(m2.name, true);
    assert.deepEqual(feesOf(i2), [['token_bundle', m2.name, c, 2 * c], ['token_bundle', m1.name, b, 2 * b]], JSON.stringify(i2));
    assert.deepEqual(creditsOf(i2), [[m2.name, 2 * c], [m1.name, 2 * b]]);
    assert.deepEqual(i2.adjustments.map((x) => [x.period, x.token_class, x.amount_micros]), [[m1.name, 'output', 0]],
      'the bundle paid for all of the late input tokens (output is free)');
    assert.deepEqual([i2.total_micros, i2.credits_micros, i2.total_due_micros], [2 * (b + c), 2 * (b + c), 0],
      'the late draw is charged where its credit is applied');
    // Listed once: the next invoice does not list it again.
    const i3 = await run(m3.name);
    assert.deepEqual([feesOf(i3), creditsOf(i3), i3.total_due_micros], [[], [], 0]);
    // The Stripe export names the late draw's month.
    const exported = await api(s.adminUrl, 'GET', `/finance/v1/invoices/${i2.id}?format=stripe`, { token: FINANCE });
    assert.equal(exported.status, 200, exported.text);
    const late = exported.json.data.filter((it) => it.metadata.tollgate_kind === 'fee' && it.metadata.period === m1.name);
    assert.equal(late.length, 1, exported.text);
    assert.match(late[0].description, new RegExp(`^Late usage of ${m1.name}: Token bundle cg_`));
    assert.equal(late[0].period.start, m1.start);
  });
});
