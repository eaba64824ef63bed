// Full metering benchmark (make bench, full part): Tollgate with everything a deployment turns
// on (API keys in PostgreSQL, the ledger, Redis budgets on tokens per month and requests per
// minute, a price book on the tenant's plan) against nginx proxy_pass, in one run on the same
// upstream, at saturation and at a fixed rate. A second gateway, the same but without budgets,
// shows what budgets cost. Prints throughput ratios, the latency each proxy adds over direct
// and the CPU microseconds per request of every process (from /proc), as medians, with the
// proxies' own split into user and system time.
//   node tests/bench/full_bench.mjs [--rounds N] [--seconds S] [--base-bin DIR]
// --base-bin: also measure DIR/tollgate (another build, e.g. the commit before a change) as "full
// (base)", with the full configuration, in the same interleaved rounds. Each round rotates the
// order of the targets; give as many rounds as targets (5 with --base-bin) to put each in every
// place once.
import { mkdtempSync, chmodSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant } from '../lib/ledger.mjs';
import {
  gatewayEnv, startNginx, wrkScript, runWrk, cpuOf, cpuOfTree, cpuSplitOf, withChildren, postmasterPid, redisPid,
  median,
} from '../lib/bench.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const rounds = opt('--rounds', 3);
const seconds = opt('--seconds', 8);
const baseBin = args.includes('--base-bin') ? args[args.indexOf('--base-bin') + 1] : null;
const threads = 2;  // Tollgate I/O threads and nginx workers alike

const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-full-bench-'));
chmodSync(dir, 0o777);
const pg = await startPostgres();
const redis = await startRedis();
// A deployment's settings, not the tests' short ones: keys trusted for the default 2 s.
const db = (name) => {
  const c = dbConfig(pg, path.join(dir, name));
  return { ...c, auth: { ...c.auth, key_cache_ttl_ms: 2000 }, ledger: { ...c.ledger, flush_interval_ms: 50 } };
};
const full = await startStack({ config: { ...db('full'), budgets: { redis: redis.address }, server: { threads } },
  env: gatewayEnv, gatewayDefaults: true });
const nobudgets = await startStack({ config: { ...db('nobudgets'), server: { threads } }, upstreamPort: full.upstreamPort,
  env: gatewayEnv, gatewayDefaults: true });
await nobudgets.upstream.stop();  // both gateways use the first stack's upstream
const base = baseBin === null ? null : await startStack({
  config: { ...db('base'), budgets: { redis: redis.address }, server: { threads } },
  upstreamPort: full.upstreamPort, gatewayBin: path.join(baseBin, 'tollgate'), env: gatewayEnv,
});
if (base !== null) await base.upstream.stop();
const nginxPort = await freePort();
const nginx = startNginx(dir, { port: nginxPort, upstream: `127.0.0.1:${full.upstreamPort}`, workers: threads });

async function stopAll() {
  await Promise.all([full.stop(), nobudgets.gateway.stop(), base?.gateway.stop(), nginx.stop('SIGQUIT')]);
  redis.stop();
  pg.stop();
}

const t = await makeTenant(full.adminUrl, 'Bench');
try {
  for (const body of [
    { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 1e15 },
    { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1e12 },
  ]) {
    const r = await api(full.adminUrl, 'POST', '/admin/v1/budgets', { body });
    if (r.status !== 201) throw new Error(r.text);
  }
  const book = await api(full.adminUrl, 'POST', '/admin/v1/price_books', {
    body: { name: 'Bench', currency: 'USD', tier_mode: 'graduated',
      models: { 'dev-echo': { input: [{ rate: '150000' }], output: [{ rate: '600000' }] } } },
  });
  if (book.status !== 201) throw new Error(book.text);
  const plan = await api(full.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } });
  if (plan.status !== 200) throw new Error(plan.text);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${nginxPort}/v1/models`)).ok, { what: 'nginx ready' });
} catch (e) {
  console.error(e.message, nginx.output());
  await stopAll();
  process.exit(1);
}

const body = JSON.stringify({ model: 'dev-echo', messages: [{ role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Summarize the benefits of keep-alive connections in one line.' }], max_tokens: 16 });
const auth = { Authorization: `Bearer ${t.key}` };
writeFileSync(path.join(dir, 'saturate.lua'), wrkScript(body, 0, auth));
writeFileSync(path.join(dir, 'fixed.lua'), wrkScript(body, 10, auth));
const modes = {
  fixed: ['-t1', '-c10', `-d${seconds}s`, '--latency', '-s', path.join(dir, 'fixed.lua')],  // ~1,000 req/s
  saturation: ['-t1', '-c64', `-d${seconds}s`, '--latency', '-s', path.join(dir, 'saturate.lua')],
};

// Every process whose CPU is counted, and what each target runs through.
const pids = {
  upstream: () => cpuOf(full.upstream.child.pid),
  nginx: () => cpuOfTree(nginx.child.pid),
  redis: () => cpuOf(redisPid(redis)),
  postgres: () => cpuOfTree(postmasterPid(pg)),
};
const targets = {
  direct: { url: full.upstreamUrl, gateway: null },
  nginx: { url: `http://127.0.0.1:${nginxPort}`, gateway: null },
  full: { url: full.url, gateway: full.gateway },
  'no budgets': { url: nobudgets.url, gateway: nobudgets.gateway },
  ...(base === null ? {} : { 'full (base)': { url: base.url, gateway: base.gateway } }),
};
const processes = ['gateway', 'nginx', 'upstream', 'redis', 'postgres'];
// The proxy's own processes (the gateway, or nginx's master and workers), for the user/system split.
const proxyPids = (target) => (target.gateway ? [target.gateway.child.pid]
  : target === targets.nginx ? withChildren(nginx.child.pid) : []);
function snapshot(target) {
  const s = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, f()]));
  s.gateway = target.gateway ? cpuOf(target.gateway.child.pid) : 0;
  const split = proxyPids(target).map(cpuSplitOf);
  s.proxyUser = split.reduce((n, x) => n + x.user, 0);
  s.proxySystem = split.reduce((n, x) => n + x.system, 0);
  return s;
}
function measure(target, mode) {
  const before = snapshot(target);
  const r = runWrk(modes[mode], `${target.url}/v1/chat/completions`);
  const after = snapshot(target);
  r.cpuUs = Object.fromEntries([...processes, 'proxyUser', 'proxySystem']
    .map((k) => [k, ((after[k] - before[k]) * 1e6) / r.requests]));
  return r;
}

const results = {};
try {
  for (const target of Object.values(targets)) measure(target, 'fixed');  // warm caches and pools
  for (const mode of Object.keys(modes)) {
    results[mode] = Object.fromEntries(Object.keys(targets).map((n) => [n, []]));
    // Each round starts one target later, so that no target always runs in the same place
    // (the target run after nginx was measured about 10 % slower than the same binary run last).
    const names = Object.keys(targets);
    for (let r = 0; r < rounds; r++) {
      const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)];
      for (const name of order) results[mode][name].push(measure(targets[name], mode));
    }
  }
} finally {
  await stopAll();
}

console.log(`\nFull metering benchmark: ${rounds} interleaved rounds x ${seconds} s per target and mode; medians.`);
console.log(`Machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ` +
  `Tollgate ${threads} I/O threads (API key in PostgreSQL, ledger, price book; "full" also Redis budgets: ` +
  `tokens month + requests minute), nginx ${threads} workers, upstream 1 thread, wrk 1 thread.`);
for (const [mode, by] of Object.entries(results)) {
  const m = (name, key) => median(by[name].map((x) => x[key]));
  const d50 = m('direct', 'p50');
  const d99 = m('direct', 'p99');
  console.log(`\n${mode === 'fixed' ? 'Fixed rate (10 connections, 10 ms think time)' : 'Saturation (64 connections)'}`);
  console.log('target         req/s   p50 us   p99 us  added p50  added p99');
  for (const name of Object.keys(targets)) {
    const p50 = m(name, 'p50');
    const p99 = m(name, 'p99');
    console.log(`${name.padEnd(12)} ${m(name, 'rps').toFixed(0).padStart(7)} ${p50.toFixed(0).padStart(8)} ${p99.toFixed(0).padStart(8)}` +
      (name === 'direct' ? '' : ` ${(p50 - d50).toFixed(0).padStart(10)} ${(p99 - d99).toFixed(0).padStart(10)}`));
  }
  const added = (name, p, d) => m(name, p) - d;
  const ratioOf = (name, p, d) => (added('nginx', p, d) > 0
    ? (added(name, p, d) / added('nginx', p, d)).toFixed(2) : 'n/a (nginx added <= 0)');
  for (const name of Object.keys(targets).filter((n) => n !== 'direct' && n !== 'nginx')) {
    console.log(`${name}/nginx: throughput ${(m(name, 'rps') / m('nginx', 'rps')).toFixed(2)}` +
      `${mode === 'saturation' && name === 'full' ? ' (goal >= 0.70)' : ''}, ` +
      `added p50 ${ratioOf(name, 'p50', d50)}, added p99 ${ratioOf(name, 'p99', d99)}` +
      `${mode === 'fixed' && name === 'full' ? ' (goal <= 1.50)' : ''}`);
  }
  console.log('CPU us per request   gateway   nginx  upstream  Redis  PostgreSQL   total');
  for (const name of Object.keys(targets)) {
    const c = (k) => median(by[name].map((x) => x.cpuUs[k]));
    const used = processes.filter((k) => k !== 'gateway' || by[name][0].cpuUs.gateway > 0);
    const total = used.reduce((n, k) => n + c(k), 0);
    console.log(`${name.padEnd(18)} ${processes.map((k, i) => c(k).toFixed(1).padStart([9, 7, 9, 6, 11][i])).join(' ')} ${total.toFixed(1).padStart(7)}`);
  }
  const c = (name, k) => median(by[name].map((x) => x.cpuUs[k]));
  console.log('Proxy CPU us per request, user / system: ' + Object.keys(targets).filter((n) => n !== 'direct')
    .map((n) => `${n} ${c(n, 'proxyUser').toFixed(1)} / ${c(n, 'proxySystem').toFixed(1)}`).join(', '));
  console.log(`Gateway CPU per request / nginx's: full ${(c('full', 'gateway') / c('nginx', 'nginx')).toFixed(2)}` +
    `${mode === 'saturation' ? ' (goal <= 1.50)' : ''}, without budgets ${(c('no budgets', 'gateway') / c('nginx', 'nginx')).toFixed(2)}` +
    (base === null ? '' : `, full (base) ${(c('full (base)', 'gateway') / c('nginx', 'nginx')).toFixed(2)}`));
}
