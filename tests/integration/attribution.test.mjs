// Attribution below the API key, end to end against a real PostgreSQL: the end user, tags and
// session of each request as the official `openai` client, curl-style headers and admin
// defaults give them, stored on the ledger row; the 400s for bad values; and spool records
// written before attribution replaying with those columns empty.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { binDir, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { ADMIN, dbConfig, api, makeTenant, chat, spoolSegment } from '../lib/ledger.mjs';

describe('attribution: end user, tags and session on every usage event (real PostgreSQL)', () => {
  let pg;
  let s;
  // usage_events with each event's tags (their set, `ts`: sql/017_usage_tag_sets.sql).
  const TAGGED_EVENTS = 'usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id';
  // The attribution of the ledger row of request `id`: [end_user, tags (text), session_id].
  const rowOf = (id) => pg.query(`SELECT coalesce(end_user, '<null>'), coalesce(ts.tags::text, '<null>'),
    coalesce(session_id, '<null>'), status FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id WHERE request_id = '${id}'`)[0];
  const waitRow = (id) => waitFor(() => rowOf(id) !== undefined, { what: `the row of ${id}` }).then(() => rowOf(id));

  before(async () => {
    pg = await startPostgres();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-attribution-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: dbConfig(pg, dir) });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('the openai client: `user` and `metadata` over the key and project defaults', async () => {
    const t = await makeTenant(s.adminUrl, 'Attr', { default_tags: { team: 'key-team', app: 'web' } });
    const p = await api(s.adminUrl, 'POST', `/admin/v1/projects/${t.project}`,
      { body: { default_tags: { team: 'project-team', cost_center: 'cc-7' } } });
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.json.default_tags, { team: 'project-team', cost_center: 'cc-7' });
    const k = await api(s.adminUrl, 'GET', `/admin/v1/keys/${t.keyId}`);
    assert.deepEqual(k.json.default_tags, { team: 'key-team', app: 'web' });

    const client = new OpenAI({
      baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0,
      defaultHeaders: { 'x-tollgate-session': 'task-0042' },
    });
    const { response } = await client.chat.completions.create({
      model: 'dev-echo', user: 'customer-17', metadata: { feature: 'summarize', app: 'mobile' },
      messages: [{ role: 'user', content: 'attributed' }],
    }).withResponse();
    const row = await waitRow(response.headers.get('x-request-id'));
    assert.equal(row[0], 'customer-17');
    // The request's app wins over the key's; the key's team over the project's.
    assert.deepEqual(JSON.parse(row[1]), { app: 'mobile', cost_center: 'cc-7', feature: 'summarize', team: 'key-team' });
    assert.equal(row[2], 'task-0042');

    // Streaming and legacy completions carry it the same way.
    const stream = await client.chat.completions.create({
      model: 'dev-echo', stream: true, user: 'customer-18', messages: [{ role: 'user', content: 'streamed' }],
    }).withResponse();
    for await (const chunk of stream.data) assert.ok(chunk);
    const srow = await waitRow(stream.response.headers.get('x-request-id'));
    assert.equal(srow[0], 'customer-18');
    assert.deepEqual(JSON.parse(srow[1]), { app: 'web', cost_center: 'cc-7', team: 'key-team' });
    const legacy = await client.completions.create({ model: 'dev-echo', prompt: 'old', user: 'customer-19' })
      .withResponse();
    assert.equal((await waitRow(legacy.response.headers.get('x-request-id')))[0], 'customer-19');

    // Without defaults and without attribution every column is NULL.
    await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}`, { body: { default_tags: null } });
    await api(s.adminUrl, 'POST', `/admin/v1/projects/${t.project}`, { body: { default_tags: {} } });
    await waitFor(async () => {
      const r = await chat(s.url, t.key, 'bare');
      const id = r.headers.get('x-request-id');
      await r.text();
      const bare = await waitRow(id);
      return bare[0] === '<null>' && bare[1] === '<null>' && bare[2] === '<null>';
    }, { what: 'defaults cleared (key cache expiry)' });
  });

  test('headers win over the body: x-tollgate-end-user, x-tollgate-tags', async () => {
    const t = await makeTenant(s.adminUrl, 'AttrHdr');
    const r = await chat(s.url, t.key, 'headers', { user: 'body-user', metadata: { team: 'body', env: 'dev' } },
      { 'x-tollgate-end-user': 'header-user', 'x-tollgate-tags': 'team=header, region=eu', 'x-tollgate-session': 's-1' });
    assert.equal(r.status, 200, await r.clone().text());
    const row = await waitRow(r.headers.get('x-request-id'));
    await r.text();
    assert.equal(row[0], 'header-user');
    assert.deepEqual(JSON.parse(row[1]), { env: 'dev', region: 'eu', team: 'header' });
    assert.equal(row[2], 's-1');
    // Tags are searchable with jsonb operators, on the finance view and on their sets.
    assert.equal(pg.value(`SELECT count(*) FROM finance.usage_events WHERE tenant_id = '${t.tenant}' AND tags @> '{"region":"eu"}'`), '1');
    assert.equal(pg.value(`SELECT count(*) FROM ${TAGGED_EVENTS} WHERE tenant_id = '${t.tenant}' AND ts.tags ->> 'team' = 'header'`), '1');
  });

  test('under load: 600 concurrent requests with mixed end users, tags and sessions, each row exact', async () => {
    const t = await makeTenant(s.adminUrl, 'AttrLoad', { default_tags: { source: 'key' } });
    const expected = new Map();
    const send = async (i) => {
      const user = `user-${i % 97}`;
      const meta = { team: `team-${i % 7}`, n: String(i) };
      const headers = i % 3 === 0 ? { 'x-tollgate-tags': `team=hdr-${i % 5}`, 'x-tollgate-session': `sess-${i % 11}` } : {};
      const stream = i % 4 === 0 ? { stream: true } : {};
      const r = await chat(s.url, t.key, `load ${i}`, { user, metadata: meta, ...stream }, headers);
      assert.equal(r.status, 200);
      await r.text();
      const tags = { ...meta, source: 'key', ...(i % 3 === 0 ? { team: `hdr-${i % 5}` } : {}) };
      expected.set(r.headers.get('x-request-id'), [user, tags, i % 3 === 0 ? `sess-${i % 11}` : '<null>']);
    };
    for (let round = 0; round < 6; round += 1) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => send(round * 100 + j)));
    }
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`) === '600',
      { what: '600 rows' });
    const rows = pg.query(`SELECT request_id, end_user, ts.tags::text, coalesce(session_id, '<null>') FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id
      WHERE tenant_id = '${t.tenant}'`);
    assert.equal(rows.length, 600);
    for (const [id, user, tags, session] of rows) {
      const [eu, et, es] = expected.get(id);
      assert.equal(user, eu);
      assert.deepEqual(JSON.parse(tags), et);
      assert.equal(session, es);
    }
  });

  test('bad values are 400s naming the field, and reach no upstream', async () => {
    const t = await makeTenant(s.adminUrl, 'AttrBad');
    const cases = [
      [{ user: 'u'.repeat(257) }, {}, 'user'],
      [{ user: 42 }, {}, 'user'],
      [{ metadata: { n: 1 } }, {}, 'metadata'],
      [{ metadata: Object.fromEntries([...Array(17).keys()].map((i) => [`k${i}`, 'v'])) }, {}, 'metadata'],
      [{ metadata: { ['k'.repeat(65)]: 'v' } }, {}, 'metadata'],
      [{}, { 'x-tollgate-tags': 'a=1,a=2' }, 'x-tollgate-tags'],
      [{}, { 'x-tollgate-session': 's'.repeat(129) }, 'x-tollgate-session'],
      [{}, { 'x-tollgate-end-user': 'x'.repeat(300) }, 'x-tollgate-end-user'],
    ];
    for (const [extra, headers, param] of cases) {
      const r = await chat(s.url, t.key, 'bad', extra, headers);
      const body = await r.json();
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(body.error.param, param);
      assert.equal(body.error.type, 'invalid_request_error');
      assert.match(body.error.message, /Invalid/);
    }
    // Admin defaults are checked the same way.
    const bad = await api(s.adminUrl, 'POST', `/admin/v1/keys/${t.keyId}`, { body: { default_tags: { a: 1 } } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'default_tags');
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`) === String(cases.length),
      { what: 'the refusals recorded' });
    assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND status <> 400`), '0');
    assert.equal(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}' AND prompt_tokens > 0`), '0');
  });

  test('tollctl sets default tags on a key', async () => {
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const tollctl = (...args) => execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' }).trim();
    const t = await makeTenant(s.adminUrl, 'AttrCtl');
    const key = JSON.parse(tollctl('keys', 'create', '--tenant', t.tenant, '--tags', 'team=ops,tier=gold'));
    assert.deepEqual(key.default_tags, { team: 'ops', tier: 'gold' });
    const r = await chat(s.url, key.key, 'ctl');
    const row = await waitRow(r.headers.get('x-request-id'));
    await r.text();
    assert.deepEqual(JSON.parse(row[1]), { team: 'ops', tier: 'gold' });
    const cleared = JSON.parse(tollctl('keys', 'update', key.id, '--tags', ''));
    assert.equal(cleared.default_tags, null);
  });

  test('spool records of the version before attribution replay with the columns NULL', async () => {
    const t = await makeTenant(s.adminUrl, 'AttrReplay');
    const r = await chat(s.url, t.key, 'replay me', { user: 'replayed-user' }, { 'x-tollgate-tags': 'a=b' });
    const id = r.headers.get('x-request-id');
    await r.text();
    await waitRow(id);
    const cols = 'tenant_id, occurred_at, request_id, project_id, api_key_id, endpoint, model, upstream, stream, batch, status, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, counted_prompt_tokens, counted_completion_tokens, usage_reported, estimated, latency_us, ttft_us, client_disconnected, error_code, client_request_id';
    const copy = (extra) => execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${cols}${extra} FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id WHERE request_id = '${id}') TO STDOUT`], { encoding: 'utf8' }).trim();
    const v2Line = copy('');
    const v3Line = copy(', end_user, ts.tags, session_id');
    // The same request under two new ids: one as version 2 wrote it, one as version 3 does.
    const v2 = `\0` + `2\t\\N\t\t\t${v2Line.replace(id, `${id}_v2`)}\n`;
    const v3 = `\0` + `3\t\\N\t\t\t${v3Line.replace(id, `${id}_v3`)}\n`;
    await s.gateway.stop();
    const spoolDir = JSON.parse(readFileSync(s.configPath, 'utf8')).ledger.spool_dir;
    writeFileSync(path.join(spoolDir, 'ledger-9100000000000001.spool'), spoolSegment([v2, v3]));
    await s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => f.startsWith('ledger-9100000000000001')).length === 0,
      { what: 'spool replayed' }).catch((e) => { throw new Error(`${e.message}\n${s.gateway.output()}`); });
    assert.deepEqual(rowOf(`${id}_v2`).slice(0, 3), ['<null>', '<null>', '<null>']);
    const v3Row = rowOf(`${id}_v3`);
    assert.equal(v3Row[0], 'replayed-user');
    assert.deepEqual(JSON.parse(v3Row[1]), { a: 'b' });
  });
});
