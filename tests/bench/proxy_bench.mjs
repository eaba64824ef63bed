// Proxy overhead benchmark (make bench): wrk against the development upstream directly, against
// nginx as a plain proxy_pass reverse proxy, and against Tollgate, all in one run on the same
// upstream. Prints requests/s and the p50/p99 latency each proxy ADDS over direct, at a fixed
// request rate and at saturation, as medians over interleaved rounds.
// With --tls the upstream speaks https (tests/fixtures/tls_front.mjs in front of the development
// upstream, a certificate from scripts/test_certs.sh): nginx proxies with proxy_ssl (certificate
// verified, sessions reused, keep-alive), Tollgate with an https upstream; clients still use http.
//   node tests/bench/proxy_bench.mjs [--rounds N] [--seconds S] [--tls]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, freePort, startProcess, waitFor } from '../lib/harness.mjs';
import { startTlsFront, testCerts } from '../lib/tls_upstream.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const rounds = opt('--rounds', 3);
const seconds = opt('--seconds', 8);
const threads = 2;  // Tollgate I/O threads and nginx workers alike
const tls = args.includes('--tls');

const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-'));
chmodSync(dir, 0o777);
const ports = { upstream: await freePort(), nginx: await freePort(), api: await freePort(), admin: await freePort() };

const upstream = startProcess(path.join(binDir, 'tollgate-dev-upstream'), ['--listen', `127.0.0.1:${ports.upstream}`, '--threads', '1']);
const front = tls ? await startTlsFront({ targetPort: ports.upstream }) : null;
const upstreamUrl = tls ? `https://127.0.0.1:${front.port}` : `http://127.0.0.1:${ports.upstream}`;
const ca = tls ? path.join(testCerts(), 'ca.crt') : '';
const nginxUpstream = tls ? `server 127.0.0.1:${front.port}` : `server 127.0.0.1:${ports.upstream}`;
// nginx checks names, not IP addresses: the test certificate also names localhost.
const nginxTls = tls ? `
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${ca};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;` : '';

writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes ${threads};
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
  upstream dev { ${nginxUpstream}; keepalive 256; }
  server {
    listen 127.0.0.1:${ports.nginx};
    location / {
      proxy_pass ${tls ? 'https' : 'http'}://dev;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;${nginxTls}
    }
  }
}`);
const nginx = startProcess('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;']);

writeFileSync(path.join(dir, 'tollgate.json'), JSON.stringify({
  server: { listen: `127.0.0.1:${ports.api}`, admin_listen: `127.0.0.1:${ports.admin}`, threads },
  upstreams: { dev: { base_url: `${upstreamUrl}/v1`, ...(tls ? { tls_ca_file: ca } : {}) } },
  models: { 'dev-echo': { upstream: 'dev' } },
  logging: { level: 'warn', usage_log: path.join(dir, 'usage.log') },
}));
const gateway = startProcess(path.join(binDir, 'tollgate'), ['--config', path.join(dir, 'tollgate.json')]);

const targets = {
  direct: upstreamUrl,
  nginx: `http://127.0.0.1:${ports.nginx}`,
  tollgate: `http://127.0.0.1:${ports.api}`,
};

async function stopAll() {
  await Promise.all([gateway.stop(), nginx.stop('SIGQUIT'), upstream.stop(), front?.stop()]);
}

try {
  for (const [name, url] of Object.entries(targets)) {
    if (name === 'direct' && tls) continue;  // fetch does not trust the test CA; the front is up
    await waitFor(async () => (await fetch(`${url}/v1/models`)).ok, { what: `${name} ready` });
  }
} catch (e) {
  console.error(e.message, nginx.output(), gateway.output());
  await stopAll();
  process.exit(1);
}

const body = JSON.stringify({ model: 'dev-echo', messages: [{ role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Summarize the benefits of keep-alive connections in one line.' }], max_tokens: 16 });
// Fixed rate: each connection waits `delay` ms between requests (wrk's delay() hook).
const script = (delayMs) => `wrk.method = "POST"
wrk.body = ${JSON.stringify(body)}
wrk.headers["Content-Type"] = "application/json"
${delayMs > 0 ? `function delay() return ${delayMs} end` : ''}
`;
writeFileSync(path.join(dir, 'saturate.lua'), script(0));
writeFileSync(path.join(dir, 'fixed.lua'), script(10));

const modes = {
  fixed: ['-t1', '-c10', `-d${seconds}s`, '--latency', '-s', path.join(dir, 'fixed.lua')],       // ~1,000 req/s
  saturation: ['-t1', '-c64', `-d${seconds}s`, '--latency', '-s', path.join(dir, 'saturate.lua')],
};

const toUs = (v, unit) => Number(v) * ({ us: 1, ms: 1000, s: 1e6 }[unit] ?? NaN);
function runWrk(url, mode) {
  const out = spawnSync('wrk', [...modes[mode], `${url}/v1/chat/completions`], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  const text = out.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)[1]);
  const pct = (p) => { const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(text); return toUs(m[1], m[2]); };
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (errors) throw new Error(`${url}: ${errors[1]} non-2xx responses`);
  return { rps, p50: pct(50), p99: pct(99) };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const results = {};
for (const mode of Object.keys(modes)) {
  results[mode] = { direct: [], nginx: [], tollgate: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [name, url] of Object.entries(targets)) results[mode][name].push(runWrk(url, mode));
  }
}
await stopAll();

console.log(`\nProxy benchmark${tls ? ' (https upstream)' : ''}: ${rounds} interleaved rounds x ${seconds} s per target and mode; medians.`);
console.log(`Machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ` +
  `Tollgate ${threads} I/O threads, nginx ${threads} workers, upstream 1 thread${tls ? " behind the TLS front (node, 1 thread)" : ""}, wrk 1 thread.`);
for (const [mode, byTarget] of Object.entries(results)) {
  const m = (name, key) => median(byTarget[name].map((x) => x[key]));
  const d50 = m('direct', 'p50');
  const d99 = m('direct', 'p99');
  console.log(`\n${mode === 'fixed' ? 'Fixed rate (10 connections, 10 ms think time)' : 'Saturation (64 connections)'}`);
  console.log('target    req/s     p50 us   p99 us   added p50 us  added p99 us');
  for (const name of Object.keys(targets)) {
    const p50 = m(name, 'p50');
    const p99 = m(name, 'p99');
    console.log(`${name.padEnd(9)} ${m(name, 'rps').toFixed(0).padStart(7)} ${p50.toFixed(0).padStart(8)} ${p99.toFixed(0).padStart(8)}` +
      (name === 'direct' ? '' : `   ${(p50 - d50).toFixed(0).padStart(10)}  ${(p99 - d99).toFixed(0).padStart(10)}`));
  }
  const ratio = m('tollgate', 'rps') / m('nginx', 'rps');
  console.log(`Tollgate/nginx throughput ratio: ${ratio.toFixed(2)}`);
  // A ratio means nothing when nginx added nothing measurable (its percentile at or under direct's).
  const ratioOf = (p, d) => {
    const base = m('nginx', p) - d;
    return base > 0 ? ((m('tollgate', p) - d) / base).toFixed(2) : 'n/a (nginx added <= 0)';
  };
  console.log(`Tollgate/nginx added-latency ratio: p50 ${ratioOf('p50', d50)}, p99 ${ratioOf('p99', d99)}`);
}
