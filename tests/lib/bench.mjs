// What the gateway benchmarks share: nginx as a plain proxy_pass baseline, one wrk run parsed
// (requests/s, p50, p99), and the CPU time (user + system, from /proc) of a process and of the
// processes it started, so a benchmark can print CPU microseconds per request per process.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startProcess } from './harness.mjs';

// nginx 1.22 as a reverse proxy in front of `upstream` (host:port): upstream keep-alive pool,
// proxy_buffering off, access log on. `extraLocation` is added to the location block.
export function startNginx(dir, { port, upstream, workers, scheme = 'http', extraLocation = '' }) {
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/nginx-access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_body_buffer_size 1m;
  upstream dev { server ${upstream}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${scheme}://dev;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;${extraLocation}
    }
  }
}`);
  return startProcess('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;']);
}

// A wrk Lua script posting `body` as JSON; `delayMs` > 0 waits that long between a connection's
// requests (the fixed-rate mode); `headers` are added to every request.
export function wrkScript(body, delayMs, headers = {}) {
  const extra = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}\n`);
  return `wrk.method = "POST"
wrk.body = ${JSON.stringify(body)}
wrk.headers["Content-Type"] = "application/json"
${extra.join('')}${delayMs > 0 ? `function delay() return ${delayMs} end` : ''}
`;
}

const toUs = (v, unit) => Number(v) * ({ us: 1, ms: 1000, s: 1e6 }[unit] ?? NaN);

// One wrk run: { rps, p50, p99, requests }; throws on any non-2xx answer.
export function runWrk(wrkArgs, url) {
  const out = spawnSync('wrk', [...wrkArgs, url], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  const text = out.stdout;
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (errors) throw new Error(`${url}: ${errors[1]} non-2xx responses`);
  const pct = (p) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(text); return toUs(m[1], m[2]); };
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)[1]),
    p50: pct(50),
    p99: pct(99),
    requests: Number(/(\d+) requests in/.exec(text)[1]),
  };
}

const ticksPerSecond = 100;

function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch { return null; }
}

// CPU seconds used so far by process `pid` (all its threads), split: { user, system }.
export function cpuSplitOf(pid) {
  const f = statFields(pid);
  return f ? { user: Number(f[11]) / ticksPerSecond, system: Number(f[12]) / ticksPerSecond }
    : { user: 0, system: 0 };
}

// CPU seconds (user + system) used so far by process `pid`.
export function cpuOf(pid) {
  const { user, system } = cpuSplitOf(pid);
  return user + system;
}

// `pid` and its direct children (nginx's workers, PostgreSQL's backends).
export function withChildren(pid) {
  const kids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    const f = statFields(d);
    return f !== null && Number(f[1]) === pid;
  });
  return [pid, ...kids.map(Number)];
}

// CPU seconds of a process and its children. Children that exited meanwhile are not counted:
// the benchmarks' children (workers, backends) live as long as the run.
export function cpuOfTree(pid) {
  return withChildren(pid).reduce((sum, p) => sum + cpuOf(p), 0);
}

// The postmaster's pid of a PostgreSQL started by tests/lib/postgres.mjs.
export function postmasterPid(pg) {
  return Number(readFileSync(path.join(pg.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

export function redisPid(redis) {
  return Number(readFileSync(path.join(redis.dir, 'redis.pid'), 'utf8'));
}

// The gateway's environment in the benchmarks, as deployments run it (deploy/README.md, "Memory
// allocator"): glibc's per-thread cache of freed chunks, 256 per size instead of 7.
export const gatewayEnv = { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=256' };

export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
