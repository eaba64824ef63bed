// The cluster of `make cluster-up` for a test file: scripts/cluster.sh on free ports in a
// temporary folder (three gateways behind HAProxy, a Redis Cluster of three masters with one
// replica each, PostgreSQL, tollgate-infer), with what the suites need to look at and break it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from '../lib/harness.mjs';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const script = path.join(root, 'scripts/cluster.sh');
// The longest a cluster.sh call may take: `up` from nothing, or a rolling restart of three
// gateways that each drain for up to 10 s.
const scriptTimeoutMs = 180_000;

function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
async function allFree(ports) {
  for (const p of ports) if (!(await portIsFree(p))) return false;
  return true;
}

// A base port with base, +1..3, +10, +100..103 free, and a Redis base with +1..6 and their bus
// ports (+10000) free.
async function clusterPorts() {
  let base;
  for (;;) {
    base = 30000 + 10 * Math.floor(Math.random() * 900);
    if (await allFree([base, base + 1, base + 2, base + 3, base + 10, base + 100, base + 101, base + 102, base + 103])) break;
  }
  let redisBase;
  for (;;) {
    redisBase = 20000 + 10 * Math.floor(Math.random() * 900);
    const ports = [1, 2, 3, 4, 5, 6].map((i) => redisBase + i);
    if (await allFree([...ports, ...ports.map((p) => p + 10000)])) break;
  }
  return { base, redisBase, pgPort: await freePort() };
}

// Ports found free can be taken by another process before the cluster binds them: a start
// that fails is tried again on other ports, three times in all.
export async function startCluster(options = {}) {
  for (let attempt = 1; ; ++attempt) {
    try {
      return await startClusterOnce(options);
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
}

async function startClusterOnce({ drainTimeoutMs = 10000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-cluster-'));
  const { base, redisBase, pgPort } = await clusterPorts();
  const env = {
    ...process.env,
    TOLLGATE_CLUSTER_DIR: dir,
    TOLLGATE_CLUSTER_BASE: String(base),
    TOLLGATE_CLUSTER_REDIS_BASE: String(redisBase),
    TOLLGATE_CLUSTER_PG_PORT: String(pgPort),
    TOLLGATE_SERVER__DRAIN_TIMEOUT_MS: String(drainTimeoutMs),
  };
  // Every script call is bounded: a part that hangs fails its test instead of the whole suite.
  const sh = (...args) => execFileSync(script, args,
    { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: scriptTimeoutMs, killSignal: 'SIGKILL' });
  try {
    sh('up');
  } catch (e) {
    try { sh('down'); } catch { /* as far as it goes */ }
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cluster.sh up failed: ${e.stderr ?? e.message}`);
  }
  const settings = Object.fromEntries(readFileSync(path.join(dir, 'env'), 'utf8').split('\n')
    .filter((l) => l.startsWith('export ')).map((l) => l.slice(7).split(/=(.*)/s).slice(0, 2)));
  const redisPorts = [1, 2, 3, 4, 5, 6].map((i) => redisBase + i);
  const pid = (name) => Number(readFileSync(path.join(dir, 'pids', `${name}.pid`), 'utf8').trim());
  const c = {
    dir, base, redisPorts, env, sh,
    url: settings.TOLLGATE_URL,
    adminUrl: settings.TOLLGATE_ADMIN_URL,
    key: settings.TOLLGATE_API_KEY,
    adminToken: settings.TOLLGATE_ADMIN_TOKEN,
    dbUrl: settings.TOLLGATE_DATABASE_URL,
    gatewayAdmin: (n) => `http://127.0.0.1:${base + 100 + n}`,
    pid,
    psql(sql) {
      return execFileSync('psql', [c.dbUrl, '-X', '-q', '-t', '-A', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
        { encoding: 'utf8', timeout: 30_000 }).split('\n').filter(Boolean).map((l) => l.split('\t'));
    },
    value(sql) { return c.psql(sql)[0]?.[0]; },
    redis(port, ...args) {
      return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).trim();
    },
    // HAProxy's status of gateway N ("UP", "DOWN", "DRAIN", ...) and its current sessions.
    lbServer(n) {
      const [status, sessions] = sh('status').split('\n').find((l) => l.startsWith(`gw${n} `)).split(' ').slice(1);
      return { status, sessions: Number(sessions) };
    },
    // The port of the master that holds the tenant's slot (its keys are hash-tagged {tenant}),
    // as the live nodes see it.
    masterOf(tenant) {
      const slot = Number(c.redis(redisPorts.find((p) => c.nodeAlive(p)), 'CLUSTER', 'KEYSLOT', tenant));
      for (const p of redisPorts) {
        if (!c.nodeAlive(p)) continue;
        const lines = c.redis(p, 'CLUSTER', 'NODES').split('\n');
        for (const l of lines) {
          const f = l.split(' ');
          if (!f[2].includes('master') || f[2].includes('fail')) continue;
          for (const range of f.slice(8)) {
            const [lo, hi] = range.split('-').map(Number);
            if (slot >= lo && slot <= (hi ?? lo)) return Number(f[1].split(':')[1].split('@')[0]);
          }
        }
      }
      return undefined;
    },
    nodeAlive(port) {
      try { return c.redis(port, 'PING') === 'PONG'; } catch { return false; }
    },
    async admin(method, target, body) {
      const res = await fetch(`${c.adminUrl}${target}`, {
        method, headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : undefined, text, retryAfter: res.headers.get('retry-after') };
    },
    // An admin call that a 503 does not end: the database came back a moment ago and this
    // gateway's pool may still be in its reconnect backoff (up to 5 s), so the call is made
    // again after its Retry-After, as a client would, up to ten times.
    async adminAnswered(method, target, body) {
      for (let attempt = 0; ; attempt += 1) {
        const r = await c.admin(method, target, body);
        if (r.status !== 503 || attempt >= 10) return r;
        await new Promise((done) => setTimeout(done, 1000 * Number(r.retryAfter ?? 1)));
      }
    },
    // A tenant with a project, a key, and optionally a hard token budget per month.
    async tenant(name, tokenBudget) {
      const created = async (target, body) => {
        const r = await c.adminAnswered('POST', target, body);
        if (r.status !== 201) throw new Error(`POST ${target}: ${r.status} ${r.text}`);
        return r.json;
      };
      const t = await created('/admin/v1/tenants', { name });
      const p = await created(`/admin/v1/tenants/${t.id}/projects`, { name: `${name} app` });
      const k = await created('/admin/v1/keys', { tenant_id: t.id, project_id: p.id, name: `${name} key` });
      const budget = tokenBudget
        ? await created('/admin/v1/budgets', { tenant_id: t.id, metric: 'tokens', window: 'month', limit: tokenBudget })
        : undefined;
      return { tenant: t.id, key: k.key, budget };
    },
    async waitGatewaysUp() {
      try {
        await waitFor(() => [1, 2, 3].every((n) => c.lbServer(n).status === 'UP'), { timeoutMs: 30000, what: 'all gateways UP in HAProxy' });
      } catch (e) {
        throw new Error(`${e.message}\n${c.gatewayReport()}`);
      }
    },
    // For a failure message: each gateway's HAProxy status, whether its process lives, and the
    // last lines of its log.
    gatewayReport() {
      return [1, 2, 3].map((n) => {
        let alive = 'no pid file';
        try {
          const p = pid(`gw${n}`);
          alive = 'process gone';
          alive = `process state ${readFileSync(`/proc/${p}/stat`, 'utf8').split(' ')[2]}`;
        } catch { /* as far as it got */ }
        let status = '?';
        try { status = c.lbServer(n).status; } catch { /* HAProxy did not answer */ }
        let log = '';
        try {
          log = readFileSync(path.join(dir, 'logs', `gw${n}.log`), 'utf8').split('\n').slice(-8).join('\n');
        } catch { /* no log yet */ }
        return `gw${n}: HAProxy ${status}, ${alive}; log tail:\n${log}`;
      }).join('\n');
    },
    stop() {
      try { sh('down'); } finally { rmSync(dir, { recursive: true, force: true }); }
    },
  };
  return c;
}
