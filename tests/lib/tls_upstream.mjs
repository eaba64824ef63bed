// A TLS upstream for tests: tests/fixtures/tls_front.mjs in front of a plain upstream port, with
// throwaway certificates from scripts/test_certs.sh (made once per process).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startProcess, waitFor } from './harness.mjs';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
let certDir;

// The test certificates' folder: ca.crt, server.*, client.*, wrong-name.*, other-ca.crt.
export function testCerts() {
  if (!certDir) {
    certDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-tls-')), 'certs');
    execFileSync(path.join(root, 'scripts', 'test_certs.sh'), [certDir], { stdio: 'ignore' });
  }
  return certDir;
}

// Starts the TLS front for `targetPort`. `cert`: which certificate it shows (`server`, for
// 127.0.0.1 and localhost, or `wrong-name`); `clientCa`: require a client certificate.
export async function startTlsFront({ targetPort, cert = 'server', clientCa = false } = {}) {
  const certs = testCerts();
  const port = await freePort();
  const args = [path.join(root, 'tests', 'fixtures', 'tls_front.mjs'), '--listen', String(port),
    '--target', String(targetPort), '--cert', path.join(certs, `${cert}.crt`),
    '--key', path.join(certs, `${cert}.key`)];
  if (clientCa) args.push('--client-ca', path.join(certs, 'ca.crt'));
  const proc = startProcess(process.execPath, args);
  const front = {
    port,
    proc,
    events() {
      return proc.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    },
    connections() { return front.events().filter((e) => e.event === 'connection'); },
    stop() { return proc.stop(); },
  };
  await waitFor(() => front.events().some((e) => e.event === 'listening'), { what: 'TLS front listening' });
  return front;
}
