// A real Redis 7 for a test file: its own process on a free loopback port (scripts/redis.sh),
// and redis-cli for looking at its keys.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './harness.mjs';

const redisScript = path.resolve(new URL('../../scripts/redis.sh', import.meta.url).pathname);

export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-redis-'));
  const port = await freePort();
  const r = {
    dir, port, address: `127.0.0.1:${port}`,
    start() { execFileSync(redisScript, ['start', dir, String(port)], { stdio: 'ignore' }); },
    stop() { execFileSync(redisScript, ['stop', dir], { stdio: 'ignore' }); },
    cli(...args) {
      return execFileSync('redis-cli', ['-p', String(port), '--no-raw', ...args], { encoding: 'utf8' }).trim();
    },
    // Every budget counter {used, held} of a tenant, by budget id.
    counters(tenant) {
      const keys = execFileSync('redis-cli', ['-p', String(port), '--raw', 'KEYS', `tg:{${tenant}}:b:*`], { encoding: 'utf8' })
        .split('\n').filter((k) => k && !k.endsWith(':h') && !k.endsWith(':e'));
      const out = {};
      for (const k of keys) {
        const fields = execFileSync('redis-cli', ['-p', String(port), '--raw', 'HGETALL', k], { encoding: 'utf8' }).split('\n');
        const h = {};
        for (let i = 0; i + 1 < fields.length; i += 2) h[fields[i]] = Number(fields[i + 1]);
        out[k.split(':')[3]] = { used: h.used ?? 0, held: h.held ?? 0 };
      }
      return out;
    },
  };
  r.start();
  return r;
}
