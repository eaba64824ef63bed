// Budgets benchmark (make bench): what enforcing budgets costs.
//  1. Gateway: wrk against two gateways that differ only in budgets (both authenticate API keys
//     and write the ledger to the same PostgreSQL; one also reserves and settles in Redis: a
//     tokens-per-month budget and a requests-per-minute limit on the tenant, served from budget
//     leases; a third, "holds", has the same budgets with leases off), interleaved rounds
//     at a fixed rate and at saturation. Prints requests/s, the ratio on/off (goal >= 0.80) and
//     the p50/p99 latency budgets add, and at saturation the CPU time per request spent by the
//     gateway, the upstream, Redis and PostgreSQL (from /proc), to show where the cost lies, and
//     the Redis commands per request (INFO: total_commands_processed, which counts the commands
//     that scripts run too, the same from commandstats, and the script calls among them).
//  2. Redis: reserve+settle pairs/s through the budget engine (tollgate-budget-bench) against
//     redis-benchmark running EVAL "return 1" on the same Redis, same concurrency.
//   node tests/bench/budgets_bench.mjs [--rounds N] [--seconds S] [--base-bin DIR]
// --base-bin: also measure DIR/tollgate (another build, e.g. the commit before a change) as "on
// (base)", configured as "on", in the same interleaved rounds (measured last in each round, so
// that its leases' last flushes fall into "off"'s run, whose Redis commands are not reported).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, startStack } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant } from '../lib/ledger.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const rounds = opt('--rounds', 3);
const seconds = opt('--seconds', 8);
const baseBin = args.includes('--base-bin') ? args[args.indexOf('--base-bin') + 1] : null;

const pg = await startPostgres();
const redis = await startRedis();
const dir = path.join(os.tmpdir(), `tollgate-budgets-bench-${process.pid}`);
const off = await startStack({ config: { ...dbConfig(pg, path.join(dir, 'off')) }, gatewayDefaults: true });
const on = await startStack({
  config: { ...dbConfig(pg, path.join(dir, 'on')), budgets: { redis: redis.address } },
  upstreamPort: off.upstreamPort, gatewayDefaults: true,
});
// The same budgets with leases off: a reserve and a settle script call per request.
const holds = await startStack({
  config: { ...dbConfig(pg, path.join(dir, 'holds')), budgets: { redis: redis.address, leases: false } },
  upstreamPort: off.upstreamPort, gatewayDefaults: true,
});
const base = baseBin === null ? null : await startStack({
  config: { ...dbConfig(pg, path.join(dir, 'base')), budgets: { redis: redis.address } },
  upstreamPort: off.upstreamPort, gatewayBin: path.join(baseBin, 'tollgate'),
});
if (base !== null) await base.upstream.stop();
const t = await makeTenant(off.adminUrl, 'Bench');
for (const body of [
  { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 1e15 },
  { tenant_id: t.tenant, metric: 'requests', window: 'minute', limit: 1e12 },
]) {
  const r = await api(off.adminUrl, 'POST', '/admin/v1/budgets', { body });
  if (r.status !== 201) throw new Error(r.text);
}

const body = JSON.stringify({ model: 'dev-echo', messages: [{ role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Summarize the benefits of keep-alive connections in one line.' }], max_tokens: 16 });
const script = (delayMs) => `wrk.method = "POST"
wrk.body = ${JSON.stringify(body)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${t.key}"
${delayMs > 0 ? `function delay() return ${delayMs} end` : ''}
`;
writeFileSync(path.join(off.dir, 'saturate.lua'), script(0));
writeFileSync(path.join(off.dir, 'fixed.lua'), script(10));
const modes = {
  fixed: ['-t1', '-c10', `-d${seconds}s`, '--latency', '-s', path.join(off.dir, 'fixed.lua')],
  saturation: ['-t1', '-c64', `-d${seconds}s`, '--latency', '-s', path.join(off.dir, 'saturate.lua')],
};
const toUs = (v, unit) => Number(v) * ({ us: 1, ms: 1000, s: 1e6 }[unit] ?? NaN);
// Redis's command counts so far: commands clients sent (total_commands_processed), script
// calls among them, and every command run, those inside scripts included (INFO commandstats).
function redisStats() {
  const info = redis.cli('INFO', 'all');
  const num = (re) => Number((re.exec(info) ?? [0, 0])[1]);
  let all = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) all += Number(m[1]);
  return { client: num(/total_commands_processed:(\d+)/), scripts: num(/cmdstat_evalsha:calls=(\d+)/) +
    num(/cmdstat_eval:calls=(\d+)/), all };
}
function runWrk(stack, mode) {
  const url = stack.url;
  const redisBefore = redisStats();
  const before = cpuSnapshot(stack);
  const out = spawnSync('wrk', [...modes[mode], `${url}/v1/chat/completions`], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  const text = out.stdout;
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (errors) throw new Error(`${url}: ${errors[1]} non-2xx responses`);
  const pct = (p) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(text); return toUs(m[1], m[2]); };
  const after = cpuSnapshot(stack);
  const requests = Number(/(\d+) requests in/.exec(text)[1]);
  const cpuUs = Object.fromEntries(Object.keys(after).map((k) => [k, ((after[k] - before[k]) * 1e6) / requests]));
  const redisAfter = redisStats();
  const redisPerRequest = Object.fromEntries(Object.keys(redisAfter).map((k) => [k, (redisAfter[k] - redisBefore[k]) / requests]));
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)[1]), p50: pct(50), p99: pct(99), cpuUs, redisPerRequest };
}
// CPU seconds (user + system) used so far by each process group of interest.
const ticksPerSecond = 100;
function cpuOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch { return 0; }
}
function postgresPids() {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try { return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'postgres'; } catch { return false; }
  });
}
function cpuSnapshot(stack) {
  const redisPid = Number(readFileSync(path.join(redis.dir, 'redis.pid'), 'utf8'));
  return {
    gateway: cpuOf(stack.gateway.child.pid),
    upstream: cpuOf(off.upstream.child.pid),  // both gateways forward to this one
    redis: cpuOf(redisPid),
    postgres: postgresPids().reduce((sum, p) => sum + cpuOf(p), 0),
  };
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

let engine;
let baseline;
const results = {};
try {
  const targets = { off, on, holds, ...(base === null ? {} : { 'on (base)': base }) };
  for (const stack of Object.values(targets)) runWrk(stack, 'fixed');  // warm caches and connections
  for (const mode of Object.keys(modes)) {
    results[mode] = Object.fromEntries(Object.keys(targets).map((n) => [n, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, stack] of Object.entries(targets)) results[mode][name].push(runWrk(stack, mode));
    }
  }
  // Redis: the engine's pairs against a trivial script, 50 concurrent either way.
  const pairs = [];
  const evals = [];
  for (let r = 0; r < rounds; r++) {
    const e = spawnSync(path.join(binDir, 'tollgate-budget-bench'),
      ['--port', String(redis.port), '--seconds', '4', '--concurrency', '50'], { encoding: 'utf8' });
    if (e.status !== 0) throw new Error(`tollgate-budget-bench failed: ${e.stderr}`);
    pairs.push(Number(/pairs_per_s=(\d+)/.exec(e.stdout)[1]));
    const b = spawnSync('redis-benchmark', ['-p', String(redis.port), '-n', '200000', '-c', '50', '-q', 'EVAL', 'return 1', '0'],
      { encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`redis-benchmark failed: ${b.stderr}`);
    evals.push(Number(/([\d.]+) requests per second/.exec(b.stdout)[1]));
  }
  engine = median(pairs);
  baseline = median(evals);
} finally {
  await on.stop();
  await holds.stop();
  await base?.gateway.stop();
  await off.stop();
  redis.stop();
  pg.stop();
}

console.log(`\nBudgets benchmark: ${rounds} interleaved rounds x ${seconds} s per gateway and mode; medians.`);
console.log(`Machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ` +
  'each gateway 2 I/O threads, with API keys and the PostgreSQL ledger; wrk 1 thread.');
for (const [mode, by] of Object.entries(results)) {
  const m = (name, key) => median(by[name].map((x) => x[key]));
  console.log(`\n${mode === 'fixed' ? 'Fixed rate (10 connections, 10 ms think time)' : 'Saturation (64 connections)'}`);
  const names = Object.keys(by);
  console.log('budgets     req/s     p50 us   p99 us');
  for (const name of names) {
    console.log(`${name.padEnd(11)} ${m(name, 'rps').toFixed(0).padStart(7)} ${m(name, 'p50').toFixed(0).padStart(8)} ${m(name, 'p99').toFixed(0).padStart(8)}`);
  }
  console.log(`Budgets on/off throughput ratio: ${(m('on', 'rps') / m('off', 'rps')).toFixed(2)} (goal >= 0.90); ` +
    `added p50 ${(m('on', 'p50') - m('off', 'p50')).toFixed(0)} us, added p99 ${(m('on', 'p99') - m('off', 'p99')).toFixed(0)} us`);
  console.log(`Per-request holds (leases off)/off: ${(m('holds', 'rps') / m('off', 'rps')).toFixed(2)}`);
  if (by['on (base)']) {
    console.log(`On (base)/off throughput ratio: ${(m('on (base)', 'rps') / m('off', 'rps')).toFixed(2)}; ` +
      `added p50 ${(m('on (base)', 'p50') - m('off', 'p50')).toFixed(0)} us, added p99 ${(m('on (base)', 'p99') - m('off', 'p99')).toFixed(0)} us`);
  }
  if (mode === 'saturation') {
    console.log('CPU us per request   gateway  upstream  Redis  PostgreSQL   total');
    for (const name of names) {
      const c = (k) => median(by[name].map((x) => x.cpuUs[k]));
      const total = ['gateway', 'upstream', 'redis', 'postgres'].reduce((n, k) => n + c(k), 0);
      console.log(`budgets ${name.padEnd(12)} ${c('gateway').toFixed(0).padStart(7)} ${c('upstream').toFixed(0).padStart(9)} ` +
        `${c('redis').toFixed(0).padStart(6)} ${c('postgres').toFixed(0).padStart(11)} ${total.toFixed(0).padStart(7)}`);
    }
  }
  for (const name of names.filter((n) => n !== 'off')) {
    const r = (k) => median(by[name].map((x) => x.redisPerRequest[k]));
    console.log(`Redis commands per request, budgets ${name}: ${r('client').toFixed(4)} ` +
      `(total_commands_processed, which counts the commands scripts run; commandstats: ${r('all').toFixed(4)}), ` +
      `of them script calls ${r('scripts').toFixed(4)}${name === 'on' ? '; goal <= 0.1' : ''}`);
  }
}
console.log(`\nRedis: reserve+settle ${engine.toFixed(0)} pairs/s (${(2 * engine).toFixed(0)} script calls/s) vs ` +
  `redis-benchmark EVAL "return 1" ${baseline.toFixed(0)}/s, 50 concurrent each`);
console.log(`Script calls ratio (engine / trivial script): ${((2 * engine) / baseline).toFixed(2)}; ` +
  `pairs / trivial calls: ${(engine / baseline).toFixed(2)}`);
