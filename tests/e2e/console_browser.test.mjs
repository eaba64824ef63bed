// The web console in a real browser: Debian's chromium, headless, driven by puppeteer-core,
// against a real stack (gateway, PostgreSQL, Redis, the development upstream). Every test fails
// on a console error or a failed request it did not provoke on purpose, and asserts on what
// the page shows.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, watchedPage, signIn } from '../lib/browser.mjs';
import { startStack } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { budgetConfig } from '../lib/budgets.mjs';
import { ADMIN, FINANCE, chat } from '../lib/ledger.mjs';

const text = (page, sel) => page.$eval(sel, (e) => e.innerText);
const LONG_END_USER = 'customer-directory/eu-west/organisation-4711/user-0123456789abcdef';

// Waits until the tenant page shows `name`; on a timeout, says what the page showed instead.
async function tenantShown(page, name) {
  try {
    await page.waitForFunction(
      (n) => document.querySelector('section[aria-label="Tenant"] h2')?.innerText === n,
      { timeout: 20000 }, name);
  } catch (e) {
    const shown = await page.$eval('main', (m) => m.innerText.slice(0, 400));
    throw new Error(`${e.message}; the page showed: ${shown}; ${page.problems().join('; ')}`);
  }
}

// Waits until `n` charts are drawn.
const chartsDrawn = (page, n) => page.waitForFunction(
  (k) => document.querySelectorAll('.chart[data-rendered="true"]').length >= k,
  { timeout: 15000 }, n);

// The top-by-spend tables whose box must scroll to show them (their spend column cut).
const topTablesCut = (page) => page.$$eval('section[aria-label^="Top "] .table-wrap',
  (boxes) => boxes.filter((b) => b.scrollWidth > b.clientWidth)
    .map((b) => b.closest('section').getAttribute('aria-label')));

// Loads `hash` and waits until the page is drawn (`ready` shown, the network quiet).
async function visit(page, base, hash, ready) {
  await page.goto(`${base}/console/#/${hash}`);
  await page.waitForSelector(ready, { timeout: 15000 });
  await page.waitForNetworkIdle({ idleTime: 150, timeout: 15000 });
}

// What overflows the page sideways at the current viewport: the page itself, or any element
// reaching past the right edge that is not inside a box that scrolls (a table's own box).
const overflow = (page) => page.evaluate(() => {
  const out = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) {
    out.push(`page ${document.documentElement.scrollWidth} > ${width}`);
  }
  for (const e of document.querySelectorAll('main *, header *')) {
    if (e.closest('.table-wrap, .hidden') || e.getClientRects().length === 0) continue;
    const r = e.getBoundingClientRect();
    if (r.right > width + 1) out.push(`${e.tagName.toLowerCase()}.${e.className} ${r.right}`);
  }
  return out.slice(0, 5);
});

describe('console in chromium (real stack)', { timeout: 240_000 }, () => {
  let pg;
  let redis;
  let s;
  let browser;
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-console-browser-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: budgetConfig(pg, redis, dir) });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  let tenantId;
  let secret;
  let holderKey;

  test('admin: create a tenant, key and budget; the secret once; usage and the bar move; revoke', async () => {
    const page = await watchedPage(browser);
    // A tenant without a plan or credits: those reads are documented 404s.
    page.expectFailure(/\/plan$|\/credits$/);
    await signIn(page, s.adminUrl, ADMIN);
    assert.match(await text(page, '#who'), /Admin/);
    await page.goto(`${s.adminUrl}/console/#/tenants`);
    await page.waitForSelector('#new-tenant-name');
    await page.type('#new-tenant-name', 'Browser Co');
    await Promise.all([page.waitForFunction(() => location.hash.startsWith('#/tenants/ten_')),
      page.click('form[aria-label="New tenant"] button')]);
    tenantId = await page.evaluate(() => location.hash.split('/')[2]);
    await tenantShown(page, 'Browser Co');

    // A key: the secret is shown once, then gone after a reload.
    await page.type('#new-key-name', 'browser key');
    await page.click('form[aria-label="New key"] button');
    await page.waitForSelector('#new-key-secret');
    secret = await text(page, '#new-key-secret');
    assert.match(secret, /^tg-[A-Za-z0-9]{43}$/);
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('section[aria-label="API keys"] tbody tr');
    assert.equal(await page.$('#new-key-secret'), null, 'the secret is not shown again');
    const keysText = await text(page, 'section[aria-label="API keys"]');
    assert.match(keysText, /browser key/);
    assert.ok(!keysText.includes(secret));

    // A budget of 3 requests a day, alerting at half of it.
    await page.select('#new-budget-metric', 'requests');
    await page.type('#new-budget-limit', '3');
    await page.type('#new-budget-alerts', '50');
    await page.click('form[aria-label="New budget"] button');
    await page.waitForFunction(() => /requests per day/.test(document.querySelector('section[aria-label="Budgets"]')?.innerText ?? ''));
    const barWidth = () => page.$eval('section[aria-label="Budgets"] .bar .used', (e) => e.style.width);
    assert.equal(await barWidth(), '0%');

    // Requests with the key: the budget bar moves, and usage shows on the usage explorer.
    // (One of them from an end user with a long id: the top-by-spend table must still show
    // its spend column.)
    assert.equal((await chat(s.url, secret, 'hello 0', {},
      { 'x-tollgate-end-user': LONG_END_USER })).status, 200);
    assert.equal((await chat(s.url, secret, 'hello 1')).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('section[aria-label="Budgets"] .bar .used');
    assert.equal(await barWidth(), '66%');
    assert.match(await text(page, 'section[aria-label="Budgets"]'), /66\.6%/);
    // The alert at 50% was raised (no webhook: recorded); admins change the thresholds.
    await page.click('section[aria-label="Budgets"] a[data-action="alerts"]');
    await page.waitForSelector('#alert-thresholds');
    const alertsText = () => text(page, 'section[aria-label="Budget alerts"]');
    assert.match(await alertsText(), /Alerts at 50% of the limit/);
    for (let i = 0; i < 20 && !/recorded/.test(await alertsText()); ++i) {
      await new Promise((r) => setTimeout(r, 250));
      await page.reload({ waitUntil: 'networkidle0' });
      await page.waitForSelector('section[aria-label="Budget alerts"]');
    }
    assert.match(await alertsText(), /50%\s+\d\s+3\s+recorded/);
    await page.$eval('#alert-thresholds', (e) => { e.value = ''; });
    await page.type('#alert-thresholds', '101, 80');
    await page.click('form[aria-label="Alert settings"] button');
    await page.waitForFunction(() => /Alerts at 80%, 101% of the limit/.test(
      document.querySelector('section[aria-label="Budget alerts"]')?.innerText ?? ''));
    await page.$eval('#alert-thresholds', (e) => { e.value = ''; });
    await page.type('#alert-thresholds', '0');
    await page.click('form[aria-label="Alert settings"] button');
    await page.waitForFunction(() => /1 to 1000/.test(
      document.querySelector('form[aria-label="Alert settings"] .error')?.innerText ?? ''));

    await page.goto(`${s.adminUrl}/console/#/usage/${encodeURIComponent(`range=24h&bucket_width=1h&group_by=tenant_id,model&tenant_id=${tenantId}`)}`);
    await page.waitForFunction(() => /rows/.test(document.querySelector('section[aria-label="Usage rows"] h2')?.innerText ?? ''), { timeout: 10000 });
    const usageText = await text(page, 'section[aria-label="Usage rows"]');
    assert.match(usageText, new RegExp(tenantId));
    assert.match(usageText, /dev-echo/);
    await page.waitForSelector('.chart[data-rendered="true"]');

    // Revoke: the key is refused from then on.
    await page.goto(`${s.adminUrl}/console/#/tenants/${tenantId}`);
    await page.waitForSelector('button[data-action="revoke"]');
    await page.click('button[data-action="revoke"]');
    await page.waitForFunction(() => /revoked/.test(document.querySelector('section[aria-label="API keys"]')?.innerText ?? ''));
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await chat(s.url, secret, 'after revoke')).status, 401);

    // The overview draws its charts; at 1280x800 the top-by-spend tables show their spend.
    await page.goto(`${s.adminUrl}/console/#/overview/24h/1h/model`);
    await chartsDrawn(page, 4);
    await page.waitForSelector('section[aria-label="Budgets nearest their limit"]');
    assert.match(await text(page, 'main'), /Top by spend/);
    assert.match(await text(page, 'section[aria-label="Top End users"]'), /USD|0\./);
    assert.deepEqual(await topTablesCut(page), []);

    // A chosen range: two UTC times, hourly buckets for a short one, checked before asking.
    const hour = 3600;
    const now = Math.floor(Date.now() / 1000 / hour) * hour;
    const utc = (t) => new Date(t * 1000).toISOString().slice(0, 16);
    await page.goto(`${s.adminUrl}/console/#/overview/custom//model/${utc(now - 5 * hour)}/${utc(now + hour)}`);
    await chartsDrawn(page, 4);
    assert.match(await text(page, '#ov-range-text'), /hourly/);
    const requestsRows = await page.$$eval('section[aria-label="Requests"] .table-wrap tbody tr',
      (r) => r.length);
    assert.equal(requestsRows, 6, 'six hourly buckets');
    await page.goto(`${s.adminUrl}/console/#/overview/custom//model/${utc(now - 10 * 86400)}/${utc(now)}`);
    await chartsDrawn(page, 4);
    assert.match(await text(page, '#ov-range-text'), /daily/);
    await page.goto(`${s.adminUrl}/console/#/overview/custom/1h/model/${utc(now)}/${utc(now - hour)}`);
    await page.waitForSelector('#ov-error');
    assert.match(await text(page, '#ov-error'), /must end after it starts/);
    assert.equal(await page.$('.chart'), null, 'nothing asked for a bad range');
    await page.goto(`${s.adminUrl}/console/#/overview/custom/1h/model/${utc(now - 40 * 86400)}/${utc(now)}`);
    await chartsDrawn(page, 4);
    assert.match(await text(page, '#ov-error'), /Hourly buckets cover at most 31 days/);
    await page.goto(`${s.adminUrl}/console/#/overview/custom//model/${utc(now - 400 * 86400)}/${utc(now)}`);
    assert.match(await text(page, '#ov-error'), /at most 366 days/);

    // Credits: a grant made on the page shows with its balance; a bad amount is refused there.
    await page.goto(`${s.adminUrl}/console/#/billing/${tenantId}`);
    await page.waitForSelector('#grant-amount');
    await page.type('#grant-amount', 'ten');
    await page.click('form[aria-label="Grant credits"] button');
    assert.match(await text(page, '#grant-error'), /positive sum/);
    await page.$eval('#grant-amount', (e) => { e.value = ''; });
    await page.select('#grant-kind', 'promotional');
    await page.type('#grant-amount', '12.5');
    await page.type('#grant-memo', 'welcome credit');
    await page.click('form[aria-label="Grant credits"] button');
    await page.waitForFunction(() => /Available 12\.50/.test(
      document.querySelector('#credit-summary')?.innerText ?? ''));
    assert.match(await text(page, 'section[aria-label="Credit grants"]'), /promotional[\s\S]*welcome credit/);
    assert.deepEqual(page.problems(), []);
    await page.close();
  });

  test('finance: no change controls, and the API answers 403 when forced', async () => {
    const page = await watchedPage(browser);
    page.expectFailure(/\/plan$|\/credits$/);
    await signIn(page, s.adminUrl, FINANCE);
    assert.match(await text(page, '#who'), /Finance \(read-only\)/);
    await page.goto(`${s.adminUrl}/console/#/tenants/${tenantId}`);
    await tenantShown(page, 'Browser Co');
    for (const sel of ['#new-tenant-name', 'form[aria-label="New key"]', 'form[aria-label="New budget"]', 'button[data-action="revoke"]']) {
      assert.equal(await page.$(sel), null, `${sel} is not shown to finance`);
    }
    assert.match(await text(page, 'section[aria-label="Budgets"]'), /requests per day/);
    // The alert deliveries, read-only; the grants, with no grant form.
    await page.click('section[aria-label="Budgets"] a[data-action="alerts"]');
    await page.waitForSelector('section[aria-label="Budget alerts"]');
    assert.match(await text(page, 'section[aria-label="Budget alerts"]'), /recorded/);
    assert.equal(await page.$('#alert-thresholds'), null, 'no alert settings for finance');
    await page.goto(`${s.adminUrl}/console/#/billing/${tenantId}`);
    await page.waitForSelector('#credit-summary');
    assert.match(await text(page, 'section[aria-label="Credit grants"]'), /welcome credit/);
    assert.equal(await page.$('#grant-amount'), null, 'no grant form for finance');
    page.expectFailure(/\/admin\/v1\/tenants$/);
    const forced = await page.evaluate(async () => {
      const session = await (await fetch('/console/session')).json();
      const r = await fetch('/admin/v1/tenants', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token }, body: '{"name":"x"}' });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(forced.status, 403);
    assert.equal(forced.body.error.message, 'The finance role is read-only.');
    assert.deepEqual(page.problems(), []);
    await page.close();
  });

  test('key holder: signs in with an API key on the public listener and sees only its tenant', async () => {
    const other = await (await fetch(`${s.adminUrl}/admin/v1/tenants`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"name":"Holder Co"}' })).json();
    const key = await (await fetch(`${s.adminUrl}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ tenant_id: other.id, name: 'holder' }) })).json();
    // A plan in euros and a spend budget: its amounts are shown in the plan's currency.
    const admin = async (path, body) => {
      const r = await fetch(`${s.adminUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.ok(r.status < 300, `${path}: ${r.status}`);
      return r.json();
    };
    const book = await admin('/admin/v1/price_books', { name: 'Holder EUR', currency: 'EUR', effective_at: 1_700_000_000, models: { 'dev-echo': { input: [{ rate: '1000000' }], output: [{ rate: '1000000' }] } } });
    await admin(`/admin/v1/tenants/${other.id}/plan`, { price_book_id: book.id });
    await admin('/admin/v1/budgets', { tenant_id: other.id, metric: 'spend', window: 'month', limit: 5_000_000 });
    holderKey = key.key;
    assert.equal((await chat(s.url, key.key, 'holder usage', {}, { 'x-tollgate-end-user': 'alice' })).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    const page = await watchedPage(browser);
    await signIn(page, s.url, key.key);
    assert.match(await text(page, '#who'), /Holder Co/);
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-rendered="true"]').length >= 3, { timeout: 15000 });
    const shown = await text(page, 'main');
    assert.match(shown, /Usage of Holder Co/);
    assert.match(await text(page, 'section[aria-label="Budgets"]'), /EUR 5\.00/);
    assert.doesNotMatch(shown, /Browser Co/);
    const links = await page.$$eval('nav#nav a', (as) => as.map((a) => a.innerText));
    assert.deepEqual(links, ['My usage']);
    page.expectFailure(/\/admin\/v1\/tenants$/);
    const forced = await page.evaluate(async (adminUrl) => {
      const r = await fetch('/v1/usage?start_time=0&tenant_id=' + 'ten_other');
      const j = await r.json();
      return { status: r.status, tenants: [...new Set(j.data.flatMap((b) => b.results.map(() => 'own')))] };
    }, s.adminUrl);
    assert.equal(forced.status, 200);
    assert.deepEqual(page.problems(), []);
    await page.close();
  });

  test('phone width (390x844): every page fits, wide tables scroll in their own box', async () => {
    const page = await watchedPage(browser);
    page.expectFailure(/\/plan$|\/credits$/);
    await page.setViewport({ width: 390, height: 844 });
    await signIn(page, s.adminUrl, ADMIN);
    const usage = encodeURIComponent('range=7d&bucket_width=1d&group_by=tenant_id,project_id,api_key_id,model');
    const pages = [
      ['overview/30d//model', 'section[aria-label="Budgets nearest their limit"]'],
      ['tenants', 'section[aria-label="Tenant list"]'],
      [`tenants/${tenantId}`, 'section[aria-label="Audit log"]'],
      [`usage/${usage}`, 'section[aria-label="Usage rows"]'],
      ['pricing', 'section[aria-label="Plans per tenant"]'],
      [`billing/${tenantId}`, 'section[aria-label="Credit transfers"]'],
    ];
    for (const [hash, ready] of pages) {
      await visit(page, s.adminUrl, hash, ready);
      assert.deepEqual(await overflow(page), [], `#/${hash} at 390 px`);
    }
    await visit(page, s.adminUrl, pages[0][0], pages[0][1]);
    assert.match(await text(page, pages[0][1]), /Holder Co[^]*EUR 5\.00/, 'a spend budget in its currency');
    await visit(page, s.adminUrl, `tenants/${tenantId}`, 'section[aria-label="Audit log"]');
    const keysBox = await page.$eval('section[aria-label="API keys"] .table-wrap', (b) => ({
      scrolls: b.scrollWidth > b.clientWidth, overflowX: getComputedStyle(b).overflowX }));
    assert.deepEqual(keysBox, { scrolls: true, overflowX: 'auto' }, 'the keys table scrolls in its box');
    await page.click('section[aria-label="Budgets"] a[data-action="alerts"]');
    await page.waitForSelector('#alert-thresholds');
    assert.deepEqual(await overflow(page), [], 'budget alerts at 390 px');
    assert.deepEqual(page.problems(), []);
    await page.close();

    // The key holder's page on the public listener.
    const holder = await watchedPage(browser);
    await holder.setViewport({ width: 390, height: 844 });
    await signIn(holder, s.url, holderKey);
    await chartsDrawn(holder, 3);
    await holder.waitForSelector('section[aria-label="Budgets"]');
    assert.deepEqual(await overflow(holder), [], 'key holder at 390 px');
    assert.deepEqual(holder.problems(), []);
    await holder.close();
  });
});
