// End-to-end with a database: the official `openai` npm client with a Tollgate API key, and curl
// and tollctl as an admin and a finance user would use them, against the real gateway and a real
// PostgreSQL.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import OpenAI from 'openai';
import { binDir, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { ADMIN, FINANCE, dbConfig } from '../lib/ledger.mjs';

describe('openai client with API keys, tollctl, curl (real PostgreSQL)', () => {
  let pg;
  let s;
  let env;
  const tollctl = (...args) => execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' }).trim();
  before(async () => {
    pg = await startPostgres();
    s = await startStack({ config: dbConfig(pg, path.join('/tmp', `tollgate-e2e-${process.pid}`)) });
    env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN, TOLLGATE_FINANCE_TOKEN: FINANCE };
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('tollctl makes a tenant and a key; the openai client uses it; the usage shows up', async () => {
    const tenant = tollctl('tenants', 'create', '--name', 'E2E', '--field', 'id');
    assert.match(tenant, /^ten_/);
    const project = tollctl('projects', 'create', '--tenant', tenant, '--name', 'app', '--field', 'id');
    const key = tollctl('keys', 'create', '--tenant', tenant, '--project', project, '--models', 'dev-echo', '--field', 'key');
    assert.match(key, /^tg-/);

    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: key, maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'metered hello' }] });
    assert.equal(res.choices[0].message.content, 'Echo: metered hello');
    const stream = await client.chat.completions.create({
      model: 'dev-echo', stream: true, messages: [{ role: 'user', content: 'metered stream' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'Echo: metered stream');
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['dev-echo']);

    // A wrong key: the client raises its AuthenticationError.
    const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: `tg-${'x'.repeat(43)}`, maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key');

    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${tenant}'`)) === 2,
      { what: 'two usage rows' });
    const start = Math.floor(Date.now() / 1000) - 600;
    // The key holder's own view, through curl.
    const mine = JSON.parse(execFileSync('curl', ['-sf', `${s.url}/v1/usage?start_time=${start}&bucket_width=1h`,
      '-H', `Authorization: Bearer ${key}`], { encoding: 'utf8' }));
    const results = mine.data.flatMap((b) => b.results);
    assert.equal(results.reduce((x, r) => x + r.num_model_requests, 0), 2);
    // Finance through tollctl: CSV with one row for the tenant.
    const csv = tollctl('usage', '--start', String(start), '--bucket', '1h', '--group-by', 'tenant_id', '--tenant', tenant, '--csv');
    const lines = csv.split('\n');
    assert.equal(lines.length, 2);
    assert.equal(lines[1].split(',')[2], tenant);
    assert.equal(lines[1].split(',')[11], '2');
    // Revocation through tollctl reaches the client within the cache TTL.
    const keyId = JSON.parse(tollctl('keys', 'list', '--tenant', tenant)).data[0].id;
    tollctl('keys', 'revoke', keyId);
    await waitFor(async () => {
      try {
        await client.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'x' }] });
        return false;
      } catch (e) {
        return e instanceof OpenAI.AuthenticationError;
      }
    }, { timeoutMs: 3000, what: 'revoked key refused' });
    const audit = JSON.parse(tollctl('audit', '--tenant', tenant)).data.map((e) => e.action);
    assert.deepEqual(audit, ['tenant.create', 'project.create', 'key.create', 'key.revoke']);
  });
});
