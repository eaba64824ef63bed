// A real PostgreSQL 15 for a test file: its own cluster in a temporary folder on a free loopback
// port (scripts/pg.sh), the schema applied with `tollgate migrate`, and psql for queries.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir, freePort } from './harness.mjs';

const pgScript = path.resolve(new URL('../../scripts/pg.sh', import.meta.url).pathname);

export async function startPostgres() {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-')), 'data');
  execFileSync('chmod', ['755', path.dirname(dir)]);
  const port = await freePort();
  execFileSync(pgScript, ['start', dir, String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = `postgresql://tollgate@127.0.0.1:${port}/tollgate`;
  const pg = {
    dir, port, url,
    // Runs SQL with psql; returns the rows as arrays of text fields.
    query(sql, { role } = {}) {
      const full = role ? `SET ROLE ${role}; ${sql}` : sql;
      const out = execFileSync('psql', [url, '-X', '-q', '-t', '-A', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', full],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
      return out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
    },
    value(sql) {
      const rows = pg.query(sql);
      return rows.length ? rows[0][0] : undefined;
    },
    migrate() {
      return execFileSync(path.join(binDir, 'tollgate'), ['migrate'],
        { env: { ...process.env, TOLLGATE_DATABASE__URL: url }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    },
    kill9() {
      const pid = Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
    },
    start() {
      execFileSync(pgScript, ['start', dir, String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    },
    stop() {
      execFileSync(pgScript, ['stop', dir], { stdio: 'ignore' });
    },
  };
  pg.migrate();
  return pg;
}
