// `make screenshots`: a PNG of every console page in docs/console/, taken in Debian's chromium
// (headless, 1280x800, the browser tests' set-up) against a real stack (gateway, PostgreSQL,
// Redis, the development upstream) with generated usage: two tenants, a plan, a credit grant,
// a budget with alert thresholds, a draft invoice and requests from several end users; the
// overview and a tenant also at phone width (390x844). Fails, writing nothing more,
// on any console error or failed request, so it also checks every page renders.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack, waitFor, sleep } from './lib/harness.mjs';
import { startPostgres } from './lib/postgres.mjs';
import { startRedis } from './lib/redis.mjs';
import { budgetConfig } from './lib/budgets.mjs';
import { ADMIN, api, chat, givePlan, makeTenant } from './lib/ledger.mjs';
import { launchBrowser, watchedPage, signIn } from './lib/browser.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'docs', 'console');

async function usage(s, pg) {
  const acme = await makeTenant(s.adminUrl, 'Acme Search', { default_tags: { team: 'search' } });
  const globex = await makeTenant(s.adminUrl, 'Globex Support');
  for (const t of [acme, globex]) await givePlan(s.adminUrl, t.tenant);
  const grant = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${acme.tenant}/credit_grants`,
    { body: { kind: 'promotional', amount_micros: 2_000 } });
  if (grant.status !== 201) throw new Error(`credit grant: ${grant.text}`);
  const budget = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
    { body: { tenant_id: acme.tenant, metric: 'tokens', window: 'month', limit: 6000,
      alert_thresholds: [10, 50, 80] } });
  if (budget.status !== 201) throw new Error(`budget: ${budget.text}`);
  let sent = 0;
  for (let i = 0; i < 36; i += 1) {
    const [t, user] = i % 3 === 2 ? [globex, `agent-${i % 2}`] : [acme, `customer-${i % 5}`];
    const r = await chat(s.url, t.key, `question ${i}: ${'how do tokens add up '.repeat(1 + (i % 4))}`,
      { user, max_tokens: 40 });
    await r.text();
    sent += 1;
  }
  await waitFor(() => Number(pg.value('SELECT count(*) FROM usage_events')) >= sent, { what: 'the ledger rows' });
  const period = new Date().toISOString().slice(0, 7);
  const inv = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period } });
  if (inv.status !== 200) throw new Error(`invoice run: ${inv.text}`);
  return { acme, budgetId: budget.json.id };
}

async function shoot(page, url, name) {
  await page.goto(url, { waitUntil: 'networkidle0' });
  await sleep(300);  // charts draw after their data arrives
  const problems = page.problems();
  if (problems.length) throw new Error(`${name}: ${problems.join('; ')}`);
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshots: ${path.relative(root, file)}`);
}

const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-screenshots-${process.pid}`);
mkdirSync(dir, { recursive: true });
mkdirSync(outDir, { recursive: true });
const pg = await startPostgres();
const redis = await startRedis();
let s;
let browser;
try {
  s = await startStack({ config: budgetConfig(pg, redis, dir) });
  const { acme, budgetId } = await usage(s, pg);
  browser = await launchBrowser();
  const admin = await watchedPage(browser);
  await signIn(admin, s.adminUrl, ADMIN);
  const usageQuery = encodeURIComponent('range=24h&bucket_width=1h&group_by=end_user&order=cost_desc');
  for (const [name, hash] of [
    ['overview', 'overview/24h/1h/model'],
    ['tenants', 'tenants'],
    ['tenant', `tenants/${acme.tenant}`],
    ['usage-explorer', `usage/${usageQuery}`],
    ['pricing', 'pricing'],
    ['credits-and-invoices', `billing/${acme.tenant}`],
    ['budget-alerts', `tenants/${acme.tenant}/${budgetId}`],
  ]) {
    await shoot(admin, `${s.adminUrl}/console/#/${hash}`, name);
  }
  // At phone width (390x844): the overview and a tenant.
  await admin.setViewport({ width: 390, height: 844 });
  await shoot(admin, `${s.adminUrl}/console/#/overview/24h/1h/model`, 'overview-phone');
  await shoot(admin, `${s.adminUrl}/console/#/tenants/${acme.tenant}`, 'tenant-phone');
  const holder = await watchedPage(browser);
  await signIn(holder, s.url, acme.key);
  await shoot(holder, `${s.url}/console/#/usage`, 'key-holder');
} finally {
  await browser?.close();
  await s?.stop();
  redis.stop();
  pg.stop();
}
