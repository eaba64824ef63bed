// Integration tests of the server's limits: connection cap, read and idle timeouts, upstream
// response size, and HTTP/1.0 clients.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startStack, chatBody, postJson, rawExchange, httpRequest, sleep } from '../lib/harness.mjs';

// Resolves with 'closed' if the server closes the connection within `ms`, else 'open'.
function watchSocket(port, ms) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => resolve({ state: 'open', sock }), ms);
    sock.on('close', () => { clearTimeout(timer); resolve({ state: 'closed', sock }); });
    sock.on('error', () => {});
  });
}

describe('server limits', () => {
  let s;
  before(async () => {
    s = await startStack({
      config: {
        server: { max_connections: 6, request_read_timeout_ms: 300, keepalive_idle_timeout_ms: 600 },
        upstream: { response_limit_bytes: 1024 },
      },
    });
  });
  after(async () => s && s.stop());

  test('a request body that does not arrive in time ends the connection', async () => {
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":';
    const t0 = Date.now();
    const out = await rawExchange(s.apiPort, head, { timeoutMs: 3000 });
    const elapsed = Date.now() - t0;
    assert.equal(out, '');
    assert.ok(elapsed >= 250 && elapsed < 2500, `closed after ${elapsed} ms`);
    assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody('fine'))).status, 200);
  });

  test('an idle keep-alive connection is closed after the idle timeout', async () => {
    const t0 = Date.now();
    const { state } = await watchSocket(s.apiPort, 3000);
    assert.equal(state, 'closed');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 500 && elapsed < 2500, `closed after ${elapsed} ms`);
  });

  test('an upstream response over response_limit_bytes gives 502', async () => {
    // The first test's pooled keep-alive connection reaches the 600 ms idle timeout about when
    // the previous test ends; wait until the gateway's close has surely arrived, or fetch may
    // send this request on a connection that is being closed.
    await sleep(800);
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('tg:tokens=400'));
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error.code, 'upstream_unavailable');
    assert.match(body.error.message, /over the limit/);
    // A small one still works on the same gateway.
    assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody('tg:tokens=3'))).status, 200);
  });

  test('connections over max_connections are closed at once and counted', async () => {
    const results = await Promise.all(Array.from({ length: 9 }, () => watchSocket(s.apiPort, 200)));
    const socks = results.map((r) => r.sock);
    const closed = results.filter((r) => r.state === 'closed').length;
    assert.ok(closed >= 3, `${closed} of 9 connections were refused`);
    for (const sock of socks) sock.destroy();
    await sleep(100);
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(text, /tollgate_http_connections_rejected_total\{listener="api"\} [1-9]/);
    // Once they are gone, requests are served again.
    assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody('after'))).status, 200);
  });
});

// Sends `bytes` and reports what came back and whether the server closed the connection
// (`closed`) or it was still open after `timeoutMs` (`open`).
function exchangeUntilClose(port, bytes, timeoutMs) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => { sock.destroy(); resolve({ out, state: 'open' }); }, timeoutMs);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => { out += d.toString('latin1'); });
    sock.on('close', () => { clearTimeout(timer); resolve({ out, state: 'closed' }); });
    sock.on('error', () => {});
  });
}

describe('HTTP/1.0', () => {
  test('HTTP/1.0 clients get an answer and the connection closes', async () => {
    // A keep-alive idle timeout far beyond the wait below: only the server's deliberate close
    // after an HTTP/1.0 answer can end the connection in time.
    const s = await startStack({ config: { server: { keepalive_idle_timeout_ms: 60000 } } });
    try {
      const body = chatBody('old client');
      const { out, state } = await exchangeUntilClose(s.apiPort,
        `POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        5000);
      assert.equal(state, 'closed', 'the gateway closed the connection after answering');
      assert.match(out, /^HTTP\/1\.0 200 /);
      assert.ok(out.includes('Echo: old client'));
    } finally {
      await s.stop();
    }
  });

  test('framing of whole answers: HTTP/1.0 keep-alive kept and said, HTTP/1.1 close said, one Content-Length', async () => {
    const s = await startStack({ config: { server: { keepalive_idle_timeout_ms: 60000 } } });
    try {
      const body = chatBody('framed');
      const post = (version, connection) => `POST /v1/chat/completions HTTP/${version}\r\n` +
        `Content-Type: application/json\r\n${connection ? `Connection: ${connection}\r\n` : ''}` +
        `Content-Length: ${body.length}\r\n\r\n${body}`;
      // Two answers on one HTTP/1.0 keep-alive connection, then one that asks to close.
      const { out, state } = await exchangeUntilClose(s.apiPort,
        post('1.0', 'keep-alive') + post('1.0', 'keep-alive') + post('1.1', 'close'), 5000);
      assert.equal(state, 'closed');
      const answers = out.split(/(?=HTTP\/1\.[01] )/).filter(Boolean);
      assert.equal(answers.length, 3, out);
      for (const [i, a] of answers.entries()) {
        const head = a.slice(0, a.indexOf('\r\n\r\n')).toLowerCase();
        assert.match(a, i < 2 ? /^HTTP\/1\.0 200 OK\r\n/ : /^HTTP\/1\.1 200 OK\r\n/);
        assert.equal(head.split('\r\n').filter((l) => l.startsWith('content-length:')).length, 1, head);
        const length = Number(/content-length: (\d+)/.exec(head)[1]);
        assert.equal(a.length - (a.indexOf('\r\n\r\n') + 4), length, 'the body is as long as said (latin1: a byte a char)');
        assert.equal(head.includes('connection: keep-alive'), i < 2, head);
        assert.equal(head.includes('connection: close'), i === 2, head);
        assert.ok(head.includes('content-type: application/json'));
        assert.match(head, /x-request-id: \S+/);
      }
      // An error answer (no key needed here: a bad body) is framed the same way.
      const bad = await exchangeUntilClose(s.apiPort,
        'POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{]', 5000);
      assert.match(bad.out, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(bad.out, /\r\nConnection: close\r\n/);
      assert.match(bad.out, /\r\nContent-Length: \d+\r\n\r\n\{"error":/);
      // A handler's own response (the operator listener's /healthz), and the 405 beside it.
      const health = await exchangeUntilClose(s.adminPort,
        'GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 5000);
      const [first, second] = health.out.split(/(?=HTTP\/1\.[01] )/);
      assert.match(first, /^HTTP\/1\.0 200 OK\r\nContent-Type: application\/json\r\nConnection: keep-alive\r\nContent-Length: 15\r\n\r\n\{"status":"ok"\}$/);
      assert.match(second, /^HTTP\/1\.1 200 OK\r\nContent-Type: application\/json\r\nConnection: close\r\nContent-Length: 15\r\n\r\n\{"status":"ok"\}$/);
      const refused = await exchangeUntilClose(s.adminPort,
        'POST /healthz HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', 5000);
      assert.match(refused.out, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
      assert.match(refused.out, /\r\nAllow: GET\r\n/);
    } finally {
      await s.stop();
    }
  });
});

describe('upstream connection reuse', () => {
  test('requests reuse pooled upstream connections, and survive the upstream closing them', async () => {
    const s = await startStack();
    try {
      // One client connection after the other: one upstream connection, taken from the pool
      // each time (the gateway may open a second one on its other I/O thread).
      for (let i = 0; i < 20; i++) {
        assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody(`n${i}`))).status, 200);
      }
      const stats = await (await fetch(`${s.upstreamUrl}/_dev/stats`)).json();
      assert.equal(stats.requests, 20);
      assert.ok(stats.connections <= 2, `20 requests came on ${stats.connections} upstream connections`);
      // The upstream restarts: every pooled connection is now dead. The next request must not fail.
      await s.upstream.stop();
      const { startProcess, binDir } = await import('../lib/harness.mjs');
      const path = await import('node:path');
      const again = startProcess(path.join(binDir, 'tollgate-dev-upstream'), ['--listen', `127.0.0.1:${s.upstreamPort}`]);
      try {
        let ok = false;
        for (let i = 0; i < 50 && !ok; i++) {
          try { ok = (await fetch(`${s.upstreamUrl}/v1/models`)).ok; } catch { await sleep(20); }
        }
        const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('after restart'));
        assert.equal(res.status, 200);
        assert.equal((await res.json()).choices[0].message.content, 'Echo: after restart');
      } finally {
        await again.stop();
      }
    } finally {
      await s.stop();
    }
  });
});
