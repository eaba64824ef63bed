// Integration tests of the proxy path: the real gateway in front of the development upstream,
// driven over HTTP with fetch and raw sockets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import {
  startStack, chatBody, postJson, sseData, rawExchange, httpRequest, waitFor, sleep, freePort,
} from '../lib/harness.mjs';

const errorShape = (body) => {
  assert.ok(body.error, 'an "error" object');
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
};

describe('proxy path', () => {
  let s;
  before(async () => {
    const deadPort = await freePort();
    s = await startStack({
      config: {
        server: { body_limit_bytes: 4096, header_limit_bytes: 2048 },
        upstream: { first_byte_timeout_ms: 400, auth_env: 'DEV_UPSTREAM_KEY' },
      },
      env: { DEV_UPSTREAM_KEY: 'sk-dev-secret' },
    });
    // A second config entry cannot be added after start: the unreachable-upstream case gets its
    // own gateway below.
    s.deadPort = deadPort;
  });
  after(async () => s && s.stop());

  test('non-streaming chat: body, request id, usage record', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('hello there world'));
    assert.equal(res.status, 200);
    const id = res.headers.get('x-request-id');
    assert.match(id, /^req_[0-9a-f]{32}$/);
    const body = await res.json();
    assert.equal(body.choices[0].message.content, 'Echo: hello there world');
    assert.equal(body.usage.completion_tokens, 4);
    const rec = await s.usageFor(id);
    assert.equal(rec.status, 200);
    assert.equal(rec.model, 'dev-echo');
    assert.equal(rec.upstream, 'dev');
    assert.equal(rec.usage_reported, true);
    assert.equal(rec.prompt_tokens, body.usage.prompt_tokens);
    assert.equal(rec.completion_tokens, 4);
    assert.equal(rec.stream, false);
    assert.equal(rec.client_disconnected, false);
    assert.ok(rec.latency_us > 0);
  });

  test('the gateway names each request; a client request id is kept beside it; upstream auth from the env', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('x'), { 'x-request-id': 'client-abc.1' });
    const id = res.headers.get('x-request-id');
    assert.match(id, /^req_[0-9a-f]{32}$/);
    assert.equal(res.headers.get('x-client-request-id'), 'client-abc.1');
    await res.text();
    const last = await s.lastUpstreamRequest();
    assert.equal(last.headers['x-request-id'], id);
    assert.equal(last.headers.authorization, 'Bearer sk-dev-secret');
    const rec = await s.usageFor(id);
    assert.equal(rec.client_request_id, 'client-abc.1');
    // X-Client-Request-Id (OpenAI's header) is preferred; an invalid id is not kept.
    const res2 = await postJson(`${s.url}/v1/chat/completions`, chatBody('x'),
      { 'x-request-id': 'bad id!', 'x-client-request-id': 'client-2' });
    assert.equal(res2.headers.get('x-client-request-id'), 'client-2');
    await res2.text();
    const res3 = await postJson(`${s.url}/v1/chat/completions`, chatBody('x'), { 'x-request-id': 'bad id!' });
    assert.equal(res3.headers.get('x-client-request-id'), null);
    await res3.text();
  });

  test('streaming without include_usage: usage is requested upstream, recorded, and stripped', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('one two three', { stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const events = sseData(await res.text());
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(chunks.every((c) => c.choices.length > 0), 'no usage-only chunk reaches the client');
    assert.ok(chunks.every((c) => !('usage' in c)), 'no usage field the client did not ask for');
    const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.equal(text, 'Echo: one two three');
    const last = await s.lastUpstreamRequest();
    assert.equal(last.body.stream_options.include_usage, true);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.stream, true);
    assert.equal(rec.usage_reported, true);
    assert.equal(rec.completion_tokens, 4);
    assert.ok(rec.ttft_us > 0);
  });

  test('streaming with include_usage: the usage chunk reaches the client', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`,
      chatBody('a b', { stream: true, stream_options: { include_usage: true } }));
    const events = sseData(await res.text());
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 3);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.completion_tokens, 3);
    assert.equal(rec.prompt_tokens, usage.usage.prompt_tokens);
  });

  test('legacy completions, whole and streamed', async () => {
    const res = await postJson(`${s.url}/v1/completions`, JSON.stringify({ model: 'dev-echo', prompt: 'p q' }));
    assert.equal(res.status, 200);
    assert.equal((await res.json()).choices[0].text, 'Echo: p q');
    const st = await postJson(`${s.url}/v1/completions`, JSON.stringify({ model: 'dev-echo', prompt: 'p q', stream: true }));
    const events = sseData(await st.text());
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(events.slice(0, -1).map((e) => JSON.parse(e).choices[0].text).join(''), 'Echo: p q');
  });

  test('a slow upstream within its timeout streams through', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`,
      chatBody('tg:first_byte_delay_ms=150 tg:chunk_delay_ms=30 tg:tokens=5', { stream: true }));
    const events = sseData(await res.text());
    assert.equal(events.length, 1 + 5 + 1 + 1);  // role, 5 tokens, finish, [DONE]
  });

  test('an upstream past its first-byte timeout gives 504', async () => {
    const t0 = Date.now();
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('tg:first_byte_delay_ms=2000'));
    assert.equal(res.status, 504);
    const body = await res.json();
    errorShape(body);
    assert.equal(body.error.code, 'upstream_timeout');
    assert.ok(Date.now() - t0 < 1500);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.status, 504);
    assert.equal(rec.error_code, 'upstream_timeout');
  });

  test('upstream errors pass through with their status and body', async () => {
    for (const status of [429, 500]) {
      const res = await postJson(`${s.url}/v1/chat/completions`, chatBody(`tg:fail=${status}`));
      assert.equal(res.status, status);
      const body = await res.json();
      errorShape(body);
      assert.equal(body.error.code, 'dev_failure');
      const rec = await s.usageFor(res.headers.get('x-request-id'));
      assert.equal(rec.status, status);
      assert.equal(rec.error_code, 'dev_failure');
    }
  });

  test('an upstream dying mid-stream ends the stream with an error event', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('tg:die_after=3 tg:tokens=10', { stream: true }));
    assert.equal(res.status, 200);
    const events = sseData(await res.text());  // the body must end, not hang
    const lastEvent = JSON.parse(events.at(-1));
    errorShape(lastEvent);
    assert.equal(lastEvent.error.code, 'upstream_unavailable');
    assert.equal(events.length, 3 + 1);
    const rec = await s.usageFor(res.headers.get('x-request-id'));
    assert.equal(rec.error_code, 'upstream_unavailable');
  });

  test('an upstream dying before a whole response gives 502', async () => {
    const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('tg:die_after=0'));
    assert.equal(res.status, 502);
    errorShape(await res.json());
  });

  test('a client disconnecting mid-stream cancels the upstream request and is recorded', async () => {
    const before = await s.upstreamStats();
    const id = 'disconnect-test-1';
    const body = chatBody('tg:chunk_delay_ms=40 tg:tokens=200', { stream: true });
    await new Promise((resolve, reject) => {
      const sock = net.connect(s.apiPort, '127.0.0.1', () => {
        sock.write(httpRequest('POST', '/v1/chat/completions', body,
          { 'Content-Type': 'application/json', 'x-request-id': id }));
      });
      let seen = '';
      sock.on('data', (d) => {
        seen += d;
        if ((seen.match(/data:/g) ?? []).length >= 3) { sock.destroy(); resolve(); }
      });
      sock.on('error', reject);
    });
    const rec = await s.usageFor(id);
    assert.equal(rec.client_disconnected, true);
    assert.equal(rec.stream, true);
    // The gateway closed its upstream connection, so the upstream saw its stream cut short
    // long before its 200 tokens x 40 ms were done.
    await waitFor(async () => (await s.upstreamStats()).streams_cut_by_client > before.streams_cut_by_client,
      { timeoutMs: 3000, what: 'upstream stream cancelled' });
    assert.ok(rec.latency_us < 5_000_000);
  });

  test('a client hanging up while the upstream is still working cancels the upstream request', async () => {
    const id = 'disconnect-before-response-1';
    const body = chatBody('tg:first_byte_delay_ms=3000');
    const t0 = Date.now();
    await new Promise((resolve, reject) => {
      const sock = net.connect(s.apiPort, '127.0.0.1', () => {
        sock.write(httpRequest('POST', '/v1/chat/completions', body,
          { 'Content-Type': 'application/json', 'x-request-id': id }));
        setTimeout(() => { sock.destroy(); resolve(); }, 150);
      });
      sock.on('error', reject);
    });
    const rec = await s.usageFor(id);
    assert.ok(Date.now() - t0 < 2000, 'recorded without waiting for the upstream');
    assert.equal(rec.client_disconnected, true);
    assert.equal(rec.error_code, 'client_disconnected');
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(text, /tollgate_upstream_requests_total\{upstream="dev",outcome="client_gone"\} [1-9]/);
  });

  test('pipelined keep-alive requests are answered in order on one connection', async () => {
    const reqs = [1, 2, 3].map((i) => httpRequest('POST', '/v1/chat/completions', chatBody(`n${i}`),
      { 'Content-Type': 'application/json', 'x-request-id': `pipe-${i}` })).join('')
      + httpRequest('GET', '/v1/models', '', { 'x-request-id': 'pipe-4' });
    const out = await rawExchange(s.apiPort, reqs, { until: (b) => (b.match(/HTTP\/1\.1 200/g) ?? []).length === 4 && b.includes('"object":"list"') });
    const ids = [...out.matchAll(/x-client-request-id: (\S+)/gi)].map((m) => m[1]);
    assert.deepEqual(ids, ['pipe-1', 'pipe-2', 'pipe-3']);
    assert.equal([...out.matchAll(/^x-request-id: req_/gim)].length, 4);
    for (const i of [1, 2, 3]) assert.ok(out.includes(`Echo: n${i}`));
    assert.ok(out.indexOf('Echo: n1') < out.indexOf('Echo: n2') && out.indexOf('Echo: n2') < out.indexOf('Echo: n3'));
  });

  test('a request pipelined while the one before it waits on the upstream is neither lost nor taken for a hang-up', async () => {
    const first = httpRequest('POST', '/v1/chat/completions', chatBody('tg:first_byte_delay_ms=250'),
      { 'Content-Type': 'application/json', 'x-request-id': 'late-pipe-1' });
    const second = httpRequest('POST', '/v1/chat/completions', chatBody('second'),
      { 'Content-Type': 'application/json', 'x-request-id': 'late-pipe-2' });
    const out = await new Promise((resolve, reject) => {
      let got = '';
      const sock = net.connect(s.apiPort, '127.0.0.1', () => {
        sock.write(first);
        // The disconnect watch is armed by now; these bytes must stay for the next request.
        setTimeout(() => sock.write(second), 100);
      });
      const deadline = setTimeout(() => { sock.destroy(); reject(new Error(`timed out; got: ${got}`)); }, 5000);
      sock.on('data', (d) => {
        got += d.toString();
        if ((got.match(/HTTP\/1\.1 200/g) ?? []).length === 2 && got.includes('Echo: second')) {
          clearTimeout(deadline);
          sock.destroy();
          resolve(got);
        }
      });
      sock.on('error', reject);
    });
    const ids = [...out.matchAll(/x-client-request-id: (\S+)/gi)].map((m) => m[1]);
    assert.deepEqual(ids, ['late-pipe-1', 'late-pipe-2']);
    const rec = await s.usageFor('late-pipe-1');
    assert.equal(rec.client_disconnected, false);
    assert.equal(rec.status, 200);
  });

  test('bad input gets OpenAI-shaped 4xx errors and changes nothing', async () => {
    const cases = [
      ['POST', '/v1/chat/completions', '{"model":', 400, null],
      ['POST', '/v1/chat/completions', '{"messages":[{"role":"user","content":"x"}]}', 400, 'missing_required_parameter'],
      ['POST', '/v1/chat/completions', '{"model":"dev-echo"}', 400, 'missing_required_parameter'],
      ['POST', '/v1/chat/completions', '{"model":"dev-echo","messages":"hi"}', 400, 'invalid_type'],
      ['POST', '/v1/chat/completions', '{"model":"dev-echo","messages":[{"role":"user","content":"\\ud800"}]}', 400, null],
      ['POST', '/v1/chat/completions', chatBody('x', { model: 'no-such-model' }), 404, 'model_not_found'],
      ['GET', '/v1/chat/completions', '', 405, 'method_not_allowed'],
      ['POST', '/v1/models', '', 405, 'method_not_allowed'],
      ['GET', '/v1/unknown', '', 404, null],
      ['GET', '/v1/models/no-such-model', '', 404, 'model_not_found'],
    ];
    const upstreamBefore = (await s.upstreamStats()).requests;
    for (const [method, target, body, status, code] of cases) {
      const res = await fetch(`${s.url}${target}`, { method, body: method === 'POST' ? body : undefined });
      assert.equal(res.status, status, `${method} ${target} ${body}`);
      const json = await res.json();
      errorShape(json);
      assert.equal(json.error.code, code, `${method} ${target} ${body}`);
      assert.ok(res.headers.get('x-request-id'));
    }
    assert.equal((await s.upstreamStats()).requests, upstreamBefore, 'nothing reached the upstream');
    assert.equal((await fetch(`${s.url}/v1/chat/completions`)).headers.get('allow'), 'POST');
    assert.equal((await fetch(`${s.url}/v1/models`, { method: 'DELETE' })).headers.get('allow'), 'GET');
    assert.equal((await fetch(`${s.adminUrl}/metrics`, { method: 'POST' })).headers.get('allow'), 'GET');
  });

  test('an oversized body gets 413 and oversized headers 431', async () => {
    const big = chatBody('x'.repeat(5000));
    const res = await postJson(`${s.url}/v1/chat/completions`, big);
    assert.equal(res.status, 413);
    const body = await res.json();
    errorShape(body);
    assert.equal(body.error.code, 'request_too_large');
    const out = await rawExchange(s.apiPort, httpRequest('GET', '/v1/models', '', { 'X-Big': 'y'.repeat(4000) }));
    assert.match(out, /^HTTP\/1\.1 431/);
    const garbage = await rawExchange(s.apiPort, 'NOT HTTP AT ALL\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400/);
    // Still serving.
    assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody('alive'))).status, 200);
  });

  test('ambiguous framing (request smuggling) gets 400 and the connection closes; chunked bodies are read', async () => {
    const upstreamBefore = (await s.upstreamStats()).requests;
    const body = chatBody('smuggled');
    const smuggled = `GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`;
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n';
    const chunk = (text) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    for (const bytes of [
      `${head}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(body)}0\r\n\r\n${smuggled}`,
      `${head}Content-Length: ${body.length}\r\nContent-Length: 5\r\n\r\n${body}${smuggled}`,
      `${head}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n${chunk(body)}0\r\n\r\n`,
      `${head}Transfer-Encoding: chunked\r\n\r\n${chunk(body).replace(/^[0-9a-f]+/, '+10')}0\r\n\r\n`,
      `${head}Content-Length : ${body.length}\r\n\r\n${body}`,
      `${head}Content-Length: ${body.length}\r\n\r\n${body}`.replaceAll('\r\n', '\n'),
    ]) {
      const out = await rawExchange(s.apiPort, bytes);  // resolves when the server closes
      assert.match(out, /^HTTP\/1\.1 400 /, JSON.stringify(bytes.slice(0, 160)));
      assert.equal(out.match(/HTTP\/1\.1 /g).length, 1, 'one answer, then the connection closed');
      errorShape(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)));
    }
    assert.equal((await s.upstreamStats()).requests, upstreamBefore, 'nothing reached the upstream');
    // A chunked body split over several chunks, then a pipelined request on the same connection.
    const parts = [body.slice(0, 10), body.slice(10, 30), body.slice(30)].map(chunk).join('');
    const out = await rawExchange(s.apiPort,
      `${head}Transfer-Encoding: chunked\r\n\r\n${parts}0\r\n\r\n${smuggled.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}`);
    assert.equal(out.match(/HTTP\/1\.1 200 /g)?.length, 2, out.slice(0, 300));
    assert.match(out, /"object":"chat.completion"/);
    assert.match(out, /"object":"list"/);
  });

  test('random garbage on the socket never takes the gateway down', async () => {
    let seed = 12345;
    const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
    for (let i = 0; i < 60; i++) {
      const len = rand() % 600;
      const bytes = Buffer.alloc(len);
      for (let k = 0; k < len; k++) bytes[k] = rand() & 0xff;
      const prefix = i % 2 ? Buffer.from('POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 40\r\n\r\n') : Buffer.alloc(0);
      await rawExchange(s.apiPort, Buffer.concat([prefix, bytes]), { timeoutMs: 300 });
    }
    assert.equal((await postJson(`${s.url}/v1/chat/completions`, chatBody('still alive'))).status, 200);
  });

  test('/v1/models lists the configured models in OpenAI shape', async () => {
    const body = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data.map((m) => m.id), ['dev-echo']);
    assert.equal(body.data[0].object, 'model');
    assert.equal(typeof body.data[0].created, 'number');
    const one = await (await fetch(`${s.url}/v1/models/dev-echo`)).json();
    assert.equal(one.id, 'dev-echo');
  });

  test('health, readiness and metrics on the admin listener', async () => {
    assert.equal((await fetch(`${s.adminUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${s.adminUrl}/readyz`)).status, 200);
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
    assert.match(text, /tollgate_http_requests_total\{listener="api",route="\/v1\/chat\/completions",status="200"\} \d+/);
    assert.match(text, /tollgate_upstream_requests_total\{upstream="dev",outcome="timeout"\} [1-9]/);
    assert.match(text, /tollgate_tokens_total\{model="dev-echo",class="completion"\} [1-9]/);
    assert.match(text, /tollgate_client_disconnects_total [1-9]/);
    assert.equal((await fetch(`${s.adminUrl}/nope`)).status, 404);
  });

  test('/metrics passes promtool check metrics', async () => {
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.error, undefined, 'promtool is installed (make test installs prometheus: scripts/deps.sh test)');
    assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  });
});

describe('upstream unreachable', () => {
  test('connection refused gives 502 upstream_unavailable', async () => {
    const dead = await freePort();
    const s = await startStack({ config: { upstream: { base_url: `http://127.0.0.1:${dead}/v1` } } });
    try {
      const res = await postJson(`${s.url}/v1/chat/completions`, chatBody('x'));
      assert.equal(res.status, 502);
      const body = await res.json();
      assert.equal(body.error.code, 'upstream_unavailable');
      assert.match(body.error.message, /Upstream 'dev' is unreachable/);
      const rec = await s.usageFor(res.headers.get('x-request-id'));
      assert.equal(rec.status, 502);
      assert.equal(rec.usage_reported, false);
    } finally {
      await s.stop();
    }
  });
});

describe('graceful shutdown', () => {
  test('SIGTERM stops accepting, lets an in-flight stream finish, then exits 0', async () => {
    const s = await startStack({ config: { server: { drain_timeout_ms: 10000 } } });
    try {
      const streaming = postJson(`${s.url}/v1/chat/completions`,
        chatBody('tg:chunk_delay_ms=50 tg:tokens=20', { stream: true })).then((r) => r.text());
      await sleep(200);  // the stream is under way
      // An idle keep-alive connection must not hold the drain up.
      const idle = net.connect(s.apiPort, '127.0.0.1');
      await new Promise((r) => idle.on('connect', r));
      s.gateway.child.kill('SIGTERM');
      await waitFor(async () => (await fetch(`${s.adminUrl}/readyz`)).status === 503,
        { what: '/readyz answering 503 while draining' });
      assert.equal((await fetch(`${s.adminUrl}/healthz`)).status, 200);
      await assert.rejects(fetch(`${s.url}/v1/models`), 'the API listener no longer accepts');
      const events = sseData(await streaming);
      assert.equal(events.at(-1), '[DONE]');
      assert.equal(events.length, 1 + 20 + 1 + 1);
      const { code } = await s.gateway.exited;
      assert.equal(code, 0);
      idle.destroy();
      await assert.rejects(fetch(`${s.url}/v1/models`));
    } finally {
      await s.stop();
    }
  });

  test('a stream longer than the drain timeout is cut at the deadline', async () => {
    const s = await startStack({ config: { server: { drain_timeout_ms: 300 } } });
    try {
      // 100 chunks 100 ms apart: ten seconds of stream, far past the 300 ms drain.
      const res = await postJson(`${s.url}/v1/chat/completions`,
        chatBody('tg:chunk_delay_ms=100 tg:tokens=100', { stream: true }));
      assert.equal(res.status, 200);
      let text = '';
      let endedAt = 0;
      const decoder = new TextDecoder();
      const reading = (async () => {
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
        }
      })().then(() => 'complete', (e) => `cut: ${e.cause?.code ?? e.message}`)
        .finally(() => { endedAt = performance.now(); });
      await sleep(200);
      const sigtermAt = performance.now();
      s.gateway.child.kill('SIGTERM');
      const { code, signal } = await s.gateway.exited;
      const exitedAt = performance.now();
      const ending = await reading;
      assert.equal(signal, null, 'exited by itself');
      assert.equal(code, 0, s.gateway.output());
      // Cut at the deadline, not before it and not long after.
      const cutAfter = endedAt - sigtermAt;
      assert.ok(cutAfter >= 290, `the stream ran until the drain deadline (cut after ${cutAfter} ms)`);
      assert.ok(exitedAt - sigtermAt < 3000, 'exited soon after the drain timeout');
      // What the client got: the chunks sent until the deadline, then a broken stream (no
      // terminating chunk, no [DONE]): a client cannot take the cut answer for a whole one.
      assert.match(ending, /^cut/);
      const events = sseData(text);
      assert.ok(!events.includes('[DONE]'), 'no [DONE]');
      const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
      assert.ok(chunks.length >= 3 && chunks.length < 20, `${chunks.length} chunks before the cut`);
    } finally {
      await s.stop();
    }
  });
});
