// Integration tests of the admin and finance route table's dispatch, against a real PostgreSQL
// and the real gateway: which paths are 404s and which 405s, how empty segments and trailing
// slashes match, what is checked before the route, and that rejected finance credit queries are
// answered (they once crashed the gateway).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startStack } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { FINANCE, dbConfig, api } from '../lib/ledger.mjs';

describe('admin and finance routes (real PostgreSQL)', () => {
  let pg;
  let s;
  before(async () => {
    pg = await startPostgres();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-routes-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: dbConfig(pg, dir) });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('unknown admin paths are 404s; a known collection without the method is a 405', async () => {
    for (const p of ['/admin/', '/admin/v1', '/admin/v2/tenants', '/admin/v1/nope', '/admin/v1/tenants/a/b/c']) {
      const r = await api(s.adminUrl, 'GET', p);
      assert.equal(r.status, 404, p);
      assert.equal(r.json.error.message, `Invalid URL (GET ${p})`);
    }
    for (const [method, p] of [['PUT', '/admin/v1/tenants'], ['GET', '/admin/v1/tenants/x/bogus'],
      ['GET', '/admin/v1/invoices/run'], ['POST', '/admin/v1/credit_grants/x'], ['DELETE', '/admin/v1/tenants/x']]) {
      const r = await api(s.adminUrl, method, p, { body: method === 'POST' ? {} : undefined });
      assert.equal(r.status, 405, `${method} ${p}`);
      assert.equal(r.json.error.message, `Unsupported method ${method} for ${p}.`);
      assert.equal(r.headers.get('allow'), null);
    }
  });

  test('checks before the route: the query string, then a GET\'s limit, then a POST\'s body', async () => {
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/nope?x=%zz')).status, 400);
    assert.equal((await api(s.adminUrl, 'GET', '/admin/v1/nope?limit=0')).status, 404);
    const limit = await api(s.adminUrl, 'GET', '/admin/v1/tenants/x/bogus?limit=0');
    assert.equal(limit.status, 400);
    assert.equal(limit.json.error.param, 'limit');
    const body = await api(s.adminUrl, 'POST', '/admin/v1/tenants/x/bogus', { body: 'not json' });
    assert.equal(body.status, 400);
    assert.equal(body.json.error.message, 'The body must be a JSON object.');
  });

  test('admin paths ignore empty segments; {id} takes one segment, after literal ones', async () => {
    const t = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'Routes' } });
    assert.equal(t.status, 201, t.text);
    assert.equal((await api(s.adminUrl, 'GET', '/admin//v1//tenants/')).status, 200);
    assert.equal((await api(s.adminUrl, 'GET', `/admin/v1/tenants/${t.json.id}/`)).json.id, t.json.id);
    const asId = await api(s.adminUrl, 'GET', '/admin/v1/budgets/reconcile');
    assert.equal(asId.status, 404);
    assert.equal(asId.json.error.message, 'No budget with id reconcile.');
    const off = await api(s.adminUrl, 'POST', '/admin/v1/budgets/reconcile', { body: { tenant_id: t.json.id } });
    assert.equal(off.status, 404);
    assert.equal(off.json.error.code, 'budgets_disabled');
  });

  test('a POST revoke with a body that is not JSON is a 400 and revokes nothing', async () => {
    const t = await api(s.adminUrl, 'POST', '/admin/v1/tenants', { body: { name: 'Revoke' } });
    const k = await api(s.adminUrl, 'POST', '/admin/v1/keys', { body: { tenant_id: t.json.id } });
    assert.equal(k.status, 201, k.text);
    const bad = await api(s.adminUrl, 'POST', `/admin/v1/keys/${k.json.id}/revoke`, { body: 'not json' });
    assert.equal(bad.status, 400);
    assert.equal((await api(s.adminUrl, 'GET', `/admin/v1/keys/${k.json.id}`)).json.status, 'active');
    const gone = await api(s.adminUrl, 'DELETE', `/admin/v1/keys/${k.json.id}`, { body: 'not json' });
    assert.equal(gone.status, 200, gone.text);
    assert.equal(gone.json.status, 'revoked');
  });

  test('finance paths match exactly; anything but GET is a 403; errors carry x-request-id', async () => {
    for (const p of ['/finance/v1/usage/', '/finance//v1/usage', '/finance/v1/invoices//', '/finance/v1/invoices/a/b', '/finance/nope']) {
      const r = await api(s.adminUrl, 'GET', p, { token: FINANCE });
      assert.equal(r.status, 404, p);
      assert.ok(r.headers.get('x-request-id'), p);
    }
    const list = await api(s.adminUrl, 'GET', '/finance/v1/invoices/', { token: FINANCE });
    assert.equal(list.status, 200, list.text);
    assert.equal(list.json.object, 'list');
    const post = await api(s.adminUrl, 'POST', '/finance/nope', { token: FINANCE, body: {} });
    assert.equal(post.status, 403);
    assert.equal(post.json.error.message, 'The finance API is read-only.');
  });

  test('rejected finance credit queries are 400s and the gateway keeps serving', async () => {
    for (const p of ['/finance/v1/credits', '/finance/v1/credit_transfers', '/finance/v1/credits?limit=0',
      '/finance/v1/credits?tenant_id=x&limit=0', '/finance/v1/credit_transfers?tenant_id=x&limit=500']) {
      const r = await api(s.adminUrl, 'GET', p, { token: FINANCE });
      assert.equal(r.status, 400, p);
      assert.equal(r.json.error.param, p.includes('tenant_id') ? 'limit' : 'tenant_id', p);
    }
    assert.equal((await fetch(`${s.adminUrl}/healthz`)).status, 200);
    assert.equal(s.gateway.child.exitCode, null);
  });
});
