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

describe('console in chromium (real stack)', { timeout: 170_000 }, () => {
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
    await page.waitForFunction(() => document.querySelector('section[aria-label="Tenant"] h2')?.innerText === 'Browser Co');

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

    // A budget of 3 requests a day.
    await page.select('#new-budget-metric', 'requests');
    await page.type('#new-budget-limit', '3');
    await page.click('form[aria-label="New budget"] button');
    await page.waitForFunction(() => /requests per day/.test(document.querySelector('section[aria-label="Budgets"]')?.innerText ?? ''));
    const barWidth = () => page.$eval('section[aria-label="Budgets"] .bar .used', (e) => e.style.width);
    assert.equal(await barWidth(), '0%');

    // Requests with the key: the budget bar moves, and usage shows on the usage explorer.
    for (let i = 0; i < 2; ++i) assert.equal((await chat(s.url, secret, `hello ${i}`)).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    await page.reload({ waitUntil: 'networkidle0' });
    await page.waitForSelector('section[aria-label="Budgets"] .bar .used');
    assert.equal(await barWidth(), '66%');
    assert.match(await text(page, 'section[aria-label="Budgets"]'), /66\.6%/);
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

    // The overview draws its charts.
    await page.goto(`${s.adminUrl}/console/#/overview/24h/1h/model`);
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-rendered="true"]').length >= 4, { timeout: 15000 });
    assert.match(await text(page, 'main'), /Top by spend/);
    assert.deepEqual(page.problems(), []);
    await page.close();
  });

  test('finance: no change controls, and the API answers 403 when forced', async () => {
    const page = await watchedPage(browser);
    page.expectFailure(/\/plan$|\/credits$/);
    await signIn(page, s.adminUrl, FINANCE);
    assert.match(await text(page, '#who'), /Finance \(read-only\)/);
    await page.goto(`${s.adminUrl}/console/#/tenants/${tenantId}`);
    await page.waitForFunction(() => document.querySelector('section[aria-label="Tenant"] h2')?.innerText === 'Browser Co');
    for (const sel of ['#new-tenant-name', 'form[aria-label="New key"]', 'form[aria-label="New budget"]', 'button[data-action="revoke"]']) {
      assert.equal(await page.$(sel), null, `${sel} is not shown to finance`);
    }
    assert.match(await text(page, 'section[aria-label="Budgets"]'), /requests per day/);
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
    assert.equal((await chat(s.url, key.key, 'holder usage', {}, { 'x-tollgate-end-user': 'alice' })).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    const page = await watchedPage(browser);
    await signIn(page, s.url, key.key);
    assert.match(await text(page, '#who'), /Holder Co/);
    await page.waitForFunction(() => document.querySelectorAll('.chart[data-rendered="true"]').length >= 3, { timeout: 15000 });
    const shown = await text(page, 'main');
    assert.match(shown, /Usage of Holder Co/);
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
});
