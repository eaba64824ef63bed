// Integration tests of the hourly usage aggregate (sql/025_usage_hourly.sql) against a real
// PostgreSQL and the real gateway: the overview's queries (every tenant or one, split by
// tenant, project, key or model, hourly, daily and monthly buckets, ranges on and off whole
// hours) and the refusals report equal a plain SQL aggregate over usage_events, with the
// aggregate behind, partly behind and caught up; and the aggregate is what answered.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { FINANCE, dbConfig, api, makeTenant, chat, givePlan } from '../lib/ledger.mjs';

const HOUR = 3600;
const DAY = 86400;

describe('usage from the hourly aggregate (real PostgreSQL)', () => {
  let pg;
  let s;
  let a;
  let b;
  const end = Math.ceil(Date.now() / 1000 / HOUR) * HOUR;  // the next whole hour
  let inserted = 0;

  // `n` events of tenant `t` from unix second `from`, one every `step` seconds: two models,
  // with and without project and key, some unrated, some refused (429, 402).
  function history(t, from, n, step) {
    const values = [];
    for (let i = 0; i < n; i += 1) {
      inserted += 1;
      const project = i % 4 === 3 ? 'NULL' : `'${t.project}'`;
      const key = i % 5 === 4 ? 'NULL' : `'${t.keyId}'`;
      const model = i % 3 === 0 ? 'dev-echo' : 'other-model';
      const status = i % 11 === 0 ? 429 : i % 13 === 0 ? 402 : 200;
      const cost = i % 6 === 5 ? 'NULL' : String(1_000_003 * (i % 17) + i);
      values.push(`('${t.tenant}', to_timestamp(${from + i * step}), 'req_hourly_${inserted}',
        ${project}, ${key}, '${model}', ${status}, ${10 + i}, ${i % 3}, ${5 + (i % 7)}, ${cost})`);
    }
    pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, project_id,
      api_key_id, model, status, prompt_tokens, cached_prompt_tokens, completion_tokens,
      cost_micros, endpoint, upstream, stream, batch, reasoning_tokens, usage_reported,
      estimated, latency_us, client_disconnected)
      SELECT v.*, '/v1/chat/completions', 'dev', false, false, 0, true, false, 1, false
      FROM (VALUES ${values.join(',')}) v`);
  }

  // The bucket start of an event, as the API counts it.
  const bucketSql = (q) => (q.bucket === '1mo'
    ? `greatest(${q.start}, extract(epoch from date_trunc('month', occurred_at, 'UTC'))::bigint)`
    : `${q.start} + floor((extract(epoch from occurred_at) - ${q.start}) / ${q.width})::bigint`
      + ` * ${q.width}`);

  // {"<bucket>|<group>": [requests, input, cached, output, cost, unrated]} from SQL.
  function sqlRows(q) {
    const by = q.groupBy ? `coalesce(${q.groupBy}, '<null>')` : `'all'`;
    const filter = q.tenant ? `AND tenant_id = '${q.tenant}'` : '';
    const rows = pg.query(`SELECT ${bucketSql(q)}, ${by}, count(*), sum(prompt_tokens),
        sum(cached_prompt_tokens), sum(completion_tokens), coalesce(sum(cost_micros), 0),
        count(*) - count(cost_micros)
      FROM usage_events WHERE occurred_at >= to_timestamp(${q.start})
        AND occurred_at < to_timestamp(${q.end}) ${filter} GROUP BY 1, 2`);
    return Object.fromEntries(rows.map(([bk, k, ...n]) => [`${bk}|${k}`, n.map(Number)]));
  }

  async function apiRows(q) {
    const params = new URLSearchParams({ start_time: q.start, end_time: q.end,
      bucket_width: q.bucket, limit: { '1h': 168, '1d': 31, '1mo': 12 }[q.bucket] });
    if (q.groupBy) params.set('group_by', q.groupBy);
    if (q.tenant) params.set('tenant_id', q.tenant);
    const out = {};
    let page = '';
    for (;;) {
      if (page) params.set('page', page);
      const r = await api(s.adminUrl, 'GET', `/finance/v1/usage?${params}`, { token: FINANCE });
      assert.equal(r.status, 200, r.text);
      for (const bucket of r.json.data) {
        for (const x of bucket.results) {
          const k = q.groupBy ? x[q.groupBy] ?? '<null>' : 'all';
          out[`${bucket.start_time}|${k}`] = [x.num_model_requests, x.input_tokens,
            x.input_cached_tokens, x.output_tokens, x.cost_micros, x.unrated_requests];
        }
      }
      if (!r.json.has_more) return out;
      page = r.json.next_page;
    }
  }

  async function refusals(q) {
    const params = new URLSearchParams({ start_time: q.start, end_time: q.end,
      bucket_width: q.bucket });
    if (q.tenant) params.set('tenant_id', q.tenant);
    const r = await api(s.adminUrl, 'GET', `/finance/v1/refusals?${params}`, { token: FINANCE });
    assert.equal(r.status, 200, r.text);
    const want = pg.query(`SELECT ${bucketSql(q)}, count(*) FILTER (WHERE status = 429),
        count(*) FILTER (WHERE status = 402) FROM usage_events
      WHERE status IN (429, 402) AND occurred_at >= to_timestamp(${q.start})
        AND occurred_at < to_timestamp(${q.end})
        ${q.tenant ? `AND tenant_id = '${q.tenant}'` : ''} GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(r.json.data.map((x) => [x.start_time, x.refused_429, x.refused_402]),
      want.map((row) => row.map(Number)), `refusals ${JSON.stringify(q)}`);
  }

  const QUERIES = () => [
    // The overview's: whole hours, every tenant, by model and by tenant; the top lists.
    { start: end - DAY, end, bucket: '1h', width: HOUR, groupBy: 'model' },
    { start: end - 3 * DAY, end, bucket: '1d', width: DAY, groupBy: 'tenant_id' },
    { start: end - 3 * DAY, end, bucket: '1mo', groupBy: 'project_id' },
    { start: end - 3 * DAY, end, bucket: '1mo', groupBy: 'api_key_id' },
    // One tenant; and ranges that start and end inside an hour (cut hours read from events).
    { start: end - 2 * DAY, end, bucket: '1h', width: HOUR, groupBy: 'model', tenant: a.tenant },
    { start: end - 3 * DAY + 1234, end: end - 777, bucket: '1d', width: DAY, groupBy: 'model' },
    { start: end - 3 * DAY + 59, end, bucket: '1mo', groupBy: 'tenant_id' },
    { start: end - 2 * DAY + 1800, end: end - 1800, bucket: '1d', width: DAY },
  ];

  async function checkAll(label) {
    for (const q of QUERIES()) {
      assert.deepEqual(await apiRows(q), sqlRows(q), `${label}: ${JSON.stringify(q)}`);
    }
    for (const q of QUERIES().filter((x) => x.bucket !== '1mo')) await refusals(q);
  }

  const advance = () => pg.value('SELECT tollgate_advance_usage_rollup(10000)');

  before(async () => {
    pg = await startPostgres();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-usage-hourly-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: dbConfig(pg, dir) });
    a = await makeTenant(s.adminUrl, 'HourlyA');
    b = await makeTenant(s.adminUrl, 'HourlyB');
    await givePlan(s.adminUrl, a.tenant);
    for (let i = 0; i < 4; i += 1) assert.equal((await chat(s.url, a.key, `hourly ${i}`)).status, 200);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events
      WHERE tenant_id = '${a.tenant}'`)) === 4, { what: 'live rows committed' });
    history(a, end - 3 * DAY + 17, 300, 857);
    history(b, end - 2 * DAY - 1000, 120, 1201);
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('every overview query and the refusals equal SQL: aggregate behind, partly, caught up',
    async () => {
      await checkAll('behind');
      advance();
      await checkAll('caught up');
      history(a, end - DAY + 5, 50, 1500);  // above the watermark, in hours it holds
      await checkAll('partly behind');
      advance();
      await checkAll('caught up again');
    });

  test('the aggregate is what answered: a change made to it shows (then is undone)', async () => {
    advance();
    const q = { start: end - 3 * DAY, end, bucket: '1d', width: DAY, groupBy: 'tenant_id' };
    const before = await apiRows(q);
    // One row of the aggregate, by its key.
    const [hour, project, key, model] = pg.query(`SELECT extract(epoch from hour)::bigint,
      coalesce(project_id, ''), coalesce(api_key_id, ''), model FROM usage_hourly
      WHERE tenant_id = '${b.tenant}' ORDER BY hour, model LIMIT 1`)[0];
    const bump = (n) => assert.equal(Number(pg.value(`WITH u AS (UPDATE usage_hourly
      SET requests = requests + ${n} WHERE hour = to_timestamp(${hour})
        AND tenant_id = '${b.tenant}' AND coalesce(project_id, '') = '${project}'
        AND coalesce(api_key_id, '') = '${key}' AND model = '${model}' RETURNING 1)
      SELECT count(*) FROM u`)), 1);
    bump(1000);
    const bumped = await apiRows(q);
    bump(-1000);
    const changed = Object.keys(before).filter((k) => before[k][0] !== bumped[k]?.[0]);
    assert.equal(changed.length, 1, 'one bucket changed');
    assert.equal(bumped[changed[0]][0] - before[changed[0]][0], 1000);
    assert.deepEqual(await apiRows(q), sqlRows(q));
  });

  test('the rollup rebuilt: the aggregate is rebuilt with it and still equals SQL', async () => {
    pg.query(`DELETE FROM usage_events WHERE request_id IN
      (SELECT request_id FROM usage_events WHERE tenant_id = '${b.tenant}' LIMIT 7)`);
    pg.query('SELECT tollgate_rebuild_usage_rollup()');
    await checkAll('rebuilt');
  });
});
