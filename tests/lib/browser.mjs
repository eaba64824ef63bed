// Driving the web console in Debian's chromium (headless) with puppeteer-core: used by the
// browser tests (tests/e2e/console_browser.test.mjs), the screenshots (`make screenshots`) and
// the console benchmark.
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.TOLLGATE_CHROMIUM ?? '/usr/bin/chromium';

export async function launchBrowser() {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

// A page that records console errors and failed requests; `expectFailure(pattern)` allows
// the ones a test provokes.
// Each page gets its own browser context: no cookies shared between roles.
export async function watchedPage(browser) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.once('close', () => context.close().catch(() => {}));
  await page.setViewport({ width: 1280, height: 800 });
  const problems = [];
  const allowed = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} at ${m.location()?.url ?? ''}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && !allowed.some((a) => a.test(r.url()))) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.problems = () => problems.filter((p) => !allowed.some((a) => a.test(p)));
  page.expectFailure = (re) => allowed.push(re);
  return page;
}

export async function signIn(page, base, token) {
  await page.goto(`${base}/console/`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#token');
  await page.type('#token', token);
  await Promise.all([page.waitForSelector('nav#nav a'), page.click('form button[type=submit]')]);
  // The landing page settles before the caller moves on (its requests would otherwise compete
  // with the next page's, and one cut short by navigating away stays in flight for puppeteer).
  await page.waitForNetworkIdle({ idleTime: 200, timeout: 30000 });
}

