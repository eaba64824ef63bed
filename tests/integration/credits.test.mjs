// Integration tests of pre-purchased credits against a real PostgreSQL and gateway: grants
// through the admin API and tollctl, drawdown of real requests in drawdown order as the ledger
// stores them, double entry enforced by the database (zero-sum transfers, no grant below zero,
// immutable entries), expiry to breakage, and invoices that apply the credits.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startStack, binDir, chatBody, postJson, waitFor, sleep } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import OpenAI, { toFile } from 'openai';
import { dbConfig, api, makeTenant, givePlan, expectRatedOnce, refPrice, planTiers, ADMIN, FINANCE } from '../lib/ledger.mjs';

const grant = (adminUrl, tenant, body) => api(adminUrl, 'POST', `/admin/v1/tenants/${tenant}/credit_grants`, { body });

describe('credits (real PostgreSQL)', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-credits-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: { ...dbConfig(pg, dir), batches: { poll_interval_ms: 50 } } });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  // Every transfer sums to zero and every grant account is at or above zero.
  function expectBooksBalance(tenant) {
    assert.deepEqual(pg.query(`SELECT t.id FROM credit_transfers t JOIN credit_entries e ON e.transfer_id = t.id
      WHERE t.tenant_id = '${tenant}' GROUP BY t.id HAVING sum(e.amount_micros) <> 0`), []);
    assert.equal(pg.value(`SELECT sum(balance_micros) FROM credit_accounts WHERE tenant_id = '${tenant}'`), '0',
      'the accounts of a tenant sum to zero');
    assert.equal(pg.value(`SELECT count(*) FROM credit_accounts WHERE tenant_id = '${tenant}' AND kind = 'grant'
      AND balance_micros < 0`), '0');
  }

  test('requests draw their cost from grants in drawdown order, and the invoice applies them', async () => {
    const t = await makeTenant(s.adminUrl, 'Credited');
    await givePlan(s.adminUrl, t.tenant);
    const now = Math.floor(Date.now() / 1000);
    // Drawn first: priority 0, then the earlier expiry. The scoped grant never pays for dev-echo.
    const scoped = await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 50_000, models: ['other-model'] });
    assert.equal(scoped.status, 201, scoped.text);
    const later = await grant(s.adminUrl, t.tenant, { kind: 'purchased', amount_micros: 800, price_paid_micros: 700, priority: 1 });
    const soon = await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 500, expires_at: now + 86_400 });
    const never = await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 200 });
    for (const g of [later, soon, never]) assert.equal(g.status, 201, g.text);
    assert.equal(soon.json.balance_micros, 500);
    assert.match(soon.json.id, /^cg_/);

    // Enough requests to use up 1,500 micro-units and more, several per ledger batch.
    const send = (i) => postJson(`${s.url}/v1/chat/completions`, chatBody(`credit request ${i} with a few more words`, { max_tokens: 20 }),
      { authorization: `Bearer ${t.key}` });
    for (let round = 0; round < 10; round++) {
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => send(round * 8 + i)));
      for (const r of rs) assert.equal(r.status, 200);
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 80, { what: 'ledger rows' });
    const rated = expectRatedOnce(assert, pg, t.tenant);
    assert.ok(rated.cost > 1500n, `the requests cost more than the credit (${rated.cost})`);
    const credit = BigInt(pg.value(`SELECT sum(credit_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.equal(credit, 1500n, 'credit paid 1,500 micro-units of the cost, not more');
    assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND credit_micros > cost_micros`), '0');
    expectBooksBalance(t.tenant);

    const balance = await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`);
    assert.equal(balance.status, 200, balance.text);
    assert.deepEqual(balance.json.grants.map((g) => [g.id, g.balance_micros]),
      [[soon.json.id, 0], [scoped.json.id, 50_000], [never.json.id, 0], [later.json.id, 0]],
      'drawdown order (priority, expiry, effective date, id); the scoped grant untouched');
    assert.equal(balance.json.used_micros, 1500);
    assert.equal(balance.json.available_micros, 50_000);
    assert.equal(balance.json.granted_micros, 51_500);
    // The finance API shows the same.
    const fin = await api(s.adminUrl, 'GET', `/finance/v1/credits?tenant_id=${t.tenant}`, { token: FINANCE });
    assert.equal(fin.json.used_micros, 1500);
    const transfers = await api(s.adminUrl, 'GET', `/finance/v1/credit_transfers?tenant_id=${t.tenant}&limit=100`, { token: FINANCE });
    assert.ok(transfers.json.data.some((x) => x.kind === 'drawdown'));
    for (const x of transfers.json.data) assert.equal(x.entries.reduce((n, e) => n + e.amount_micros, 0), 0);

    // The invoice: the period's total, the credits applied in drawdown order, the rest due.
    const period = new Date().toISOString().slice(0, 7);
    const inv = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } });
    assert.equal(inv.status, 200, inv.text);
    const invoice = inv.json.data[0];
    assert.equal(BigInt(invoice.total_micros), rated.cost, 'graduated tiers: the invoice total is what the events cost');
    assert.deepEqual(invoice.credits.map((c) => [c.grant_id, c.amount_micros]),
      [[soon.json.id, 500], [never.json.id, 200], [later.json.id, 800]]);
    assert.equal(invoice.credits_micros, 1500);
    assert.equal(invoice.total_due_micros, invoice.total_micros - 1500);
    assert.equal(invoice.total_due_minor, invoice.total_minor - invoice.credits.reduce((n, c) => n + c.amount_minor, 0));
    const csv = await (await fetch(`${s.adminUrl}/finance/v1/invoices/${invoice.id}?format=csv`,
      { headers: { authorization: `Bearer ${FINANCE}` } })).text();
    assert.match(csv, new RegExp(`,${soon.json.id},credit,,,,-500,`));
    assert.match(csv, new RegExp(`,total_due,,,,,${invoice.total_due_micros},`));

    // The same invoice as Stripe invoice items: one per line and credit, summing to what is due.
    const finance = (path) => fetch(`${s.adminUrl}${path}`, { headers: { authorization: `Bearer ${FINANCE}` } });
    const stripe = await (await finance(`/finance/v1/invoices/${invoice.id}?format=stripe`)).json();
    assert.equal(stripe.data.length, invoice.lines.length + invoice.adjustments.length + invoice.credits.length);
    assert.equal(stripe.data.reduce((n, it) => n + it.amount, 0), invoice.total_due_minor);
    assert.ok(stripe.data.every((it) => it.customer === t.tenant && it.currency === invoice.currency.toLowerCase()));
    assert.deepEqual(stripe.data.filter((it) => it.metadata.tollgate_kind === 'credit').map((it) => it.metadata.grant_id),
      [soon.json.id, never.json.id, later.json.id]);
    const stripeCsv = await (await finance(`/finance/v1/invoices/${invoice.id}?format=stripe_csv`)).text();
    assert.equal(stripeCsv.trim().split('\n').length, 1 + stripe.data.length);
    const bad = await finance(`/finance/v1/invoices/${invoice.id}?format=xml`);
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, 'format');

    // The tenant's usage events as a CloudEvents batch, page by page: each request once.
    const seen = new Set();
    let after = '';
    for (let pages = 0; pages < 20; pages += 1) {
      const r = await finance(`/finance/v1/usage_events?tenant_id=${t.tenant}&limit=50&format=cloudevents${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'application/cloudevents-batch+json');
      for (const e of await r.json()) {
        assert.equal(e.specversion, '1.0');
        assert.equal(e.subject, t.tenant);
        assert.ok(!seen.has(e.id), `event ${e.id} once`);
        seen.add(e.id);
      }
      after = r.headers.get('x-tollgate-next-page') ?? '';
      if (!after) break;
    }
    assert.equal(seen.size, 80);
    assert.equal((await finance('/finance/v1/usage_events?format=ndjson')).status, 400);
  });

  test('a month with live and batch usage and a grant expiring mid-month: the invoice matches an independent computation', async () => {
    const t = await makeTenant(s.adminUrl, 'Month');
    await givePlan(s.adminUrl, t.tenant);  // graduated tiers, batch discount 50 %
    const now = Math.floor(Date.now() / 1000);
    const first = (await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 100_000, expires_at: now + 4 })).json;
    const second = (await grant(s.adminUrl, t.tenant, { kind: 'purchased', amount_micros: 700, price_paid_micros: 650, priority: 1 })).json;
    const live = async (n, tag) => {
      for (let i = 0; i < n; i++) {
        const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`${tag} request ${i} with some words`, { max_tokens: 24 }),
          { authorization: `Bearer ${t.key}` });
        assert.equal(r.status, 200);
        await r.text();
      }
    };
    const rows = () => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    const sums = (where) => pg.query(`SELECT coalesce(sum(prompt_tokens - cached_prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
      FROM usage_events WHERE tenant_id = '${t.tenant}' AND ${where}`)[0].map(Number);

    // Before the first grant expires: it pays (priority 0), with plenty to spare.
    await live(10, 'early');
    await waitFor(() => rows() === 10, { what: 'early rows' });
    const [in1, out1] = sums('true');
    const early = refPrice(planTiers, in1) + refPrice(planTiers, out1);
    // It expires mid-month: what is left of it goes to breakage.
    while (Math.floor(Date.now() / 1000) < now + 4) await sleep(200);
    assert.equal((await api(s.adminUrl, 'POST', '/admin/v1/credits/expire', { body: {} })).json.expired, 1);
    await live(10, 'late');
    await waitFor(() => rows() === 20, { what: 'late rows' });

    // A batch job through the Batch API (the official client): its lines are rated at the
    // plan's batch discount and drawn like any other usage.
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const jobLines = [0, 1, 2].map((i) => JSON.stringify({ custom_id: `month-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'dev-echo', messages: [{ role: 'user', content: `batch line ${i} of the month with more words` }], max_tokens: 30 } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(`${jobLines.join('\n')}\n`), 'month.jsonl'), purpose: 'batch' });
    const job = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    let done;
    await waitFor(async () => (done = await client.batches.retrieve(job.id)).status === 'completed',
      { timeoutMs: 30000, intervalMs: 100, what: 'the batch job' });
    assert.deepEqual(done.request_counts, { total: 3, completed: 3, failed: 0 });
    await waitFor(() => rows() === 23, { what: 'batch rows' });

    // The independent computation: F per class on the month's totals, batch at half price;
    // credits: the first grant paid the early requests, the second all it had.
    const [inLive, outLive] = sums('NOT batch');
    const [inBatch, outBatch] = sums('batch');
    assert.ok(inBatch > 0 && outBatch > 0, 'three batch rows with tokens');
    const total = refPrice(planTiers, inLive) + refPrice(planTiers, outLive) +
      refPrice(planTiers, inBatch, 5000) + refPrice(planTiers, outBatch, 5000);
    const secondPaid = total - early < 700n ? total - early : 700n;
    const period = new Date().toISOString().slice(0, 7);
    const invoice = (await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } })).json.data[0];
    assert.equal(BigInt(invoice.total_micros), total);
    assert.deepEqual(invoice.credits.map((c) => [c.grant_id, BigInt(c.amount_micros)]), [[first.id, early], [second.id, secondPaid]]);
    assert.equal(BigInt(invoice.total_due_micros), total - early - secondPaid);
    assert.equal(invoice.total_due_micros, invoice.total_micros - invoice.credits_micros, 'total due = lines - credits applied');
    assert.equal(invoice.lines.reduce((n, l) => n + l.amount_micros, 0), invoice.total_micros);
    const balance = (await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.tenant}/credits`)).json;
    assert.equal(BigInt(balance.expired_micros), 100_000n - early, 'the unused part of the expired grant is breakage');
    // Every event was rated once on its accumulator; they add up to the invoice.
    assert.equal(BigInt(pg.value(`SELECT sum(cost_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), total);
    expectBooksBalance(t.tenant);
  });

  test('property: random books, grants and bursts of requests keep every figure exact', async () => {
    // A seeded generator (TOLLGATE_PROPERTY_SEED repeats a run); the seed is in every message.
    const seed = Number(process.env.TOLLGATE_PROPERTY_SEED ?? Date.now() % 1_000_000_007);
    let state = seed;
    const rand = () => { state = (state * 48271) % 2147483647; return state / 2147483647; };
    const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
    const tiers = () => {
      const n = int(1, 4);
      let bound = 0;
      return Array.from({ length: n }, (_, i) => {
        const tier = { rate: `${int(0, 4_000_000)}.${String(int(0, 999_999)).padStart(6, '0')}` };
        if (rand() < 0.3) tier.flat_fee = int(1, 40);
        if (i < n - 1) tier.up_to = (bound += int(1, 150));
        return tier;
      });
    };
    const now = Math.floor(Date.now() / 1000);
    for (let round = 0; round < 4; round++) {
      const why = `seed ${seed}, round ${round}`;
      const t = await makeTenant(s.adminUrl, `Property ${round}`);
      const input = tiers();
      const output = tiers();
      const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
        body: { name: `Random ${round}`, currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': { input, output } } },
      });
      assert.equal(book.status, 201, `${why}: ${book.text}`);
      assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
      const grants = [];
      for (let g = int(1, 4); g > 0; g--) {
        const kind = rand() < 0.5 ? 'purchased' : 'promotional';
        const amount = int(1, 4000);
        const body = { kind, amount_micros: amount, priority: int(0, 2), effective_at: now - int(0, 2) * 3600 };
        if (kind === 'purchased') body.price_paid_micros = int(0, amount);
        if (rand() < 0.6) body.expires_at = now + int(1, 3) * 86_400;
        const made = await grant(s.adminUrl, t.tenant, body);
        assert.equal(made.status, 201, `${why}: ${made.text}`);
        grants.push({ ...made.json, priority: body.priority, expires: body.expires_at ?? Infinity });
      }
      // Requests in concurrent bursts, so the ledger writer stores them in batches of any size.
      let sent = 0;
      for (let bursts = int(3, 6); bursts > 0; bursts--) {
        const burst = Array.from({ length: int(1, 8) }, (_, i) =>
          postJson(`${s.url}/v1/chat/completions`, chatBody(`property ${round} ${'word '.repeat(int(0, 30))}${i}`, { max_tokens: int(1, 40) }),
            { authorization: `Bearer ${t.key}` }).then(async (r) => { assert.equal(r.status, 200); await r.text(); }));
        await Promise.all(burst);
        sent += burst.length;
      }
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === sent, { what: `${why}: rows` });

      // Per-event charges add up to floor(F(total)) of each class.
      const [inTokens, cachedTokens, outTokens, cost, drawn] = pg.query(`SELECT sum(prompt_tokens - cached_prompt_tokens),
        sum(cached_prompt_tokens), sum(completion_tokens), sum(cost_micros), coalesce(sum(credit_micros), 0)
        FROM usage_events WHERE tenant_id = '${t.tenant}'`)[0].map(BigInt);
      const total = refPrice(input, inTokens) + refPrice(input, cachedTokens) + refPrice(output, outTokens);
      assert.equal(BigInt(cost), total, `${why}: the events add up to F(total)`);
      // Credit: drawn in drawdown order, as much as the grants have or the usage costs.
      const granted = grants.reduce((n, g) => n + BigInt(g.amount_micros), 0n);
      assert.equal(drawn, total < granted ? total : granted, `${why}: credit drawn`);
      const order = [...grants].sort((a, b) => a.priority - b.priority || a.expires - b.expires || a.effective_at - b.effective_at || (a.id < b.id ? -1 : 1));
      let left = drawn;
      for (const g of order) {
        const pays = left < BigInt(g.amount_micros) ? left : BigInt(g.amount_micros);
        left -= pays;
        const now = (await api(s.adminUrl, 'GET', `/admin/v1/credit_grants/${g.id}`)).json;
        assert.equal(BigInt(now.balance_micros), BigInt(g.amount_micros) - pays, `${why}: balance of ${g.id}`);
      }
      expectBooksBalance(t.tenant);
      // The invoice: its lines are the total, the credits are what was drawn, in that order.
      const period = new Date().toISOString().slice(0, 7);
      const invoice = (await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } })).json.data[0];
      assert.equal(BigInt(invoice.total_micros), total, why);
      assert.equal(BigInt(invoice.lines.reduce((n, l) => n + l.amount_micros, 0)), total, why);
      assert.equal(BigInt(invoice.credits_micros), drawn, why);
      assert.equal(invoice.total_due_micros, invoice.total_micros - invoice.credits_micros, `${why}: total due = lines - credits`);
      assert.deepEqual(invoice.credits.map((c) => c.grant_id), order.filter((g) => invoice.credits.some((c) => c.grant_id === g.id)).map((g) => g.id), why);
      assert.equal(invoice.lines.reduce((n, l) => n + l.amount_minor, 0), invoice.total_minor, `${why}: minor units add up`);
    }
  });

  test('volume tiers: credit drawn on provisional charges beyond the period total goes back to the grant', async () => {
    const t = await makeTenant(s.adminUrl, 'Volume');
    // Entering the second tier reprices every token at 1 micro-unit: events are charged
    // provisionally (never below zero) and the period comes to less than they were.
    const tiers = [{ up_to: 100, rate: '5000000' }, { rate: '1000000' }];
    const book = (await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Volume', currency: 'USD', tier_mode: 'volume', effective_at: 1_700_000_000,
        models: { 'dev-echo': { input: tiers, output: tiers } } },
    })).json;
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.id } })).status, 200);
    const g = (await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 1_000_000 })).json;
    for (let i = 0; i < 12; i++) {
      const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`volume request ${i} with a few more words`, { max_tokens: 20 }),
        { authorization: `Bearer ${t.key}` });
      assert.equal(r.status, 200);
    }
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 12, { what: 'ledger rows' });
    const drawn = Number(pg.value(`SELECT sum(credit_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.equal(drawn, Number(pg.value(`SELECT sum(cost_micros) FROM usage_events WHERE tenant_id = '${t.tenant}'`)), 'credit paid every provisional charge');
    const period = new Date().toISOString().slice(0, 7);
    const invoice = (await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } })).json.data[0];
    assert.ok(invoice.total_micros < drawn, `the period (${invoice.total_micros}) came to less than the provisional charges (${drawn})`);
    assert.equal(invoice.credits_micros, invoice.total_micros, 'the invoice applies no more credit than its total');
    assert.equal(invoice.credits_returned_micros, drawn - invoice.total_micros);
    assert.equal(invoice.total_due_micros, 0);
    // Finalizing gives the excess back to the grant (the function finalizing calls), once.
    for (let i = 0; i < 2; i++) {
      pg.query(`SELECT tollgate_credit_true_up('${t.tenant}', '${period}', ${invoice.credits_returned_micros})`);
    }
    const after = (await api(s.adminUrl, 'GET', `/admin/v1/credit_grants/${g.id}`)).json;
    assert.equal(after.balance_micros, 1_000_000 - invoice.total_micros);
    expectBooksBalance(t.tenant);
    // Drafted again, the invoice shows the same credits: the true-up is part of the period's.
    const again = (await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period, tenant_id: t.tenant } })).json.data[0];
    assert.equal(again.credits_micros, invoice.total_micros);
    assert.equal(again.credits_returned_micros, 0);
  });

  test('the database keeps the books: zero-sum transfers, no grant below zero, no edits', async () => {
    const t = await makeTenant(s.adminUrl, 'Books');
    const g = (await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 100 })).json;
    const q = (sql) => pg.query(`BEGIN; ${sql}; COMMIT;`);
    assert.throws(() => q(`INSERT INTO credit_transfers (id, tenant_id, kind) VALUES ('x1', '${t.tenant}', 'drawdown');
      INSERT INTO credit_entries VALUES ('x1', 'grant:${g.id}', -10)`), /does not sum to zero/);
    assert.throws(() => q(`INSERT INTO credit_transfers (id, tenant_id, kind) VALUES ('x2', '${t.tenant}', 'drawdown');
      INSERT INTO credit_entries VALUES ('x2', 'grant:${g.id}', -101), ('x2', 'usage:${t.tenant}', 101)`), /credit_grant_not_negative/);
    assert.throws(() => pg.query(`UPDATE credit_entries SET amount_micros = 1 WHERE transfer_id = 'grant:${g.id}'`), /immutable/);
    assert.throws(() => pg.query(`DELETE FROM credit_grants WHERE id = '${g.id}'`), /immutable/);
    expectBooksBalance(t.tenant);
    assert.equal((await api(s.adminUrl, 'GET', `/admin/v1/credit_grants/${g.id}`)).json.balance_micros, 100);
  });

  test('expired credit moves to breakage once; grants with an id are idempotent; bad grants are 400s', async () => {
    const t = await makeTenant(s.adminUrl, 'Expiring');
    const now = Math.floor(Date.now() / 1000);
    const g = await grant(s.adminUrl, t.tenant, { id: 'cg_expiring-1', kind: 'promotional', amount_micros: 700, effective_at: now - 10, expires_at: now + 1 });
    assert.equal(g.status, 201, g.text);
    const again = await grant(s.adminUrl, t.tenant, { id: 'cg_expiring-1', kind: 'promotional', amount_micros: 700, effective_at: now - 10, expires_at: now + 1 });
    assert.equal(again.json.id, 'cg_expiring-1', 'a retry returns the grant made the first time');
    const clash = await grant(s.adminUrl, t.tenant, { id: 'cg_expiring-1', kind: 'promotional', amount_micros: 999 });
    assert.equal(clash.status, 409, clash.text);
    assert.equal(pg.value(`SELECT count(*) FROM credit_grants WHERE tenant_id = '${t.tenant}'`), '1');

    await sleep(2100);
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const tollctl = (...args) => JSON.parse(execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' }));
    // The gateway expires grants every minute by itself; the command does it now. Twice: once.
    tollctl('credits', 'expire');
    tollctl('credits', 'expire');
    const b = tollctl('credits', 'balance', '--tenant', t.tenant);
    assert.equal(b.expired_micros, 700);
    assert.equal(b.available_micros, 0);
    assert.equal(b.grants[0].expired, true);
    assert.equal(pg.value(`SELECT count(*) FROM credit_transfers WHERE tenant_id = '${t.tenant}' AND kind = 'expiry'`), '1');
    expectBooksBalance(t.tenant);

    // tollctl grants too.
    const made = tollctl('credits', 'grant', '--tenant', t.tenant, '--kind', 'purchased', '--amount-micros', '1000000',
      '--price-paid-micros', '900000', '--models', 'dev-echo,other', '--memo', 'Q4 top-up');
    assert.deepEqual(made.models, ['dev-echo', 'other']);
    assert.equal(made.price_paid_micros, 900_000);
    assert.equal(tollctl('credits', 'transfers', '--tenant', t.tenant).data.length, 3);

    const bad = [
      [{ kind: 'promotional', amount_micros: 0 }, /amount_micros/],
      [{ kind: 'promotional', amount_micros: 10, price_paid_micros: 5 }, /price_paid_micros/],
      [{ kind: 'purchased', amount_micros: 10 }, /price_paid_micros/],
      [{ kind: 'gift', amount_micros: 10 }, /kind/],
      [{ kind: 'promotional', amount_micros: 10, effective_at: now, expires_at: now }, /expires_at/],
      [{ kind: 'promotional', amount_micros: 10, id: 'nope' }, /id must be/],
      [{ kind: 'promotional', amount_micros: 10, extra: 1 }, /extra/],
    ];
    for (const [body, message] of bad) {
      const r = await grant(s.adminUrl, t.tenant, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.json.error.message, message);
    }
    assert.equal((await grant(s.adminUrl, 'ten_nobody', { kind: 'promotional', amount_micros: 10 })).status, 404);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/tenants/ten_nobody/credits')).status, 404);
    assert.equal(pg.value(`SELECT count(*) FROM credit_grants WHERE tenant_id = '${t.tenant}'`), '2', 'nothing stored by a bad grant');
  });
});

describe('credit_only plans, enforced in real time through Redis', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-credit-only-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({ config: { ...dbConfig(pg, dir), budgets: { ...redis.budgetsConfig } } });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('requests are refused with 402 when the credit cannot cover their worst case, and never overspend it', async () => {
    const t = await makeTenant(s.adminUrl, 'Prepaid');
    const book = await givePlan(s.adminUrl, t.tenant);
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`,
      { body: { price_book_id: book.id, settlement_mode: 'credit_only' } });
    assert.equal(plan.status, 200, plan.text);
    const send = async (i) => {
      const r = await postJson(`${s.url}/v1/chat/completions`, chatBody(`prepaid request ${i}`, { max_tokens: 16 }),
        { authorization: `Bearer ${t.key}` });
      const text = await r.text();
      return { status: r.status, text, json: JSON.parse(text) };
    };

    // No credit yet: refused, with OpenAI's error shape.
    const none = await send(0);
    assert.equal(none.status, 402, none.text);
    assert.equal(none.json.error.code, 'insufficient_quota');
    assert.match(none.json.error.message, /prepaid credit is used up/);

    assert.equal((await grant(s.adminUrl, t.tenant, { kind: 'purchased', amount_micros: 1200, price_paid_micros: 1000 })).status, 201);
    // The grant reaches the gateway's budget cache at once (invalidated on the admin call).
    let served = 0;
    let refused = 0;
    for (let round = 0; round < 12 && refused === 0; round++) {
      const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => send(round * 6 + i + 1)));
      for (const r of rs) {
        if (r.status === 200) served += 1;
        else {
          assert.equal(r.status, 402, r.text);
          refused += 1;
        }
      }
    }
    assert.ok(served > 0 && refused > 0, `served ${served}, refused ${refused}`);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === served,
      { what: 'ledger rows of the served requests' });
    const cost = Number(pg.value(`SELECT coalesce(sum(cost_micros), 0) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    const credit = Number(pg.value(`SELECT coalesce(sum(credit_micros), 0) FROM usage_events WHERE tenant_id = '${t.tenant}'`));
    assert.ok(cost <= 1200, `the served requests cost ${cost}, within the 1,200 of credit`);
    assert.equal(credit, cost, 'credit paid for every served request in full');

    // The mirror rebuilt from the ledger: the counter becomes what the ledger drew.
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const report = JSON.parse(execFileSync(path.join(binDir, 'tollctl'), ['credits', 'reconcile', '--tenant', t.tenant], { env, encoding: 'utf8' }));
    const row = report.data.find((r) => r.budget_id === `credit:${t.tenant}`);
    assert.equal(row.ledger, cost);
    assert.ok(row.redis_before >= row.ledger, 'the mirror held at least what the ledger drew (worst-case rates)');

    // More credit: served again.
    assert.equal((await grant(s.adminUrl, t.tenant, { kind: 'promotional', amount_micros: 100_000 })).status, 201);
    assert.equal((await send(999)).status, 200);
  });
});
