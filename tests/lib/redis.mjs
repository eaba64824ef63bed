// A real Redis 7 for a test file: its own process on a free loopback port, or a three-master
// Redis Cluster of such processes, or one that speaks only TLS (scripts/redis.sh), and redis-cli for looking at its keys.
// Both answer the same calls: start/stop, budgetsConfig, cli (follows cluster redirects),
// keys (over every node) and counters.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { freePort } from './harness.mjs';

const redisScript = path.resolve(new URL('../../scripts/redis.sh', import.meta.url).pathname);

// redis-cli's arguments to reach one node: its port, and TLS arguments where it speaks TLS.
const nodeArgs = (port, tls = []) => ['-p', String(port), ...tls];

function readHash(node, key) {
  const fields = execFileSync('redis-cli', [...node, '--raw', 'HGETALL', key], { encoding: 'utf8' }).split('\n');
  const h = {};
  for (let i = 0; i + 1 < fields.length; i += 2) h[fields[i]] = Number(fields[i + 1]);
  return h;
}

// Every budget counter of a tenant, by budget id, over the given nodes: `used` (settled) and
// `held` (the sum of its hold fields `h<expiry ms>` that have not expired), summed over the
// budget's counters (a sliding window has one per bucket).
function countersOn(nodes, tenant) {
  const out = {};
  for (const node of nodes) {
    const keys = execFileSync('redis-cli', [...node, '--raw', 'KEYS', `tg:{${tenant}}:b:*`], { encoding: 'utf8' })
      .split('\n').filter(Boolean);
    for (const k of keys) {
      const h = readHash(node, k);
      let held = 0;
      for (const [field, value] of Object.entries(h)) {
        if (field.startsWith('h') && Number(field.slice(1)) > Date.now()) held += value;
      }
      const id = k.split(':')[3];
      out[id] ??= { used: 0, held: 0 };
      out[id].used += h.used ?? 0;
      out[id].held += held;
    }
  }
  return out;
}

function keysOn(nodes, pattern) {
  return nodes.flatMap((node) => execFileSync('redis-cli', [...node, '--raw', 'KEYS', pattern], { encoding: 'utf8' })
    .split('\n').filter(Boolean));
}

export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-redis-'));
  const port = await freePort();
  const r = {
    dir, port, address: `127.0.0.1:${port}`, cluster: false,
    budgetsConfig: { redis: `127.0.0.1:${port}` },
    start() { execFileSync(redisScript, ['start', dir, String(port)], { stdio: 'ignore' }); },
    stop() { execFileSync(redisScript, ['stop', dir], { stdio: 'ignore' }); },
    cli(...args) {
      return execFileSync('redis-cli', ['-p', String(port), '--no-raw', ...args], { encoding: 'utf8' }).trim();
    },
    keys(pattern) { return keysOn([nodeArgs(port)], pattern); },
    counters(tenant) { return countersOn([nodeArgs(port)], tenant); },
  };
  r.start();
  return r;
}

// A Redis that speaks only TLS, with throwaway certificates (scripts/test_certs.sh) in
// `certs`; the gateway verifies the server's certificate against certs/ca.crt.
export async function startRedisTls() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-redis-tls-'));
  const certs = path.join(dir, 'certs');
  execFileSync(path.join(path.dirname(redisScript), 'test_certs.sh'), [certs], { stdio: 'ignore' });
  const port = await freePort();
  const tls = ['--tls', '--cacert', path.join(certs, 'ca.crt')];
  const r = {
    dir, port, certs, address: `127.0.0.1:${port}`, cluster: false,
    budgetsConfig: { redis: `127.0.0.1:${port}`, redis_tls: true, redis_tls_ca_file: path.join(certs, 'ca.crt') },
    start() { execFileSync(redisScript, ['start-tls', path.join(dir, 'data'), String(port), certs, 'optional'], { stdio: 'ignore' }); },
    stop() { execFileSync(redisScript, ['stop', path.join(dir, 'data')], { stdio: 'ignore' }); },
    cli(...args) {
      return execFileSync('redis-cli', [...nodeArgs(port, tls), '--no-raw', ...args], { encoding: 'utf8' }).trim();
    },
    keys(pattern) { return keysOn([nodeArgs(port, tls)], pattern); },
    counters(tenant) { return countersOn([nodeArgs(port, tls)], tenant); },
  };
  r.start();
  return r;
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// A cluster node also listens on its port + 10000 (the cluster bus): ports come from
// 20000..29999 with both free.
async function clusterPorts(n) {
  const ports = [];
  let candidate = 20000 + Math.floor(Math.random() * 10000);
  while (ports.length < n) {
    candidate = 20000 + ((candidate - 20000 + 1) % 10000);
    if (await portIsFree(candidate) && await portIsFree(candidate + 10000)) ports.push(candidate);
  }
  return ports;
}

export async function startRedisCluster() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-redis-cluster-'));
  const ports = await clusterPorts(3);
  const address = ports.map((p) => `127.0.0.1:${p}`).join(',');
  const r = {
    dir, ports, port: ports[0], address, cluster: true,
    budgetsConfig: { redis: address, redis_cluster: true },
    // Restarts stopped nodes; they rejoin the same cluster from their nodes.conf.
    start() { execFileSync(redisScript, ['cluster-resume', dir, ...ports.map(String)], { stdio: 'ignore' }); },
    stop() { execFileSync(redisScript, ['cluster-stop', dir], { stdio: 'ignore' }); },
    cli(...args) {
      return execFileSync('redis-cli', ['-c', '-p', String(ports[0]), '--no-raw', ...args], { encoding: 'utf8' }).trim();
    },
    keys(pattern) { return keysOn(ports.map((p) => nodeArgs(p)), pattern); },
    counters(tenant) { return countersOn(ports.map((p) => nodeArgs(p)), tenant); },
  };
  execFileSync(redisScript, ['cluster', dir, ...ports.map(String)], { stdio: 'ignore' });
  return r;
}

// A three-master Redis Cluster that speaks only TLS, the cluster bus included (tls-cluster),
// with throwaway certificates; the gateway verifies every node's certificate.
export async function startRedisClusterTls() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-redis-cluster-tls-'));
  const certs = path.join(dir, 'certs');
  execFileSync(path.join(path.dirname(redisScript), 'test_certs.sh'), [certs], { stdio: 'ignore' });
  const ports = await clusterPorts(3);
  const address = ports.map((p) => `127.0.0.1:${p}`).join(',');
  const tls = ['--tls', '--cacert', path.join(certs, 'ca.crt')];
  const r = {
    dir, ports, port: ports[0], certs, address, cluster: true,
    budgetsConfig: { redis: address, redis_cluster: true, redis_tls: true, redis_tls_ca_file: path.join(certs, 'ca.crt') },
    stop() { execFileSync(redisScript, ['cluster-stop', dir], { stdio: 'ignore' }); },
    cli(...args) {
      return execFileSync('redis-cli', ['-c', ...nodeArgs(ports[0], tls), '--no-raw', ...args], { encoding: 'utf8' }).trim();
    },
    keys(pattern) { return keysOn(ports.map((p) => nodeArgs(p, tls)), pattern); },
    counters(tenant) { return countersOn(ports.map((p) => nodeArgs(p, tls)), tenant); },
  };
  execFileSync(redisScript, ['cluster-tls', dir, certs, ...ports.map(String)], { stdio: 'ignore' });
  return r;
}
