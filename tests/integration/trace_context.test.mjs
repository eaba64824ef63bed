// W3C trace context end to end, with a real gateway, PostgreSQL and the development upstream:
// a valid `traceparent` is continued upstream (same trace id, the gateway's own span id as the
// parent), its trace id lands on the ledger row, the usage log line and the gateway's log
// lines; a missing or malformed one is replaced by a new trace; journal records of version 4
// (before the trace id) replay with it NULL.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, waitFor, freePort, postJson, chatBody, sseData } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, makeTenant, chat, spoolSegment } from '../lib/ledger.mjs';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${CALLER_SPAN}-01`;
const FORMAT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

describe('W3C traceparent (real PostgreSQL, development upstream)', () => {
  let pg;
  let s;
  let t;
  before(async () => {
    pg = await startPostgres();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-trace-'));
    const upstreamPort = await freePort();
    const deadPort = await freePort();  // nothing listens: requests there fail with a log line
    s = await startStack({
      upstreamPort,
      config: {
        ...dbConfig(pg, dir),
        upstreams: {
          dev: { base_url: `http://127.0.0.1:${upstreamPort}/v1` },
          dead: { base_url: `http://127.0.0.1:${deadPort}/v1` },
        },
        models: { 'dev-echo': { upstream: 'dev' }, 'dead-model': { upstream: 'dead' } },
      },
    });
    t = await makeTenant(s.adminUrl, 'Traced');
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  const traceRow = async (id) => {
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = '${id}'`) === '1',
      { what: `ledger row ${id}` });
    return pg.value(`SELECT coalesce(trace_id, '<null>') FROM usage_events WHERE request_id = '${id}'`);
  };

  test('a valid traceparent is continued upstream with a new span, and its trace id is on the row', async () => {
    const r = await chat(s.url, t.key, 'traced request', {}, { traceparent: VALID });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-request-id');
    await r.text();
    const sent = (await s.lastUpstreamRequest()).headers.traceparent;
    const m = FORMAT.exec(sent ?? '');
    assert.ok(m, `upstream got traceparent ${sent}`);
    assert.equal(m[1], TRACE);
    assert.notEqual(m[2], CALLER_SPAN);  // the gateway's own span is the upstream's parent
    assert.notEqual(m[2], '0'.repeat(16));
    assert.equal(m[3], '01');
    assert.equal(await traceRow(id), TRACE);
    // The usage log line and the finance view carry it too.
    assert.equal((await s.usageFor(id)).trace_id, TRACE);
    assert.equal(pg.value(`SELECT trace_id FROM finance.usage_events WHERE request_id = '${id}'`,), TRACE);
    // An unsampled caller stays unsampled.
    const u = await chat(s.url, t.key, 'unsampled', {}, { traceparent: `00-${TRACE}-${CALLER_SPAN}-00` });
    await u.text();
    assert.match((await s.lastUpstreamRequest()).headers.traceparent, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
  });

  test('a streamed request carries the trace too', async () => {
    const other = '0af7651916cd43dd8448eb211c80319c';
    const r = await postJson(`${s.url}/v1/chat/completions`, chatBody('stream me', { stream: true }),
      { authorization: `Bearer ${t.key}`, traceparent: `00-${other}-b7ad6b7169203331-01` });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-request-id');
    assert.ok(sseData(await r.text()).length > 0);
    assert.match((await s.lastUpstreamRequest()).headers.traceparent, new RegExp(`^00-${other}-`));
    assert.equal(await traceRow(id), other);
  });

  test('a missing or malformed traceparent is replaced by a new trace', async () => {
    const seen = new Set();
    for (const bad of [undefined, 'garbage', `00-${TRACE.toUpperCase()}-${CALLER_SPAN}-01`,
      `00-${'0'.repeat(32)}-${CALLER_SPAN}-01`, `ff-${TRACE}-${CALLER_SPAN}-01`, `${VALID}-extra`]) {
      const r = await chat(s.url, t.key, 'untraced', {}, bad === undefined ? {} : { traceparent: bad });
      assert.equal(r.status, 200);
      const id = r.headers.get('x-request-id');
      await r.text();
      const m = FORMAT.exec((await s.lastUpstreamRequest()).headers.traceparent ?? '');
      assert.ok(m, `a traceparent went upstream for ${bad}`);
      assert.notEqual(m[1], TRACE, `${bad} was not continued`);
      assert.notEqual(m[1], '0'.repeat(32));
      assert.equal(await traceRow(id), m[1]);
      seen.add(m[1]);
    }
    assert.equal(seen.size, 6, 'each request started its own trace');
  });

  test('a request refused before forwarding and an upstream failure keep the trace id', async () => {
    const refused = await chat(s.url, t.key, 'no such model', { model: 'missing-model' }, { traceparent: VALID });
    assert.equal(refused.status, 404);
    const rid = refused.headers.get('x-request-id');
    await refused.text();
    assert.equal((await s.usageFor(rid)).trace_id, TRACE);
    const failed = await chat(s.url, t.key, 'to a dead upstream', { model: 'dead-model' }, { traceparent: VALID });
    assert.equal(failed.status, 502);
    const fid = failed.headers.get('x-request-id');
    await failed.text();
    // The gateway's warning names the request and its trace.
    await waitFor(() => s.gateway.output().split('\n').some((l) => l.includes('upstream request failed')
      && l.includes(`"request_id":"${fid}"`) && l.includes(`"trace_id":"${TRACE}"`)), { what: 'the failure log line' });
    assert.equal(await traceRow(fid), TRACE);
  });

  test('journal records of version 4 (before the trace id) replay with it NULL', async () => {
    const r = await chat(s.url, t.key, 'replay me', {}, { traceparent: VALID });
    const id = r.headers.get('x-request-id');
    await r.text();
    await traceRow(id);
    // The row as version 4 wrote it: every column of the current layout but the last.
    const cols = execFileSync('psql', [pg.url, '-X', '-q', '-t', '-A', '-c',
      "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'usage_events' AND table_schema = 'public'"],
    { encoding: 'utf8' }).trim().split(',');
    const v4Cols = ['tenant_id', 'occurred_at', 'request_id', 'project_id', 'api_key_id', 'endpoint', 'model', 'upstream',
      'stream', 'batch', 'status', 'prompt_tokens', 'cached_prompt_tokens', 'completion_tokens', 'reasoning_tokens',
      'counted_prompt_tokens', 'counted_completion_tokens', 'usage_reported', 'estimated', 'latency_us', 'ttft_us',
      'client_disconnected', 'error_code', 'client_request_id', 'end_user', 'ts.tags', 'session_id',
      'upstream_endpoint', 'attempts', 'routing_rule'];
    assert.ok(cols.includes('trace_id'));
    const line = execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${v4Cols.map((c) => (c === 'ts.tags' ? c : `e.${c}`)).join(', ')} FROM usage_events e LEFT JOIN usage_tag_sets ts ON ts.id = e.tag_set_id WHERE request_id = '${id}') TO STDOUT`],
    { encoding: 'utf8' }).trim();
    const v4 = `\0` + `4\t\\N\t\t\t${line.replace(id, `${id}_v4`)}\n`;
    await s.gateway.stop();
    const spoolDir = JSON.parse(readFileSync(s.configPath, 'utf8')).ledger.spool_dir;
    writeFileSync(path.join(spoolDir, 'ledger-9200000000000001.spool'), spoolSegment([v4]));
    await s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => f.startsWith('ledger-9200000000000001')).length === 0,
      { what: 'spool replayed' }).catch((e) => { throw new Error(`${e.message}\n${s.gateway.output()}`); });
    assert.equal(await traceRow(`${id}_v4`), '<null>');
    assert.equal(await traceRow(id), TRACE);
  });
});
