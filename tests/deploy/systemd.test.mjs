// deploy/systemd: the gateway and engine units pass `systemd-analyze verify` (with the built
// binaries standing in at /usr/local/bin) without a single warning, keep the hardening this
// project relies on, and score as well exposed as `systemd-analyze security --offline` allows.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binDir } from '../lib/harness.mjs';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const units = ['tollgate.service', 'tollgate-infer.service'];
const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const unitText = (u) => readFileSync(path.join(root, 'deploy/systemd', u), 'utf8');

// The units with /usr/local/bin/ pointing at this build's binaries, in a temporary folder.
function staged(overrides = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-units-'));
  mkdirSync(path.join(dir, 'bin'));
  for (const b of ['tollgate', 'tollgate-infer']) symlinkSync(path.join(binDir, b), path.join(dir, 'bin', b));
  for (const u of units) {
    const text = (overrides[u] ?? unitText(u)).replaceAll('/usr/local/bin/', `${dir}/bin/`);
    writeFileSync(path.join(dir, u), text);
  }
  return dir;
}

const analyze = (dir, ...args) => spawnSync('systemd-analyze', args, { cwd: dir, encoding: 'utf8' });

// Values of a directive (all its lines) in a unit's text.
const values = (text, key) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);

describe('systemd units', { skip: haveAnalyze ? false : 'systemd-analyze is not installed (make test installs it)' }, () => {
  test('systemd-analyze verify passes both units with no warning', () => {
    const dir = staged();
    const r = analyze(dir, 'verify', ...units);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
  });

  test('verify catches a mistyped directive and a bad value (the check above can fail)', () => {
    const bad = unitText('tollgate.service').replace('PrivateTmp=yes', 'PrivateTmpp=yes')
      .replace('ProtectSystem=strict', 'ProtectSystem=strictly');
    const r = analyze(staged({ 'tollgate.service': bad }), 'verify', 'tollgate.service');
    assert.match(r.stderr, /Unknown key 'PrivateTmpp'/);
    assert.match(r.stderr, /ProtectSystem|protect system/i);
  });

  test('the gateway writes only its spool folder; both units are hardened', () => {
    const gw = unitText('tollgate.service');
    const spool = values(gw, 'Environment').find((e) => e.startsWith('TOLLGATE_LEDGER__SPOOL_DIR='))?.split('=')[1];
    assert.equal(spool, '/var/lib/tollgate/spool');
    const writable = values(gw, 'ReadWritePaths').flatMap((v) => v.split(/\s+/));
    assert.ok(writable.some((p) => spool === p || spool.startsWith(`${p}/`)), writable.join());
    assert.deepEqual(values(gw, 'StateDirectory'), ['tollgate']);
    for (const u of units) {
      const text = unitText(u);
      for (const [k, v] of [['ProtectSystem', 'strict'], ['NoNewPrivileges', 'yes'], ['PrivateTmp', 'yes'],
        ['ProtectHome', 'yes'], ['RestrictNamespaces', 'yes'], ['CapabilityBoundingSet', ''], ['User', 'tollgate']]) {
        assert.deepEqual(values(text, k), [v], `${u}: ${k}`);
      }
    }
    assert.deepEqual(values(gw, 'PrivateDevices'), ['yes']);
    assert.deepEqual(values(gw, 'MemoryDenyWriteExecute'), ['yes']);
    // The engine reads its model and writes nothing.
    const infer = unitText('tollgate-infer.service');
    assert.deepEqual(values(infer, 'ReadWritePaths'), []);
    assert.deepEqual(values(infer, 'ReadOnlyPaths'), ['/var/lib/tollgate-models']);
  });

  test('systemd-analyze security --offline rates both units OK (exposure at most 2.0 of 10)', () => {
    const dir = staged();
    for (const u of units) {
      const r = analyze(dir, 'security', '--offline=yes', u);
      const m = /Overall exposure level for \S+: ([\d.]+) (\w+)/.exec(r.stdout);
      assert.ok(m, r.stdout + r.stderr);
      assert.ok(Number(m[1]) <= 2.0, `${u}: exposure ${m[1]} ${m[2]}`);
    }
  });
});
