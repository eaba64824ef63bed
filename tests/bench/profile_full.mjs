// Instruction counts of the full metered path: one gateway (1 I/O thread) under callgrind with
// API keys in PostgreSQL, the ledger, a price book and (unless --no-budgets) Redis budgets on
// tokens per month and requests per minute, driven by wrk (8 connections) with the benchmarks'
// chat request. Counts are zeroed after a warm-up, so the printed instructions per request are
// the steady state; the callgrind file is kept for callgrind_annotate.
//   node tests/bench/profile_full.mjs [--seconds S] [--no-budgets] [--out FILE] [--gateway-config JSON]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, freePort, sleep, startProcess, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant } from '../lib/ledger.mjs';
import { gatewayEnv, wrkScript, runWrk } from '../lib/bench.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const seconds = Number(opt('--seconds', 10));
const budgets = !args.includes('--no-budgets');
const extra = JSON.parse(opt('--gateway-config', '{}'));

const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-profile-'));
chmodSync(dir, 0o777);
const out = path.resolve(opt('--out', path.join(dir, 'callgrind.out')));
const pg = await startPostgres();
const redis = budgets ? await startRedis() : null;
const ports = { upstream: await freePort(), api: await freePort(), admin: await freePort() };
const upstream = startProcess(path.join(binDir, 'tollgate-dev-upstream'), ['--listen', `127.0.0.1:${ports.upstream}`, '--threads', '1']);
const c = dbConfig(pg, dir);
const config = {
  server: { listen: `127.0.0.1:${ports.api}`, admin_listen: `127.0.0.1:${ports.admin}`, threads: 1 },
  upstreams: { dev: { base_url: `http://127.0.0.1:${ports.upstream}/v1` } },
  models: { 'dev-echo': { upstream: 'dev' } },
  logging: { level: 'warn', usage_log: path.join(dir, 'usage.log') },
  ...c,
  auth: { ...c.auth, key_cache_ttl_ms: 2000 },
  ledger: { ...c.ledger, flush_interval_ms: 50 },
  ...(budgets ? { budgets: { redis: redis.address } } : {}),
  ...extra,
};
writeFileSync(path.join(dir, 'tollgate.json'), JSON.stringify(config));
const gateway = startProcess('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`,
  path.join(binDir, 'tollgate'), '--config', path.join(dir, 'tollgate.json')], gatewayEnv);
const adminUrl = `http://127.0.0.1:${ports.admin}`;
try {
  await waitFor(async () => (await fetch(`${adminUrl}/readyz`)).ok, { what: 'gateway ready', timeoutMs: 60000 });
  const t = await makeTenant(adminUrl, 'Profile');
  for (const body of [
    { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 1e15 },
    { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1e12 },
  ]) {
    const r = await api(adminUrl, 'POST', '/admin/v1/budgets', { body });
    if (r.status !== 201) throw new Error(r.text);
  }
  const book = await api(adminUrl, 'POST', '/admin/v1/price_books', {
    body: { name: 'Bench', currency: 'USD', tier_mode: 'graduated',
      models: { 'dev-echo': { input: [{ rate: '150000' }], output: [{ rate: '600000' }] } } },
  });
  if (book.status !== 201) throw new Error(book.text);
  const plan = await api(adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } });
  if (plan.status !== 200) throw new Error(plan.text);

  const body = JSON.stringify({ model: 'dev-echo', messages: [{ role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Summarize the benefits of keep-alive connections in one line.' }], max_tokens: 16 });
  writeFileSync(path.join(dir, 'load.lua'), wrkScript(body, 0, { Authorization: `Bearer ${t.key}` }));
  const wrk = ['-t1', '-c8', '--latency', '-s', path.join(dir, 'load.lua')];
  const url = `http://127.0.0.1:${ports.api}/v1/chat/completions`;
  runWrk([...wrk, '-d3s'], url);  // warm-up: caches, pools, the plan and budgets loaded
  await sleep(500);
  execFileSync('callgrind_control', ['-z', String(gateway.child.pid)]);
  const r = runWrk([...wrk, `-d${seconds}s`], url);
  execFileSync('callgrind_control', ['-d', String(gateway.child.pid)]);
  await sleep(500);
  // callgrind_control -d writes <out>.<n>; the last dump holds the counted part.
  const dumps = execFileSync('sh', ['-c', `ls -t ${out}.* | head -1`], { encoding: 'utf8' }).trim();
  const totals = /summary: (\d+)/.exec(readFileSync(dumps, 'utf8')) ?? /totals: (\d+)/.exec(readFileSync(dumps, 'utf8'));
  const ir = Number(totals[1]);
  console.log(`budgets ${budgets ? 'on' : 'off'}: ${r.requests} requests, ${ir} instructions, ` +
    `${Math.round(ir / r.requests)} instructions per request; profile ${dumps}`);
} finally {
  await gateway.stop();
  await upstream.stop();
  redis?.stop();
  pg.stop();
}
