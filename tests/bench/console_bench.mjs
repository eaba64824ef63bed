// The console benchmark (make bench, console part): the overview page for a tenant with
// 1,000,000 usage events over the last 30 days, time from navigation to the page settled with
// its charts drawn, in Debian's chromium (headless) against a real gateway and PostgreSQL. The
// baseline, in the same run: the same page before any event exists (the page's own cost: its
// requests, scripts and drawing), so the ratio shows what the data adds.
//   node tests/bench/console_bench.mjs [--events N] [--runs R]
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startStack } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, givePlan, makeTenant, ADMIN } from '../lib/ledger.mjs';
import { launchBrowser, watchedPage, signIn } from '../lib/browser.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const events = arg('events', 1_000_000);
const runs = arg('runs', 7);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Milliseconds from navigating to `hash` until its four charts (requests, tokens, spend,
// refusals) are drawn, each after its data arrived, and until the rest of the page (the
// top-by-spend and budget tables) has settled too (the network quiet for 200 ms, not
// counted); fails on any console error or failed request.
async function timeOverview(page, base, hash) {
  await page.goto('about:blank');
  const t0 = performance.now();
  await page.goto(`${base}/console/#/${hash}`);
  await page.waitForFunction(() => document.querySelectorAll('canvas').length >= 4,
    { polling: 'raf', timeout: 60_000 });
  const ms = performance.now() - t0;
  await page.waitForNetworkIdle({ idleTime: 200, timeout: 60_000 });
  const settled = performance.now() - t0 - 200;
  const problems = page.problems();
  if (problems.length) throw new Error(problems.join('; '));
  return { ms, settled };
}

async function measure(page, base, label) {
  const out = {};
  for (const [name, hash] of [['24h_hourly', 'overview/24h/1h/model'], ['30d_daily', 'overview/30d/1d/model']]) {
    await timeOverview(page, base, hash);  // warm: scripts cached, connections open
    const xs = [];
    for (let i = 0; i < runs; i += 1) xs.push(await timeOverview(page, base, hash));
    out[name] = median(xs.map((x) => x.ms));
    out[`${name}_settled`] = median(xs.map((x) => x.settled));
    console.error(`console-bench: ${label} ${name}: median ${out[name].toFixed(0)} ms of ${runs}`
      + ` (page settled: ${out[`${name}_settled`].toFixed(0)} ms)`);
  }
  return out;
}

const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-console-bench-${process.pid}`);
mkdirSync(dir, { recursive: true });
const pg = await startPostgres();
let s;
let browser;
try {
  s = await startStack({ config: dbConfig(pg, dir) });
  const t = await makeTenant(s.adminUrl, 'Bench');
  await givePlan(s.adminUrl, t.tenant);
  browser = await launchBrowser();
  const page = await watchedPage(browser);
  page.expectFailure(/\/credits|\/plan/);  // a page may ask for what a tenant lacks (404)
  await signIn(page, s.adminUrl, ADMIN);
  // The landing page (the overview) settles first: a request cut short by navigating away
  // stays in flight for puppeteer's network-idle count.
  await page.waitForNetworkIdle({ idleTime: 200, timeout: 60_000 });
  const empty = await measure(page, s.adminUrl, 'no events');

  // The events: one tenant, two models, 10,000 end users, 2% refused (429), spread evenly
  // over the last 30 days; then the usage rollup brought up to date as a gateway keeps it.
  const t0 = performance.now();
  pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, project_id, api_key_id,
      endpoint, model, upstream, stream, batch, status, prompt_tokens, cached_prompt_tokens,
      completion_tokens, reasoning_tokens, usage_reported, estimated, latency_us,
      client_disconnected, cost_micros, end_user)
    SELECT '${t.tenant}', now() - (i % 2592000) * interval '1 second', 'req_cb_' || i,
      '${t.project}', '${t.keyId}', '/v1/chat/completions',
      CASE WHEN i % 3 = 0 THEN 'dev-echo' ELSE 'other-model' END, 'dev', false, false,
      CASE WHEN i % 50 = 0 THEN 429 ELSE 200 END, 100 + i % 900, 0, 20 + i % 300, 0, true,
      false, 1000, false, (i % 1000) * 7, 'user-' || (i % 10000)
    FROM generate_series(1, ${events}) i`);
  for (let i = 0; i < 200; i += 1) {
    pg.query('SELECT tollgate_advance_usage_rollup(2000)');
    if (pg.value(`SELECT watermark >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint
        FROM usage_rollup_state`) === 't') break;
  }
  pg.query('VACUUM ANALYZE usage_events');
  console.error(`console-bench: ${events} events written and rolled up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const full = await measure(page, s.adminUrl, `${events} events`);

  console.log(JSON.stringify({
    events, runs,
    overview_24h_hourly_ms: Math.round(full['24h_hourly']),
    overview_30d_daily_ms: Math.round(full['30d_daily']),
    empty_24h_hourly_ms: Math.round(empty['24h_hourly']),
    empty_30d_daily_ms: Math.round(empty['30d_daily']),
    ratio_24h_hourly: Number((full['24h_hourly'] / empty['24h_hourly']).toFixed(2)),
    ratio_30d_daily: Number((full['30d_daily'] / empty['30d_daily']).toFixed(2)),
    settled_24h_hourly_ms: Math.round(full['24h_hourly_settled']),
    settled_30d_daily_ms: Math.round(full['30d_daily_settled']),
    empty_settled_24h_hourly_ms: Math.round(empty['24h_hourly_settled']),
    empty_settled_30d_daily_ms: Math.round(empty['30d_daily_settled']),
  }));
} finally {
  await browser?.close();
  await s?.stop();
  pg.stop();
}
