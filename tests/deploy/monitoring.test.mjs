// deploy/prometheus and deploy/grafana against the real tools and the real processes: promtool
// checks the scrape config and the rules and runs the rules' unit tests; every PromQL query of
// the Grafana dashboard is checked by promtool (as recording rules) and may name only metrics
// that a running gateway (with PostgreSQL and Redis) or tollgate-infer exports on /metrics; the
// dashboard's SQL panels run against a migrated PostgreSQL as the finance role.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, freePort, startProcess, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { budgetConfig } from '../lib/budgets.mjs';
import { makeTenant, chat } from '../lib/ledger.mjs';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const prom = path.join(root, 'deploy/prometheus');
const dashboard = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/dashboards/tollgate.json'), 'utf8'));

function promtool(...args) {
  return execFileSync('promtool', args, { cwd: prom, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Metric families named in a /metrics page (`# TYPE name kind`), with the series names each
// kind makes (a histogram's _bucket, _sum and _count).
function exportedSeries(text) {
  const names = new Set();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (!m) continue;
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1] + s);
    else names.add(m[1]);
  }
  return names;
}

// Metric names in a PromQL expression: identifiers that are not inside a label matcher
// ({...}), a string, or a function call or keyword position.
function metricNames(expr) {
  const stripped = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  const found = new Set();
  const re = /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?/g;
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
    // Aggregation operators may be followed by `by (...)` before their parenthesis.
    'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group']);
  let m;
  while ((m = re.exec(stripped))) {
    const [, name, call] = m;
    if (call || keywords.has(name)) continue;
    // Label names inside by (...) / without (...) lists.
    const before = stripped.slice(0, m.index);
    if (/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$/.test(before)) continue;
    // Durations like [5m] and numbers are not identifiers that start with a letter... except
    // the unit letters: skip anything inside [...].
    if (/\[[^\]]*$/.test(before)) continue;
    found.add(name);
  }
  return found;
}

// Grafana's variables and macros, replaced by what they stand for at query time.
const promMacros = (q) => q.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '6h')
  .replaceAll('$__interval', '1m').replaceAll('$instance', '.*');
const sqlMacros = (q) => q
  .replace(/\$__timeFilter\(([^)]+)\)/g, "$1 BETWEEN now() - interval '6 hours' AND now()")
  .replace(/\$__timeGroupAlias\(([^,]+),\s*'1h'\)/g, "date_trunc('hour', $1) AS time");

function dashboardTargets(kind) {
  const out = [];
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) {
      const ds = t.datasource?.type ?? p.datasource?.type;
      if (ds === kind) out.push({ panel: p.title, ...t });
    }
  }
  return out;
}

describe('Prometheus configuration and rules (promtool)', () => {
  test('the scrape config and the rule file pass promtool check', () => {
    assert.match(promtool('check', 'config', 'prometheus.yml'), /SUCCESS: prometheus.yml is valid/);
    const rules = promtool('check', 'rules', 'tollgate.rules.yml');
    assert.match(rules, /SUCCESS: (\d+) rules found/);
    assert.ok(Number(/SUCCESS: (\d+) rules found/.exec(rules)[1]) >= 15);
  });

  test('the rules pass their unit tests, and a wrong expectation fails them', () => {
    assert.match(promtool('test', 'rules', 'tollgate.rules.test.yml'), /SUCCESS/);
    // The unit tests can fail: the same file with one alert's expected annotation changed.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-promtest-'));
    writeFileSync(path.join(dir, 'tollgate.rules.yml'), readFileSync(path.join(prom, 'tollgate.rules.yml')));
    const tests = readFileSync(path.join(prom, 'tollgate.rules.test.yml'), 'utf8');
    assert.ok(tests.includes('cannot reach Redis'));
    writeFileSync(path.join(dir, 't.yml'), tests.replace('cannot reach Redis', 'reaches Redis'));
    assert.throws(() => execFileSync('promtool', ['test', 'rules', 't.yml'], { cwd: dir, stdio: 'pipe' }));
  });

  test('every alert in the rule file has a unit test', () => {
    const rules = readFileSync(path.join(prom, 'tollgate.rules.yml'), 'utf8');
    const tests = readFileSync(path.join(prom, 'tollgate.rules.test.yml'), 'utf8');
    const alerts = [...rules.matchAll(/- alert: (\S+)/g)].map((m) => m[1]);
    assert.ok(alerts.length >= 12, alerts.join());
    for (const a of ['TollgateUpstreamErrors', 'TollgateLedgerLag', 'TollgateLedgerSpoolGrowing', 'TollgateBudgetSettleFailures',
      'TollgateRedisUnreachable', 'TollgateHigh5xxRate', 'TollgateLatencySLOFastBurn', 'TollgateLatencySLOSlowBurn']) {
      assert.ok(alerts.includes(a), a);
    }
    for (const a of alerts) assert.match(tests, new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${a} is never shown firing`);
  });
});

test('the dashboard file is what scripts/gen_grafana_dashboard.py writes', () => {
  const made = execFileSync('python3', [path.join(root, 'scripts/gen_grafana_dashboard.py'), '--stdout'], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(made), dashboard);
  // Provisioning names the data sources the panels use, by uid.
  const sources = readFileSync(path.join(root, 'deploy/grafana/provisioning/datasources/tollgate.yml'), 'utf8');
  for (const uid of new Set(dashboard.panels.filter((p) => p.datasource).map((p) => p.datasource.uid))) {
    assert.match(sources, new RegExp(`uid: ${uid}\\n`));
  }
});

describe('metric names in the rules and the dashboard are exported by the running processes', () => {
  let pg;
  let redis;
  let s;
  let infer;
  let exported;
  let gatewayPage;
  let dir;
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-monitoring-'));
    s = await startStack({ config: budgetConfig(pg, redis, dir) });
    const model = path.join(dir, 'tiny-llama');
    const inferBin = path.join(binDir, 'tollgate-infer');
    execFileSync(inferBin, ['make-model', '--preset', 'tiny', '--tokenizer',
      path.join(root, '.cache/tokenizers/llama3.tokenizer.json'), '--out', model]);
    const port = await freePort();
    infer = startProcess(inferBin, ['serve', '--model', model, '--name', 'tiny-llama', '--listen', `127.0.0.1:${port}`]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => ({ ok: false }))).ok,
      { what: 'tollgate-infer ready' });
    // One request through the ledger, for the SQL panels below.
    const t = await makeTenant(s.adminUrl, 'Grafana tenant');
    assert.equal((await chat(s.url, t.key, 'a request for the dashboard')).status, 200);
    await waitFor(() => pg.value('SELECT count(*) FROM usage_events') === '1', { what: 'the ledger row' });
    const gw = await (await fetch(`${s.adminUrl}/metrics`)).text();
    gatewayPage = gw;
    const eng = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    exported = new Set([...exportedSeries(gw), ...exportedSeries(eng), 'up']);
    // The page of the gateway is the whole registry: budgets, ledger, upstream endpoints.
    for (const n of ['tollgate_budget_reservations_total', 'tollgate_ledger_spool_bytes',
      'tollgate_upstream_endpoint_healthy', 'tollgate_http_request_duration_seconds_bucket',
      'tollgate_infer_kv_blocks_total']) assert.ok(exported.has(n), n);
  });
  after(async () => {
    await s?.stop();
    await infer?.stop();
    redis?.stop();
    pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });  // the generated model
  });

  test('tollgate_build_info names the allocator the process runs on; a build without sanitizers runs on tcmalloc', () => {
    const allocator = /^tollgate_build_info\{version="[^"]+",allocator="([a-z]+)"\} 1$/m.exec(gatewayPage)?.[1];
    const maps = readFileSync(`/proc/${s.gateway.child.pid}/maps`, 'utf8');
    assert.equal(allocator === 'tcmalloc', maps.includes('libtcmalloc_minimal'), `${allocator}, and the mapped libraries`);
    assert.equal(allocator === 'sanitizer', maps.includes('libasan'), `${allocator}, and the mapped libraries`);
    if (!maps.includes('libasan')) assert.equal(allocator, 'tcmalloc', 'the release build links libtcmalloc-minimal4 (gateway/CMakeLists.txt)');
  });

  test('the name extraction sees through labels, functions and by() lists', () => {
    assert.deepEqual([...metricNames('sum by (route, le) (rate(a_total{le="10",x=~"$i"}[5m])) / on (x) b > 0.5 and c')].sort(),
      ['a_total', 'b', 'c']);
  });

  test('the alerting and recording rules name only exported metrics', () => {
    const text = readFileSync(path.join(prom, 'tollgate.rules.yml'), 'utf8');
    const recorded = new Set([...text.matchAll(/- record: (\S+)/g)].map((m) => m[1]));
    const exprs = [...text.matchAll(/expr: (?:\|\n((?:\s{10,}.*\n)+)|(.*)\n)/g)].map((m) => m[1] ?? m[2]);
    assert.ok(exprs.length >= 20, String(exprs.length));
    for (const e of exprs) {
      for (const n of metricNames(e)) {
        assert.ok(exported.has(n) || recorded.has(n), `${n} (in ${e.trim()}) is not exported`);
      }
    }
  });

  test('every PromQL query of the dashboard passes promtool and names only exported metrics', () => {
    const targets = dashboardTargets('prometheus');
    assert.ok(targets.length >= 40, String(targets.length));
    const seen = new Set();
    const lines = ['groups:', '  - name: dashboard', '    rules:'];
    targets.forEach((t, i) => {
      const expr = promMacros(t.expr);
      assert.ok(!expr.includes('$'), `${t.panel}: an unknown variable in ${t.expr}`);
      for (const n of metricNames(expr)) {
        assert.ok(exported.has(n), `${t.panel}: ${n} is not exported`);
        seen.add(n);
      }
      lines.push(`      - record: dashboard:q${i}`, `        expr: ${JSON.stringify(expr)}`);
    });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-dash-'));
    writeFileSync(path.join(dir, 'dashboard.rules.yml'), lines.join('\n') + '\n');
    const out = execFileSync('promtool', ['check', 'rules', 'dashboard.rules.yml'], { cwd: dir, encoding: 'utf8' });
    assert.match(out, new RegExp(`SUCCESS: ${targets.length} rules found`));
    // A broken query is caught by the same check.
    writeFileSync(path.join(dir, 'bad.rules.yml'), 'groups:\n  - name: d\n    rules:\n      - record: d:q\n        expr: "sum by (x (rate(y[1m]))"\n');
    assert.throws(() => execFileSync('promtool', ['check', 'rules', 'bad.rules.yml'], { cwd: dir, stdio: 'pipe' }));
    // The template variable's query names an exported metric too.
    for (const v of dashboard.templating.list) {
      const m = /label_values\((\w+),/.exec(v.definition);
      assert.ok(m && exported.has(m[1]), v.definition);
    }
    // Every family the gateway exports for operators is on the dashboard (the infer families too).
    const families = [...exported].filter((n) => n.startsWith('tollgate_') && n !== 'tollgate_build_info'
      && !/_(sum|count)$/.test(n));
    const missing = families.filter((n) => !seen.has(n) && !seen.has(n.replace(/_bucket$/, '_count')));
    assert.deepEqual(missing, [], 'metrics on no panel');
  });

  test('the SQL panels run on the finance views as the finance role', () => {
    const targets = dashboardTargets('postgres');
    assert.ok(targets.length >= 2);
    const results = targets.map((t) => {
      const sql = sqlMacros(t.rawSql);
      assert.ok(!sql.includes('$'), `${t.panel}: an unknown macro in ${t.rawSql}`);
      return pg.query(sql, { role: 'tollgate_finance' });  // throws on an error (ON_ERROR_STOP)
    });
    // The tenant panel shows the tenant that made the one request (ledgerRequest, below).
    const tenantRows = results[targets.findIndex((t) => /per tenant/.test(t.panel))];
    assert.equal(tenantRows.length, 1);
    assert.equal(tenantRows[0][0], 'Grafana tenant');
    assert.equal(tenantRows[0][2], '1');
    assert.ok(Number(tenantRows[0][3]) > 0);
    // The role really is limited: the base table is refused.
    assert.throws(() => pg.query('SELECT count(*) FROM public.usage_events', { role: 'tollgate_finance' }));
  });
});
