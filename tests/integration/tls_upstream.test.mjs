// Integration tests of https upstreams: the gateway in front of a TLS upstream started here
// (tests/fixtures/tls_front.mjs over the development upstream, certificates from
// scripts/test_certs.sh): chat and streams metered as over http, keep-alive reuse, session
// resumption, certificate and host-name verification, client certificates, upstream keys from
// the environment or a file (never in the logs), and the handshake under the connect timeout.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import {
  binDir, startStack, postJson, sseData, waitFor, freePort,
} from '../lib/harness.mjs';
import { startTlsFront, testCerts } from '../lib/tls_upstream.mjs';

const envKey = 'sk-env-secret-4c1f9a';
const fileKey = 'sk-file-secret-77d2e0';
const chat = (model, content, extra = {}) =>
  JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra });

describe('https upstreams', () => {
  let s; let fronts; let stall; let stalled = [];
  before(async () => {
    const certs = testCerts();
    const keyFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-key-')), 'key');
    writeFileSync(keyFile, `${fileKey}\n`, { mode: 0o600 });
    const upstreamPort = await freePort();
    fronts = {
      main: await startTlsFront({ targetPort: upstreamPort }),
      other: await startTlsFront({ targetPort: upstreamPort }),
      wrongName: await startTlsFront({ targetPort: upstreamPort, cert: 'wrong-name' }),
      mtls: await startTlsFront({ targetPort: upstreamPort, clientCa: true }),
    };
    // Accepts TCP and never says a word: the handshake cannot finish.
    stall = net.createServer((c) => stalled.push(c));
    await new Promise((r) => stall.listen(0, '127.0.0.1', r));
    const ca = path.join(certs, 'ca.crt');
    const https = (front, host = 'localhost') => `https://${host}:${front.port}/v1`;
    const upstreams = {
      tls: { base_url: https(fronts.main), tls_ca_file: ca, auth_env: 'TLS_UPSTREAM_KEY' },
      system: { base_url: https(fronts.other) },  // the system's CAs: SSL_CERT_FILE below
      apikey: { base_url: https(fronts.other, '127.0.0.1'), tls_ca_file: ca, auth_file: keyFile,
                auth_header: 'api-key' },
      'wrong-ca': { base_url: https(fronts.other), tls_ca_file: path.join(certs, 'other-ca.crt') },
      'wrong-name': { base_url: https(fronts.wrongName), tls_ca_file: ca },
      mtls: { base_url: https(fronts.mtls), tls_ca_file: ca,
              tls_client_cert_file: path.join(certs, 'client.crt'),
              tls_client_key_file: path.join(certs, 'client.key') },
      'mtls-nocert': { base_url: https(fronts.mtls), tls_ca_file: ca },
      stall: { base_url: `https://127.0.0.1:${stall.address().port}/v1`, connect_timeout_ms: 300 },
    };
    const models = {};
    for (const name of Object.keys(upstreams)) models[`m-${name}`] = { upstream: name, upstream_model: 'dev-echo' };
    s = await startStack({
      upstreamPort,
      config: { server: { threads: 1 }, upstreams, models },
      env: { TLS_UPSTREAM_KEY: envKey, SSL_CERT_FILE: ca },
    });
  });
  after(async () => {
    for (const c of stalled) c.destroy();
    stall?.close();
    await s?.stop();
    await Promise.all(Object.values(fronts ?? {}).map((f) => f.stop()));
  });

  const metric = async (pattern) => {
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
    const m = pattern.exec(text);
    return m ? Number(m[1]) : 0;
  };

  test('chat over TLS, metered; SNI names the host; the key from the env goes as Bearer', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-tls', 'hello over tls'));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.choices[0].message.content, 'Echo: hello over tls');
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.status, 200);
    assert.equal(rec.upstream, 'tls');
    assert.equal(rec.completion_tokens, 4);
    assert.equal(rec.usage_reported, true);
    const last = await s.lastUpstreamRequest();
    assert.equal(last.headers.authorization, `Bearer ${envKey}`);
    assert.equal(last.headers.host, `localhost:${fronts.main.port}`);
    const conn = fronts.main.connections()[0];
    assert.equal(conn.servername, 'localhost');
    assert.equal(conn.protocol, 'TLSv1.3');
  });

  test('streaming over TLS, metered as it streams', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`,
      chat('m-tls', 'stream these words please', { stream: true, stream_options: { include_usage: true } }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const events = sseData(await res.text());
    assert.equal(events.at(-1), '[DONE]');
    const usage = JSON.parse(events.at(-2)).usage;
    assert.equal(usage.completion_tokens, 5);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.stream, true);
    assert.equal(rec.completion_tokens, 5);
    assert.equal(rec.upstream, 'tls');
  });

  test('keep-alive: sequential requests share one TLS connection', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-tls', `again ${i}`));
      assert.equal(res.status, 200);
      await res.text();
    }
    assert.equal(fronts.main.connections().length, 1);
    assert.equal(await metric(/tollgate_upstream_tls_handshakes_total\{upstream="tls",resumed="false"\} (\d+)/), 1);
  });

  test('a new connection resumes the last TLS session', async () => {
    // Two at once: one takes the pooled connection, the other opens a new one.
    const slow = () => postJson(`${s.url}/v1/chat/completions`, chat('m-tls', 'tg:first_byte_delay_ms=300 slow'));
    const both = await Promise.all([slow(), slow()]);
    for (const r of both) { assert.equal(r.status, 200); await r.text(); }
    const conns = fronts.main.connections();
    assert.equal(conns.length, 2);
    assert.equal(conns[0].resumed, false);
    assert.equal(conns[1].resumed, true);
    assert.equal(await metric(/tollgate_upstream_tls_handshakes_total\{upstream="tls",resumed="true"\} (\d+)/), 1);
  });

  test('a key from a file goes raw in a named header (api-key), IP address verified', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-apikey', 'azure style'));
    assert.equal(res.status, 200);
    await res.text();
    const last = await s.lastUpstreamRequest();
    assert.equal(last.headers['api-key'], fileKey);
    assert.equal(last.headers.authorization, undefined);
    assert.equal(fronts.other.connections().at(-1).servername, null);  // no SNI for an IP
  });

  test('without tls_ca_file the system store is used, and SSL_CERT_FILE points it elsewhere', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-system', 'system store'));
    assert.equal(res.status, 200);
    await res.text();
  });

  const refused = async (model, upstream) => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chat(model, 'hi'));
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error.code, 'upstream_unavailable');
    assert.equal(body.error.type, 'upstream_error');
    assert.equal(body.error.message, `Upstream '${upstream}' is unavailable: its TLS certificate could not be verified`);
    return res.headers.get('x-request-id');
  };
  const logLine = async (id) => {
    let line;
    await waitFor(() => (line = s.gateway.output().split('\n').find((l) => l.includes(id))),
      { what: `log line of ${id}` });
    return JSON.parse(line);
  };

  test('a certificate from an untrusted CA: 502 and a log line with the reason', async () => {
    const id = await refused('m-wrong-ca', 'wrong-ca');
    const line = await logLine(id);
    assert.equal(line.upstream, 'wrong-ca');
    assert.match(line.reason, /unable to get local issuer certificate/);
    assert.equal(await metric(/tollgate_upstream_requests_total\{upstream="wrong-ca",outcome="certificate_error"\} (\d+)/), 1);
  });

  test('a certificate for another host name: 502 and a log line with the reason', async () => {
    const id = await refused('m-wrong-name', 'wrong-name');
    assert.match((await logLine(id)).reason, /hostname mismatch/);
  });

  test('an upstream that requires a client certificate: works when one is configured', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-mtls', 'mutual'));
    assert.equal(res.status, 200);
    assert.equal((await res.json()).choices[0].message.content, 'Echo: mutual');
    assert.equal(fronts.mtls.connections()[0].client_cn, 'tollgate-test-client');
    const without = await postJson(`${s.url}/v1/chat/completions`, chat('m-mtls-nocert', 'x'));
    assert.equal(without.status, 502);
    assert.equal((await without.json()).error.code, 'upstream_unavailable');
  });

  test('a handshake that does not finish counts as the connect timeout: 504', async () => {
    const started = Date.now();
    const res = await postJson(`${s.url}/v1/chat/completions`, chat('m-stall', 'hi'));
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error.code, 'upstream_timeout');
    assert.ok(Date.now() - started < 3000);
  });

  test('the upstream keys appear in no log', async () => {
    const out = s.gateway.output();
    assert.ok(out.includes('upstream request failed'), 'failures were logged');
    for (const key of [envKey, fileKey]) {
      assert.ok(!out.includes(key), 'process log');
      assert.ok(!s.usageRecords().some((r) => JSON.stringify(r).includes(key)), 'usage log');
    }
    const check = spawnSync(path.join(binDir, 'tollgate'), ['--check-config', s.configPath],
      { env: { ...process.env, TLS_UPSTREAM_KEY: envKey }, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    assert.ok(!(check.stdout + check.stderr).includes(envKey));
  });
});

describe('https upstream settings at start-up', () => {
  const checkConfig = (upstream) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-tls-config-'));
    const file = path.join(dir, 'tollgate.json');
    writeFileSync(file, JSON.stringify({ upstreams: { u: upstream }, models: { m: { upstream: 'u' } } }));
    return spawnSync(path.join(binDir, 'tollgate'), ['--check-config', file], { encoding: 'utf8' });
  };

  test('a missing CA file stops start-up naming the setting', () => {
    const r = checkConfig({ base_url: 'https://127.0.0.1:1/v1', tls_ca_file: '/nonexistent/ca.pem' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /config \/upstreams\/u\/tls_ca_file: cannot read "\/nonexistent\/ca.pem"/);
  });

  test('a CA file that is not PEM stops start-up naming the setting', () => {
    const r = checkConfig({ base_url: 'https://127.0.0.1:1/v1', tls_ca_file: '/etc/hostname' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /config \/upstreams\/u\/tls_ca_file: cannot load "\/etc\/hostname"/);
  });

  test('an unknown URL scheme is refused', () => {
    const r = checkConfig({ base_url: 'ftp://127.0.0.1:1/v1' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /must start with http:\/\/ or https:\/\//);
  });
});
