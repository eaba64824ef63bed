// Integration tests of token bundles in credit_only holds (docs/CREDITS.md, "credit_only plans,
// in real time") against a real gateway, PostgreSQL and Redis, with the official openai client:
// a tenant with no money credit is served from its bundles until they run out, then refused
// with 402; with a little money credit and bundles, 30 concurrent requests never spend more
// than the credit and the bundles hold (every served request paid in full, nothing left to
// invoice); Redis's coverage pools equal the ledger's bundle balances once the ledger has
// corrected them, and `tollctl credits reconcile` finds them so; a prompt reported partly
// cached costs its cached tokens beyond the hold, and no more (a documented limit); a request
// the ledger rates first cannot draw the bundle tokens a request still in flight covered; with
// an all_models book only the "*" bundles, which the ledger draws, cover holds, from the first
// request of the month such a book is scheduled for.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { startStack, binDir, waitFor, metric } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant, ADMIN } from '../lib/ledger.mjs';

// 2 micro-units per input token and 8 per output token, flat: the worst case is the actual.
const rates = { 'dev-echo': { input: [{ rate: '2000000' }], output: [{ rate: '8000000' }] } };
const hex = (s) => Buffer.from(s, 'utf8').toString('hex');

describe('credit_only holds count token bundles', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-credit-only-bundles-${process.pid}`);
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

  // A credit_only tenant on a flat book (`book` adds to it: a tier_scope and its models).
  async function creditOnlyTenant(name, book = { models: rates }) {
    const t = await makeTenant(s.adminUrl, name);
    const made = await api(s.adminUrl, 'POST', '/admin/v1/price_books',
      { body: { name: `${name} book`, currency: 'USD', effective_at: 1_700_000_000, ...book } });
    assert.equal(made.status, 201, made.text);
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`,
      { body: { price_book_id: made.json.id, settlement_mode: 'credit_only' } });
    assert.equal(plan.status, 200, plan.text);
    return t;
  }

  async function bundle(t, tokenClass, tokens, model = 'dev-echo') {
    const made = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/token_bundles`,
      { body: { model, token_class: tokenClass, tokens, price_per_million_micros: 1_000_000 } });
    assert.equal(made.status, 201, made.text);
    return made.json;
  }

  // One chat request through the openai client: [status, error message or null].
  async function ask(client, i, maxTokens) {
    try {
      await client.chat.completions.create({ model: 'dev-echo', max_tokens: maxTokens,
        messages: [{ role: 'user', content: `bundle request ${i} with some words` }] });
      return [200, null];
    } catch (e) {
      if (e?.status === undefined) throw e;
      return [e.status, e.error?.message ?? String(e)];
    }
  }

  // One chat request with the given content: [status, error message or null].
  async function askWith(client, content, maxTokens) {
    try {
      await client.chat.completions.create({ model: 'dev-echo', max_tokens: maxTokens,
        messages: [{ role: 'user', content }] });
      return [200, null];
    } catch (e) {
      if (e?.status === undefined) throw e;
      return [e.status, e.error?.message ?? String(e)];
    }
  }

  // What the ledger's bundles of `t` have left, and drew, per class.
  function ledgerBundles(t) {
    return Object.fromEntries(pg.query(`SELECT g.bundle_token_class, sum(g.bundle_tokens), sum(a.tokens_balance)
      FROM credit_grants g JOIN credit_accounts a ON a.grant_id = g.id
      WHERE g.tenant_id = '${t.tenant}' AND g.kind = 'bundle' GROUP BY 1`)
      .map(([cls, tokens, left]) => [cls, { tokens: Number(tokens), left: Number(left), drawn: Number(tokens) - Number(left) }]));
  }

  // A coverage pool's counter in Redis: settled usage and live holds.
  function pool(t, tokenClass, model = 'dev-echo') {
    return counter(`tg:{${t.tenant}}:b:cover:${hex(model)}:${tokenClass}:0`);
  }

  // A budget counter in Redis: settled usage and live holds.
  function counter(key) {
    const fields = execFileSync('redis-cli', ['-p', String(redis.port), '--raw', 'HGETALL', key], { encoding: 'utf8' })
      .split('\n');
    let used = 0;
    let held = 0;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'used') used = Number(fields[i + 1]);
      else if (fields[i].startsWith('h') && Number(fields[i].slice(1)) > Date.now()) held += Number(fields[i + 1]);
    }
    return { used, held };
  }

  // The gateway's count of counters corrected to what the ledger drew.
  const corrected = () => metric(s.adminUrl, 'tollgate_budget_spend_corrections_total', 'outcome="applied"');

  // Every served request is stored, and paid in full by bundles and credit.
  async function expectPaidInFull(t, served) {
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === served,
      { what: 'the served requests in the ledger' });
    assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'
      AND coalesce(credit_micros, 0) <> cost_micros`), '0', 'every request paid by bundles and credit, nothing to invoice');
    assert.equal(pg.value(`SELECT count(*) FROM credit_accounts WHERE tenant_id = '${t.tenant}' AND kind = 'grant'
      AND (balance_micros < 0 OR tokens_balance < 0)`), '0', 'no grant or bundle below zero');
  }

  // Once the ledger's corrections have reached Redis, each pool counts what the ledger drew.
  async function expectPoolsMatchLedger(t) {
    await waitFor(() => {
      const b = ledgerBundles(t);
      return ['input', 'output'].every((c) => { const p = pool(t, c); return p.held === 0 && p.used === b[c].drawn; });
    }, { what: 'the pools to equal the ledger' });
  }

  test('no money credit: bundles pay until they run out, then 402', async () => {
    const t = await creditOnlyTenant('Bundled');
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    // Without a bundle, nothing: the credit is 0.
    const [before, beforeMessage] = await ask(client, 0, 8);
    assert.equal(before, 402, beforeMessage);
    await bundle(t, 'input', 300);
    await bundle(t, 'output', 60);
    let served = 0;
    let refusal = null;
    for (let i = 1; i <= 60 && refusal === null; i++) {
      const [status, message] = await ask(client, i, 8);
      if (status === 200) served += 1;
      else {
        assert.equal(status, 402, message);
        assert.match(message, /prepaid credit is used up: 0 micro-units left, and this request may cost up to [1-9]/);
        refusal = message;
      }
    }
    assert.ok(refusal !== null, 'the bundles ran out');
    // 60 output tokens, at most 8 a request: at least 7 requests before the output pool cannot
    // cover a request's worst case.
    assert.ok(served >= 7, `served ${served} from the bundles`);
    await expectPaidInFull(t, served);
    assert.equal(pg.value(`SELECT coalesce(sum(credit_micros), 0) - coalesce(sum(cost_micros), 0) FROM usage_events
      WHERE tenant_id = '${t.tenant}'`), '0');
    assert.equal(pg.value(`SELECT count(*) FROM credit_grants WHERE tenant_id = '${t.tenant}' AND kind <> 'bundle'`), '0',
      'no money credit was ever there');
    await expectPoolsMatchLedger(t);
    const b = ledgerBundles(t);
    assert.ok(b.input.left < 60 || b.output.left < 8, `a bundle is nearly used up: ${JSON.stringify(b)}`);
  });

  test('a prompt reported partly cached costs its cached tokens beyond the hold, no more (the known limit)', async () => {
    const t = await creditOnlyTenant('Cached');
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    await bundle(t, 'input', 10_000);
    await bundle(t, 'output', 10_000);
    // Fully covered by the bundles: served with no money credit at all.
    assert.equal((await askWith(client, 'covered words', 4))[0], 200);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === 1,
      { what: 'the covered request in the ledger' });
    const correctedBefore = await corrected();
    // The upstream reports 6 of the prompt's tokens cached: the input bundle does not pay for
    // them, so they cost 6 x 2 micro-units that no hold took (docs/CREDITS.md, "Known limits").
    assert.equal((await askWith(client, 'tg:cached=6 cached words', 4))[0], 200);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status = 200`)) === 2,
      { what: 'both served requests in the ledger' });
    assert.deepEqual(pg.query(`SELECT cached_prompt_tokens, cost_micros - coalesce(credit_micros, 0) FROM usage_events
      WHERE tenant_id = '${t.tenant}' ORDER BY occurred_at`), [['0', '0'], ['6', '12']],
    'unpaid: exactly the 6 cached tokens at 2 micro-units, nothing of what the bundles covered');
    // The settlement counted them on the credit mirror (12); the ledger's correction, the only
    // one (the covered request needed none), then set it to the money drawn: none.
    // (The counter is the gateway's; a correction of an earlier test's would satisfy the first
    // wait, so the mirror is waited for too.)
    await waitFor(async () => await corrected() > correctedBefore, { what: 'the ledger\'s correction' });
    await waitFor(() => counter(`tg:{${t.tenant}}:b:credit:${t.tenant}:0`).used === 0, { what: 'the mirror corrected to 0' });
    await expectPoolsMatchLedger(t);
  });

  test('a little money credit and bundles: 30 concurrent requests never spend more than both', async () => {
    const t = await creditOnlyTenant('Mixed');
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const money = 400;
    const g = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/credit_grants`,
      { body: { kind: 'promotional', amount_micros: money } });
    assert.equal(g.status, 201, g.text);
    await bundle(t, 'input', 200);
    await bundle(t, 'output', 40);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => ask(client, i, 8)));
    const served = results.filter(([status]) => status === 200).length;
    for (const [status, message] of results) assert.ok(status === 200 || status === 402, `${status} ${message}`);
    // A request's worst case without bundles is its prompt at 2 and 8 tokens at 8 (over 64
    // micro-units): money alone serves at most 400 / 64 = 6. The bundles serve more.
    assert.ok(served > 6, `served ${served}`);
    assert.ok(served < 30, 'the credit and bundles ran out');
    await expectPaidInFull(t, served);
    const drawnMoney = Number(pg.value(`SELECT ${money} - a.balance_micros FROM credit_accounts a
      WHERE a.grant_id = '${g.json.id}'`));
    assert.ok(drawnMoney <= money, `money drawn ${drawnMoney} <= ${money}`);
    await expectPoolsMatchLedger(t);

    // Reconcile rebuilds the pools from the ledger: nothing to change once corrections landed.
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const report = JSON.parse(execFileSync(path.join(binDir, 'tollctl'), ['credits', 'reconcile', '--tenant', t.tenant],
      { env, encoding: 'utf8' }));
    const b = ledgerBundles(t);
    for (const c of ['input', 'output']) {
      const row = report.data.find((r) => r.counter === `cover:${hex('dev-echo')}:${c}`);
      assert.ok(row, `reconcile reports the ${c} pool: ${JSON.stringify(report.data)}`);
      assert.equal(row.ledger, b[c].drawn);
      assert.equal(row.difference, 0);
    }
  });

  // The ledger draws a bundle for each request in the order it rates them, which need not be
  // the order the holds reserved the pool in. A request held without cover must not draw the
  // bundle tokens another request in flight covered: that one would then pay money no hold
  // counted, and a later request could hold the money it needs.
  test('a request rated first cannot draw the bundle tokens a request in flight covered', async () => {
    const t = await creditOnlyTenant('Reserved');
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const money = 64;  // one request's 8 output tokens at 8
    const g = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/credit_grants`,
      { body: { kind: 'promotional', amount_micros: money } });
    assert.equal(g.status, 201, g.text);
    await bundle(t, 'input', 10_000);
    await bundle(t, 'output', 8);
    // The slow request covers the output bundle's 8 tokens and answers in 3 s.
    const slow = askWith(client, 'slow tg:tokens=8 tg:first_byte_delay_ms=3000', 8);
    await waitFor(() => pool(t, 'output').held === 8, { what: 'the slow request to cover the output pool' });
    // The quick one finds the pool covered: it holds the money for its output, and is rated first.
    const { response } = await client.chat.completions.create({ model: 'dev-echo', max_tokens: 8,
      messages: [{ role: 'user', content: 'quick tg:tokens=8' }] }).withResponse();
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 1,
      { what: 'the quick request in the ledger' });
    // Its cost header quotes what the ledger stored: the output at the price book's 8, not at
    // the bundle's 1.
    assert.equal(response.headers.get('x-tollgate-cost-micros'),
      pg.value(`SELECT cost_micros FROM usage_events WHERE request_id = '${response.headers.get('x-request-id')}'`));
    assert.equal(ledgerBundles(t).output.left, 8, 'the covered tokens stay for the slow request');
    assert.equal(pg.value(`SELECT ${money} - a.balance_micros FROM credit_accounts a WHERE a.grant_id = '${g.json.id}'`),
      String(money), 'the quick request paid its output with the money it held');
    // The money is spent, in the ledger and on the mirror: a third request is refused.
    await waitFor(() => counter(`tg:{${t.tenant}}:b:credit:${t.tenant}:0`).used === money,
      { what: 'the credit mirror to count the money drawn' });
    const [third, thirdMessage] = await askWith(client, 'third tg:tokens=8', 8);
    assert.equal(third, 402, thirdMessage);
    assert.equal((await slow)[0], 200);
    await expectPaidInFull(t, 2);
    assert.equal(ledgerBundles(t).output.left, 0, 'the slow request drew the tokens it covered');
    await expectPoolsMatchLedger(t);
  });

  // A book with tier_scope all_models prices every model as "*", and the ledger draws the
  // bundles of model "*" only: a bundle naming the model pays nothing there, so it must not
  // cover a hold either.
  test('with an all_models book, holds are covered by the "*" bundles the ledger draws, not by a named model\'s', async () => {
    const t = await creditOnlyTenant('AllModels', { tier_scope: 'all_models', models: { '*': rates['dev-echo'] } });
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const money = 100;  // one request's 8 output tokens at 8, not two
    const g = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/credit_grants`,
      { body: { kind: 'promotional', amount_micros: money } });
    assert.equal(g.status, 201, g.text);
    await bundle(t, 'input', 10_000, '*');
    await bundle(t, 'output', 1_000, 'dev-echo');
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await askWith(client, `all models ${i} tg:tokens=8`, 8))[0]);
    assert.deepEqual(statuses, [200, 402, 402, 402], 'the output is paid with money: one request fits');
    await expectPaidInFull(t, 1);
    const b = ledgerBundles(t);
    assert.equal(b.output.left, 1_000, 'the named model\'s bundle is not drawn in an all_models book');
    assert.ok(b.input.drawn > 0, 'the "*" input bundle paid the prompt');
    await waitFor(() => pool(t, 'input', '*').used === b.input.drawn && pool(t, 'input', '*').held === 0,
      { what: 'the "*" input pool to equal the ledger' });
    assert.equal(pool(t, 'output').used + pool(t, 'output').held, 0, 'no hold counted on the named model\'s pool');
  });

  // The gateway caches a tenant's budgets, with the plan read for the current month. A new
  // month may bring a scheduled book of another tier_scope, which the ledger rates the month's
  // events by: the cached read is not used past the month's end, however long its ttl.
  test('a scheduled all_models book applies to holds from the first request of its month', async () => {
    const t = await creditOnlyTenant('NewMonth');
    const next = await api(s.adminUrl, 'POST', '/admin/v1/price_books',
      { body: { name: 'NewMonth all', currency: 'USD', effective_at: 1_700_000_000, tier_scope: 'all_models', models: { '*': rates['dev-echo'] } } });
    assert.equal(next.status, 201, next.text);
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`,
      { body: { price_book_id: next.json.id, settlement_mode: 'credit_only' } });
    assert.equal(plan.status, 200, plan.text);
    assert.ok(plan.json.scheduled, plan.text);
    const g = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/credit_grants`,
      { body: { kind: 'promotional', amount_micros: 1_000_000 } });
    assert.equal(g.status, 201, g.text);
    for (const model of ['dev-echo', '*']) await bundle(t, 'output', 1_000, model);
    // A second gateway whose clock is 8 s before next month (time to start on a busy machine),
    // caching budgets for a minute.
    const now = new Date();
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    const offset = Math.floor((monthStart - 8000 - Date.now()) / 1000);
    const late = await startStack({ config: { ...dbConfig(pg, `${dir}-late`), budgets: { ...redis.budgetsConfig, cache_ttl_ms: 60000 } },
      env: { TOLLGATE_TEST_MODE: '1', TOLLGATE_TEST_CLOCK_OFFSET_S: String(offset) } });
    try {
      const client = new OpenAI({ baseURL: `${late.url}/v1`, apiKey: t.key, maxRetries: 0 });
      const covered = (model) => { const p = pool(t, 'output', model); return p.used + p.held; };
      // This month's book prices dev-echo by name: its bundle covers.
      assert.equal((await askWith(client, 'this month tg:tokens=4', 4))[0], 200);
      assert.ok(Date.now() + offset * 1000 < monthStart, 'the first request came before midnight on the gateway\'s clock');
      assert.equal(covered('dev-echo'), 4);
      assert.equal(covered('*'), 0);
      // Next month (on the gateway's clock), the all_models book: the "*" bundle covers.
      await new Promise((r) => setTimeout(r, Math.max(0, monthStart - (Date.now() + offset * 1000)) + 500));
      assert.equal((await askWith(client, 'next month tg:tokens=4', 4))[0], 200);
      assert.equal(covered('*'), 4, 'the new month\'s book read afresh, not the cached one');
      assert.equal(covered('dev-echo'), 4);
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 2,
        { what: 'both requests in the ledger' });
      assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND bundle_output_tokens = 4`), '2',
        'each month\'s bundle paid the output it covered');
    } finally {
      await late.stop();
    }
  });
});
