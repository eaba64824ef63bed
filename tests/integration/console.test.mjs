// The web console's server side against the real gateway and PostgreSQL: its files and their
// security headers on both listeners, sign-in for each role, the session cookie and CSRF token
// on the admin, finance and key-holder APIs, the finance role's 403s, sign-out, and the
// refusals aggregate (docs/CONSOLE.md).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startStack, rawExchange, httpRequest } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { budgetConfig } from '../lib/budgets.mjs';
import { ADMIN, FINANCE, api, makeTenant, chat } from '../lib/ledger.mjs';

async function signIn(base, token, headers = {}) {
  const res = await fetch(`${base}/console/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ token }),
  });
  const json = await res.json();
  const setCookie = res.headers.get('set-cookie') ?? '';
  return { status: res.status, json, setCookie, cookie: setCookie.split(';')[0], headers: res.headers };
}

// A request as the console sends it: the cookie, and the CSRF token on changes.
async function asConsole(base, method, target, session, { body, csrf = session.json.csrf_token, headers = {} } = {}) {
  const res = await fetch(`${base}${target}`, {
    method,
    headers: {
      cookie: session.cookie,
      ...(method !== 'GET' && csrf ? { 'x-csrf-token': csrf } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

function assertSecurityHeaders(headers, what) {
  const csp = headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/, what);
  assert.match(csp, /frame-ancestors 'none'/, what);
  assert.match(csp, /script-src 'self'(;|$)/, what);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, what);
  assert.equal(headers.get('x-content-type-options'), 'nosniff', what);
  assert.equal(headers.get('referrer-policy'), 'no-referrer', what);
  assert.equal(headers.get('x-frame-options'), 'DENY', what);
}

describe('web console: files, sessions, CSRF and roles (real PostgreSQL)', () => {
  let pg;
  let redis;
  let s;
  let t;
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-console-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: { ...budgetConfig(pg, redis, dir), console: { session_ttl_s: 600 } } });
    t = await makeTenant(s.adminUrl, 'Console Co');
  });
  after(async () => {
    if (process.env.CONSOLE_DEBUG) console.log(s?.gateway.output().slice(-4000));
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('the files are served on both listeners with the security headers, and revalidate', async () => {
    for (const base of [s.adminUrl, s.url]) {
      const redirect = await fetch(`${base}/console`, { redirect: 'manual' });
      assert.equal(redirect.status, 308);
      assert.equal(redirect.headers.get('location'), '/console/');
      const index = await fetch(`${base}/console/`);
      assert.equal(index.status, 200);
      assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
      assertSecurityHeaders(index.headers, `${base}/console/`);
      const html = await index.text();
      assert.match(html, /<script type="module" src="js\/app.js"><\/script>/);
      assert.doesNotMatch(html, /<script>|<style|style=|https?:\/\//, 'no inline script or style, nothing from elsewhere');
      const js = await fetch(`${base}/console/js/app.js`);
      assert.equal(js.status, 200);
      assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
      const uplot = await fetch(`${base}/console/vendor/uPlot.esm.js`);
      assert.equal(uplot.status, 200);
      assert.match(await uplot.text(), /export \{ uPlot as default \}|export default/);
      const etag = uplot.headers.get('etag');
      const again = await fetch(`${base}/console/vendor/uPlot.esm.js`, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);
      const missing = await fetch(`${base}/console/../../etc/passwd`);
      assert.equal(missing.status, 404);
      const put = await fetch(`${base}/console/index.html`, { method: 'PUT' });
      assert.equal(put.status, 405);
    }
  });

  test('HEAD and 304 answers carry no body, and HEAD tells the length a GET gets', async () => {
    const file = '/console/js/app.js';
    const get = await fetch(`${s.url}${file}`);
    const body = Buffer.from(await get.arrayBuffer());
    const etag = get.headers.get('etag');
    // Three requests on one connection: if the HEAD or the 304 sent any body, the responses
    // after it would not start where their status lines are looked for.
    const raw = await rawExchange(s.apiPort, httpRequest('HEAD', file) +
      httpRequest('GET', file, '', { 'If-None-Match': etag }) +
      httpRequest('GET', file, '', { Connection: 'close' }));
    const heads = [];
    let at = 0;
    for (let i = 0; i < 3; i++) {
      const end = raw.indexOf('\r\n\r\n', at);
      assert.ok(end > at, `response ${i + 1} has a head`);
      heads.push(raw.slice(at, end));
      at = end + 4;
    }
    const length = (h) => h.match(/\r\ncontent-length: (\d+)/i)?.[1];
    assert.match(heads[0], /^HTTP\/1\.1 200 /);
    assert.equal(length(heads[0]), String(body.length), 'HEAD: the length of the GET body');
    assert.match(heads[0], /\r\netag: /i);
    assert.match(heads[1], /^HTTP\/1\.1 304 /);
    assert.equal(length(heads[1]), undefined, '304: no Content-Length');
    assert.match(heads[2], /^HTTP\/1\.1 200 /);
    assert.equal(length(heads[2]), String(body.length));
    assert.equal(Buffer.byteLength(raw.slice(at), 'latin1'), body.length,
      'only the GET sent a body');
    // An error answered to a HEAD request keeps its length and drops its body too.
    const missing = await rawExchange(s.apiPort, httpRequest('HEAD', '/console/nothing-here.js',
      '', { Connection: 'close' }));
    assert.match(missing, /^HTTP\/1\.1 404 /);
    assert.ok(Number(length(missing)) > 0);
    assert.equal(missing.slice(missing.indexOf('\r\n\r\n') + 4), '');
  });

  test('sign-in: the admin and finance tokens on the operator listener, nothing else', async () => {
    const admin = await signIn(s.adminUrl, ADMIN);
    assert.equal(admin.status, 201);
    assert.equal(admin.json.role, 'admin');
    assert.match(admin.json.csrf_token, /^[0-9a-f]{64}$/);
    assert.match(admin.setCookie, /^tollgate_console=[0-9a-f]{64}; Path=\/; Max-Age=600; HttpOnly; SameSite=Strict$/);
    assert.ok(admin.json.expires_at > Date.now() / 1000 + 590);
    assertSecurityHeaders(admin.headers, 'sign-in');
    assert.equal(admin.headers.get('cache-control'), 'no-store');
    const finance = await signIn(s.adminUrl, FINANCE);
    assert.equal(finance.json.role, 'finance');
    assert.equal((await signIn(s.adminUrl, 'wrong')).status, 401);
    assert.equal((await signIn(s.adminUrl, t.key)).status, 401, 'an API key is not an operator token');
    assert.equal((await signIn(s.url, ADMIN)).status, 401, 'the admin token is not an API key');
    // A form post (not JSON) and another origin are refused.
    const form = await fetch(`${s.adminUrl}/console/session`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN}`,
    });
    assert.equal(form.status, 400);
    assert.equal((await signIn(s.adminUrl, ADMIN, { origin: 'http://evil.example' })).status, 403);
    // Secure behind an https proxy.
    const tls = await signIn(s.adminUrl, ADMIN, { 'x-forwarded-proto': 'https' });
    assert.match(tls.setCookie, /; Secure$/);
  });

  test('an admin session reads and changes the admin API, changes only with the CSRF token', async () => {
    const admin = await signIn(s.adminUrl, ADMIN);
    const list = await asConsole(s.adminUrl, 'GET', '/admin/v1/tenants', admin);
    assert.equal(list.status, 200, list.text);
    assert.ok(list.json.data.some((x) => x.id === t.tenant));
    const noCsrf = await asConsole(s.adminUrl, 'POST', '/admin/v1/tenants', admin, { body: { name: 'X' }, csrf: '' });
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.json.error.code, 'csrf_token_mismatch');
    const badCsrf = await asConsole(s.adminUrl, 'POST', '/admin/v1/tenants', admin, { body: { name: 'X' }, csrf: 'f'.repeat(64) });
    assert.equal(badCsrf.status, 403);
    const otherOrigin = await asConsole(s.adminUrl, 'POST', '/admin/v1/tenants', admin,
      { body: { name: 'X' }, headers: { origin: 'http://evil.example' } });
    assert.equal(otherOrigin.status, 403);
    assert.equal(otherOrigin.json.error.code, 'csrf_origin_mismatch');
    const made = await asConsole(s.adminUrl, 'POST', '/admin/v1/tenants', admin, {
      body: { name: 'Made in console' }, headers: { origin: s.adminUrl, 'x-tollgate-actor': 'console' },
    });
    assert.equal(made.status, 201, made.text);
    const audit = await api(s.adminUrl, 'GET', `/admin/v1/audit_log?tenant_id=${made.json.id}`);
    assert.equal(audit.json.data[0].actor, 'admin:console');
    // Another session's CSRF token does not fit this one.
    const other = await signIn(s.adminUrl, ADMIN);
    const crossed = await asConsole(s.adminUrl, 'POST', '/admin/v1/tenants', admin, { body: { name: 'Y' }, csrf: other.json.csrf_token });
    assert.equal(crossed.status, 403);
    // The finance API reads with it too.
    assert.equal((await asConsole(s.adminUrl, 'GET', `/finance/v1/usage?start_time=0&bucket_width=1mo&limit=1`, admin)).status, 200);
  });

  test('a finance session reads everything and changes nothing: 403 even with the CSRF token', async () => {
    const finance = await signIn(s.adminUrl, FINANCE);
    assert.equal((await asConsole(s.adminUrl, 'GET', '/admin/v1/tenants', finance)).status, 200);
    assert.equal((await asConsole(s.adminUrl, 'GET', `/admin/v1/keys?tenant_id=${t.tenant}`, finance)).status, 200);
    assert.equal((await asConsole(s.adminUrl, 'GET', `/finance/v1/invoices?tenant_id=${t.tenant}`, finance)).status, 200);
    for (const [method, target, body] of [
      ['POST', '/admin/v1/tenants', { name: 'nope' }],
      ['POST', `/admin/v1/keys/${t.keyId}/revoke`, {}],
      ['DELETE', `/admin/v1/keys/${t.keyId}`, undefined],
      ['POST', '/admin/v1/budgets', { tenant_id: t.tenant, metric: 'requests', window: 'day', limit: 1 }],
    ]) {
      const r = await asConsole(s.adminUrl, method, target, finance, { body });
      assert.equal(r.status, 403, `${method} ${target}`);
      assert.equal(r.json.error.message, 'The finance role is read-only.');
    }
    assert.equal((await asConsole(s.adminUrl, 'POST', '/finance/v1/usage', finance, { body: {} })).status, 403);
    const key = await api(s.adminUrl, 'GET', `/admin/v1/keys/${t.keyId}`);
    assert.equal(key.json.status, 'active', 'nothing changed');
  });

  test('sessions: unknown and signed-out cookies are 401s; sign-out needs the CSRF token', async () => {
    const admin = await signIn(s.adminUrl, ADMIN);
    const shown = await asConsole(s.adminUrl, 'GET', '/console/session', admin);
    assert.equal(shown.status, 200);
    assert.equal(shown.json.csrf_token, admin.json.csrf_token);
    assert.equal(shown.json.signed_in, true);
    const forged = { cookie: `tollgate_console=${'a'.repeat(64)}`, json: { csrf_token: '' } };
    assert.equal((await asConsole(s.adminUrl, 'GET', '/admin/v1/tenants', forged)).status, 401);
    assert.equal((await asConsole(s.adminUrl, 'DELETE', '/console/session', admin, { csrf: '' })).status, 403);
    const out = await asConsole(s.adminUrl, 'DELETE', '/console/session', admin);
    assert.equal(out.status, 200);
    assert.match(out.headers.get('set-cookie'), /^tollgate_console=; Path=\/; Max-Age=0/);
    assert.equal((await asConsole(s.adminUrl, 'GET', '/admin/v1/tenants', admin)).status, 401);
    const ended = await asConsole(s.adminUrl, 'GET', '/console/session', admin);
    assert.equal(ended.status, 200);
    assert.equal(ended.json.signed_in, false);
    // The operator session's cookie means nothing on the public listener, and the other way.
    const again = await signIn(s.adminUrl, ADMIN);
    assert.equal((await asConsole(s.url, 'GET', '/v1/usage?start_time=0', again)).status, 401);
  });

  test('a key holder signs in on the public listener and reads only its own tenant', async () => {
    const other = await makeTenant(s.adminUrl, 'Other Co');
    assert.equal((await chat(s.url, t.key, 'mine')).status, 200);
    assert.equal((await chat(s.url, other.key, 'theirs')).status, 200);
    const holder = await signIn(s.url, t.key);
    assert.equal(holder.status, 201, JSON.stringify(holder.json));
    assert.equal(holder.json.role, 'key_holder');
    assert.equal(holder.json.tenant_id, t.tenant);
    assert.equal(holder.json.tenant.name, 'Console Co');
    assert.match(holder.setCookie, /^tollgate_console_key=[0-9a-f]{64};/);
    const start = Math.floor(Date.now() / 1000) - 3600;
    let projects = [];
    const deadline = Date.now() + 5000;
    while (projects.length === 0 && Date.now() < deadline) {
      const usage = await asConsole(s.url, 'GET', `/v1/usage?start_time=${start}&bucket_width=1d&group_by=project_id`, holder);
      assert.equal(usage.status, 200, usage.text);
      projects = usage.json.data.flatMap((b) => b.results.map((r) => r.project_id));
      if (projects.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual([...new Set(projects)], [t.project]);
    assert.equal((await asConsole(s.url, 'GET', '/v1/budgets', holder)).status, 200);
    // A completion is never sent on a session, and the operator APIs do not know it.
    const completion = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST', headers: { cookie: holder.cookie, 'content-type': 'application/json', 'x-csrf-token': holder.json.csrf_token },
      body: JSON.stringify({ model: 'dev-echo', messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(completion.status, 401);
    assert.equal((await asConsole(s.adminUrl, 'GET', '/admin/v1/tenants', holder)).status, 401);
    // Revoking the key ends its session (within the key cache's time).
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}/revoke`)).status, 200);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await asConsole(s.url, 'GET', '/v1/budgets', holder)).status, 401);
    assert.equal((await asConsole(s.url, 'GET', '/console/session', holder)).json.signed_in, false);
  });

  test('GET /finance/v1/refusals: refused requests per bucket, aggregated in the database', async () => {
    const r = await makeTenant(s.adminUrl, 'Refused Co');
    const budget = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: r.tenant, metric: 'requests', window: 'day', limit: 1 } });
    assert.equal(budget.status, 201, budget.text);
    const start = Math.floor(Date.now() / 1000) - 7200;
    const q = `/finance/v1/refusals?start_time=${start}&bucket_width=1h&tenant_id=${r.tenant}`;
    const empty = await api(s.adminUrl, 'GET', q, { token: FINANCE });
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual(empty.json.data, []);
    assert.equal(empty.json.bucket_width_s, 3600);
    // One request fits the budget; the next three are refused (429) and land in the ledger.
    assert.equal((await chat(s.url, r.key, 'one')).status, 200);
    for (let i = 0; i < 3; ++i) assert.equal((await chat(s.url, r.key, 'over')).status, 429);
    let full;
    const deadline = Date.now() + 5000;
    do {
      full = await api(s.adminUrl, 'GET', q, { token: FINANCE });
      assert.equal(full.status, 200, full.text);
    } while ((full.json.data[0]?.refused_429 ?? 0) < 3 && Date.now() < deadline);
    assert.equal(full.json.data.length, 1);
    assert.equal(full.json.data[0].refused_429, 3);
    assert.equal(full.json.data[0].refused_402, 0);
    assert.equal((full.json.data[0].start_time - start) % 3600, 0);
    for (const bad of ['bucket_width=1m&start_time=0', 'start_time=x', `start_time=${start}&end_time=${start}`,
      'start_time=0&bucket_width=1h']) {
      assert.equal((await api(s.adminUrl, 'GET', `/finance/v1/refusals?${bad}`, { token: FINANCE })).status, 400, bad);
    }
  });
});
