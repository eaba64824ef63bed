// Test harness: starts the real gateway and the development upstream on free loopback ports,
// with a temporary config, and offers small helpers (raw sockets, usage records, waits).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const binDir = process.env.TOLLGATE_BIN_DIR ??
  path.resolve(new URL('../../build/bin', import.meta.url).pathname);

// A loopback port nothing listens on now. The kernel may offer a port it offered a moment ago
// (once it is closed again), so a port this process handed out before is never handed out
// twice: two servers of one stack would otherwise be given the same port.
const portsHandedOut = new Set();
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port: p } = srv.address();
        srv.close(() => resolve(p));
      });
    });
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(check, { timeoutMs = 10000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function startProcess(bin, args, env = {}) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    exited,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

const defaultGatewayBin = path.join(binDir, 'tollgate');

// Starts tollgate-dev-upstream and a gateway routed to it. `config` is merged into the gateway
// config file; `env` goes to the gateway's environment; `gatewayBin` is another build's
// `tollgate` (a benchmark's baseline). `gatewayDefaults` leaves out the usage log's test-only
// interval (a write per line): a benchmark measures the usage log as deployed.
export async function startStack({ config = {}, env = {}, upstreamThreads = 1, upstreamPort: fixedUpstreamPort,
  gatewayBin = defaultGatewayBin, gatewayDefaults = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-test-'));
  const upstreamPort = fixedUpstreamPort ?? await freePort();
  const apiPort = await freePort();
  const adminPort = await freePort();
  const upstream = startProcess(path.join(binDir, 'tollgate-dev-upstream'),
    ['--listen', `127.0.0.1:${upstreamPort}`, '--threads', String(upstreamThreads)]);
  const usageLog = path.join(dir, 'usage.log');
  const full = {
    server: { listen: `127.0.0.1:${apiPort}`, admin_listen: `127.0.0.1:${adminPort}`,
              threads: 2, ...(config.server ?? {}) },
    upstreams: config.upstreams ?? {
      dev: { base_url: `http://127.0.0.1:${upstreamPort}/v1`, ...(config.upstream ?? {}) },
    },
    models: config.models ?? { 'dev-echo': { upstream: 'dev' } },
    // A write per usage line, so a test reads a request's line once it is answered (the
    // buffered default is tested in ledger.test.mjs). Not for a benchmark, nor for another
    // build (`gatewayBin`, a benchmark's base), which may predate the setting and refuse it.
    logging: { level: 'info', usage_log: usageLog,
      ...(gatewayBin === defaultGatewayBin && !gatewayDefaults ? { usage_log_flush_ms: 0 } : {}),
      ...(config.logging ?? {}) },
  };
  for (const section of ['database', 'ledger', 'auth', 'budgets', 'invoices', 'batches', 'usage_reports', 'virtual_models', 'console']) {
    if (config[section]) full[section] = config[section];
  }
  // Test webhook receivers listen on 127.0.0.1: allowed here unless a test says otherwise.
  if (full.budgets) full.budgets = { alert_webhook_allow_private: true, ...full.budgets };
  const configPath = path.join(dir, 'tollgate.json');
  writeFileSync(configPath, JSON.stringify(full, null, 2));
  const gateway = startProcess(gatewayBin, ['--config', configPath], env);
  const stack = {
    dir, upstream, gateway, upstreamPort, apiPort, adminPort, configPath, usageLog,
    url: `http://127.0.0.1:${apiPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    upstreamUrl: `http://127.0.0.1:${upstreamPort}`,
    usageRecords() {
      if (!existsSync(usageLog)) return [];
      return readFileSync(usageLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    // The usage record of a request, by the gateway's request id or the client's own id.
    async usageFor(requestId) {
      let rec;
      await waitFor(() => (rec = stack.usageRecords().find(
        (r) => r.request_id === requestId || r.client_request_id === requestId)),
        { what: `usage record ${requestId}` });
      return rec;
    },
    async upstreamStats() {
      return (await fetch(`${stack.upstreamUrl}/_dev/stats`)).json();
    },
    async lastUpstreamRequest() {
      return (await fetch(`${stack.upstreamUrl}/_dev/last_request`)).json();
    },
    // Starts the gateway again with the same configuration (after a stop or a kill -9).
    async restartGateway() {
      stack.gateway = startProcess(gatewayBin, ['--config', configPath], env);
      await waitFor(async () => (await fetch(`${stack.adminUrl}/readyz`)).ok,
        { what: 'gateway ready after restart' });
    },
    async stop() {
      await Promise.all([stack.gateway.stop(), upstream.stop()]);
    },
  };
  try {
    await waitFor(async () => (await fetch(`${stack.adminUrl}/readyz`)).ok, { what: 'gateway ready' });
    await waitFor(async () => (await fetch(`${stack.upstreamUrl}/v1/models`)).ok, { what: 'upstream ready' });
  } catch (e) {
    await stack.stop();
    throw new Error(`${e.message}\ngateway output:\n${gateway.output()}`);
  }
  return stack;
}

// One sample of a gateway's /metrics (`url` is its admin address): `labels` as the exposition
// writes them (`outcome="applied"`), empty for a sample without labels; 0 when it is absent.
export async function metric(url, name, labels = '') {
  const text = await (await fetch(`${url}/metrics`)).text();
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(prefix.length)) : 0;
}

export function chatBody(content, extra = {}) {
  return JSON.stringify({ model: 'dev-echo', messages: [{ role: 'user', content }], ...extra });
}

export async function postJson(url, body, headers = {}) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

// Parses an SSE body into the data payloads of its events.
export function sseData(text) {
  return text.split(/\r?\n\r?\n/).map((block) => block.split(/\r?\n/)
    .filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n'))
    .filter((d) => d.length > 0);
}

// Sends raw bytes on one connection and collects everything until the server closes it or
// `until(buffer)` says enough.
export function rawExchange(port, bytes, { until = () => false, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => { socket.destroy(); resolve(data.toString('latin1')); }, timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d) => {
      data = Buffer.concat([data, d]);
      if (until(data.toString('latin1'))) { clearTimeout(timer); socket.destroy(); resolve(data.toString('latin1')); }
    });
    socket.on('end', () => { clearTimeout(timer); resolve(data.toString('latin1')); });
    socket.on('error', (e) => { clearTimeout(timer); if (data.length) resolve(data.toString('latin1')); else reject(e); });
  });
}

export function httpRequest(method, target, body = '', headers = {}) {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body.length || method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
