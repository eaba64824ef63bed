// Integration tests of usage reports by attribution (end user, tags, session) with their cost,
// top-N ordering and tenant isolation, against a real PostgreSQL and the real gateway: every
// answer is checked against a plain SQL aggregate over usage_events, with the usage rollup
// behind, partly behind and ahead of the events (it must not change a figure).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { binDir, startStack, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { FINANCE, dbConfig, api, makeTenant, chat, givePlan } from '../lib/ledger.mjs';

const DAY = 86400;
// A tag key with a comma, a space and a quote: written `tag:` + encodeURIComponent(key) in
// group_by and filter names, then URL-encoded once more as every query value is.
const ODD_KEY = 'cost "center",eu';
const tagParam = (key) => encodeURIComponent(`tag:${encodeURIComponent(key)}`);

describe('usage by end user, tag and session (real PostgreSQL)', () => {
  let pg;
  let s;
  let a;
  let b;
  const now = Math.floor(Date.now() / 1000);
  const today = new Date();
  const monthStart = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1) / 1000;
  const prevStart = Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1) / 1000;
  let inserted = 0;

  // Rows of `tenant` written straight into usage_events (as old history would be), `n` of them
  // from unix second `from`, one every `step` seconds.
  function history(tenant, from, n, step, salt) {
    const values = [];
    for (let i = 0; i < n; i += 1) {
      inserted += 1;
      const user = i % 5 === 4 ? 'NULL' : `'user ${(i * 7 + salt) % 4}'`;
      const tags = i % 4 === 3 ? 'NULL'
        : `'${JSON.stringify({ team: ['search', 'ads', 'infra'][(i + salt) % 3], [ODD_KEY]: i % 2 ? 'yes' : 'no' })}'`;
      const cost = i % 6 === 5 ? 'NULL' : String(1_000_003 * ((i * 13 + salt) % 17) + i);
      const session = i % 3 === 0 ? 'NULL' : `'sess-${Math.floor(i / 4)}'`;
      values.push(`('${tenant}', to_timestamp(${from + i * step}), 'req_hist_${inserted}', 'dev-echo', ${10 + i}, ${i % 3},
        ${5 + (i % 7)}, ${cost}, ${user}, tollgate_tag_set_id(${tags}::jsonb), ${session})`);
    }
    pg.query(`INSERT INTO usage_events (tenant_id, occurred_at, request_id, model, prompt_tokens,
      cached_prompt_tokens, completion_tokens, cost_micros, end_user, tag_set_id, session_id, endpoint, upstream,
      stream, batch, status, reasoning_tokens, usage_reported, estimated, latency_us, client_disconnected)
      SELECT v.*, '/v1/chat/completions', 'dev', false, false, 200, 0, true, false, 1, false
      FROM (VALUES ${values.join(',')}) v`);
  }

  // The SQL aggregate of tenant `tenant` over [from, to), by the expression `by`.
  function sqlGroups(tenant, from, to, by, extra = '') {
    const rows = pg.query(`SELECT coalesce(${by}, '<null>'), count(*), sum(prompt_tokens), sum(completion_tokens),
        coalesce(sum(cost_micros), 0), count(*) - count(cost_micros)
      FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id
      WHERE tenant_id = '${tenant}' AND occurred_at >= to_timestamp(${from})
        AND occurred_at < to_timestamp(${to}) ${extra} GROUP BY 1`);
    return Object.fromEntries(rows.map(([k, ...n]) => [k, n.map(Number)]));
  }

  // A report's results (every bucket) as {group: [requests, input, output, cost, unrated]}.
  function apiGroups(page, key) {
    const out = {};
    for (const bucket of page.data) {
      for (const r of bucket.results) {
        const k = key(r) ?? '<null>';
        const prev = out[k] ?? [0, 0, 0, 0, 0];
        out[k] = [prev[0] + r.num_model_requests, prev[1] + r.input_tokens, prev[2] + r.output_tokens,
          prev[3] + r.cost_micros, prev[4] + r.unrated_requests];
      }
    }
    return out;
  }

  const finance = async (q) => {
    const r = await api(s.adminUrl, 'GET', `/finance/v1/usage?${q}`, { token: FINANCE });
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  const advance = () => pg.value('SELECT tollgate_advance_usage_rollup(10000)');

  before(async () => {
    pg = await startPostgres();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-usage-attr-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    s = await startStack({ config: dbConfig(pg, dir) });
    a = await makeTenant(s.adminUrl, 'AttrA');
    b = await makeTenant(s.adminUrl, 'AttrB');
    await givePlan(s.adminUrl, a.tenant);
    const sends = [];
    for (let i = 0; i < 12; i += 1) {
      const headers = [
        { 'x-tollgate-end-user': 'alice', 'x-tollgate-tags': 'team=search,feature=chat', 'x-tollgate-session': 's1' },
        { 'x-tollgate-end-user': 'bob', 'x-tollgate-tags': 'team=ads', 'x-tollgate-session': 's2' },
        { 'x-tollgate-tags': 'team=search' },
      ][i % 3];
      sends.push(chat(s.url, a.key, `attribution ${'word '.repeat(i)}`, {}, headers).then((r) => r.text()));
    }
    for (let i = 0; i < 3; i += 1) {
      sends.push(chat(s.url, b.key, 'other tenant', {},
        { 'x-tollgate-end-user': 'mallory', 'x-tollgate-tags': 'team=search', 'x-tollgate-session': 'sb' }).then((r) => r.text()));
    }
    await Promise.all(sends);
    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id IN ('${a.tenant}', '${b.tenant}')`)) === 15,
      { what: 'live rows committed' });
    // History: last month (three days of it), and this month's first day.
    history(a.tenant, prevStart + 2 * DAY + 100, 40, 3001, 1);
    history(a.tenant, prevStart + 9 * DAY, 25, 777, 2);
    history(a.tenant, prevStart + 12 * DAY, 60, 4 * 3600, 7);
    history(a.tenant, monthStart + 3600, 20, 60, 3);
    history(b.tenant, prevStart + 2 * DAY, 10, 500, 4);
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('group_by end_user, a tag and session_id: groups equal SQL and sum exactly, before and after the rollup', async () => {
    const range = `start_time=${prevStart}&end_time=${now + 60}&tenant_id=${a.tenant}`;
    const check = async (label) => {
      for (const [q, by, key] of [
        ['group_by=end_user', 'end_user', (r) => r.end_user],
        ['group_by=tag:team', "tags->>'team'", (r) => r.tags.team],
        [`group_by=${tagParam(ODD_KEY)}`, `tags->>'${ODD_KEY}'`, (r) => r.tags[ODD_KEY]],
        ['group_by=session_id', 'session_id', (r) => r.session_id],
      ]) {
        const want = sqlGroups(a.tenant, prevStart, now + 60, by);
        // The same question with a model filter is never served by the rollup.
        for (const raw of ['', '&model=dev-echo']) {
          const page = await finance(`${range}&bucket_width=1mo&limit=2&${q}${raw}`);
          assert.deepEqual(apiGroups(page, key), want, `${label}: ${q}${raw}`);
        }
        // The groups of the period add up to every event's cost.
        const total = Number(pg.value(`SELECT coalesce(sum(cost_micros), 0) FROM usage_events WHERE tenant_id = '${a.tenant}'
          AND occurred_at >= to_timestamp(${prevStart})`));
        const page = await finance(`${range}&bucket_width=1mo&limit=2&${q}`);
        assert.equal(Object.values(apiGroups(page, key)).reduce((x, g) => x + g[3], 0), total, `${label}: ${q} cost`);
      }
    };
    await check('rollup behind');
    advance();
    await check('rollup caught up');
    // Events above the watermark, in days the rollup holds: read from usage_events.
    history(a.tenant, prevStart + 2 * DAY + 50, 7, 1000, 5);
    history(a.tenant, monthStart + 7200, 5, 30, 6);
    await check('rollup partly behind');
    advance();
    await check('rollup caught up again');
    // And the rollup is what answered: a change made to it shows (then is undone).
    const bump = (n) => pg.query(`UPDATE usage_rollup SET requests = requests + ${n}
      WHERE tenant_id = '${a.tenant}' AND dimension = 'end_user' AND grain = 'm' AND value = 'user 1'
      RETURNING 1`).length;
    const months = bump(1000);
    assert.ok(months >= 1);
    const page = await finance(`${range}&bucket_width=1mo&limit=2&group_by=end_user`);
    bump(-1000);
    const want = sqlGroups(a.tenant, prevStart, now + 60, 'end_user');
    assert.equal(apiGroups(page, (r) => r.end_user)['user 1'][0], want['user 1'][0] + 1000 * months);
  });

  test('the rollup rebuilt after events were removed by hand: reports equal SQL again', async () => {
    advance();
    const range = `start_time=${prevStart}&end_time=${now + 60}&bucket_width=1mo&limit=2&tenant_id=${a.tenant}&group_by=end_user`;
    pg.query(`DELETE FROM usage_events WHERE tenant_id = '${a.tenant}' AND end_user = 'user 2'
      AND occurred_at < to_timestamp(${monthStart})`);
    const want = sqlGroups(a.tenant, prevStart, now + 60, 'end_user');
    assert.notDeepEqual(apiGroups(await finance(range), (r) => r.end_user), want, 'the rollup still counts them');
    pg.query('SELECT tollgate_rebuild_usage_rollup()');
    assert.deepEqual(apiGroups(await finance(range), (r) => r.end_user), want);
  });

  test('daily buckets: each day and end user equal SQL (rollup days, partial days from the events)', async () => {
    advance();
    const from = prevStart + 2 * DAY + 3600;  // starts inside a day: that day is read from the events
    const to = prevStart + 12 * DAY;
    const page = await finance(`start_time=${from}&end_time=${to}&bucket_width=1d&limit=31&tenant_id=${a.tenant}&group_by=end_user`);
    for (const bucket of page.data) {
      const want = sqlGroups(a.tenant, bucket.start_time, Math.min(bucket.end_time, to), 'end_user');
      assert.deepEqual(apiGroups({ data: [bucket] }, (r) => r.end_user), want, `bucket ${bucket.start_time}`);
    }
  });

  test('ranges that cut months and days: every bucket equals SQL (a month less its other days)', async () => {
    advance();
    const ranges = [[prevStart + 5 * DAY, monthStart + 5 * DAY], [prevStart + 2 * DAY + 7200, now + 60],
      [prevStart + 9 * DAY, prevStart + 10 * DAY], [prevStart, monthStart - DAY],
      [prevStart + 13 * DAY + 600, now + 60], [prevStart + 3 * DAY, prevStart + 28 * DAY],
      // Most of last month's days with usage lie in this range, and more lie after its end.
      [prevStart + 2 * DAY, prevStart + 10 * DAY]];
    for (const [from, to] of ranges) {
      for (const [width, limit] of [['1mo', 3], ['1d', 31]]) {
        for (const [q, by, key] of [['group_by=end_user', 'end_user', (r) => r.end_user],
          ['group_by=tag:team', "tags->>'team'", (r) => r.tags.team], ['', "'all'", () => 'all']]) {
          let page = await finance(`start_time=${from}&end_time=${to}&bucket_width=${width}&limit=${limit}&tenant_id=${a.tenant}&${q}`);
          for (;;) {
            for (const bucket of page.data) {
              const want = sqlGroups(a.tenant, bucket.start_time, Math.min(bucket.end_time, to), by);
              assert.deepEqual(apiGroups({ data: [bucket] }, key), want, `${from}..${to} ${width} ${q} @${bucket.start_time}`);
            }
            if (!page.has_more) break;
            page = await finance(`start_time=${from}&end_time=${to}&bucket_width=${width}&limit=${limit}&tenant_id=${a.tenant}&${q}&page=${page.next_page}`);
          }
        }
      }
    }
  });

  test('filters: end_user, tag (also with an odd key) and session_id', async () => {
    advance();
    const range = `start_time=${prevStart}&end_time=${now + 60}&bucket_width=1mo&limit=2&tenant_id=${a.tenant}`;
    const total = (page) => apiGroups(page, () => 'all').all ?? [0, 0, 0, 0, 0];
    const want = (extra) => sqlGroups(a.tenant, prevStart, now + 60, "'all'", extra).all ?? [0, 0, 0, 0, 0];
    assert.deepEqual(total(await finance(`${range}&end_user=${encodeURIComponent('user 1')}`)), want("AND end_user = 'user 1'"));
    assert.deepEqual(total(await finance(`${range}&tag:team=search`)), want("AND tags->>'team' = 'search'"));
    assert.deepEqual(total(await finance(`${range}&${tagParam(ODD_KEY)}=yes`)), want(`AND tags->>'${ODD_KEY}' = 'yes'`));
    assert.deepEqual(total(await finance(`${range}&session_id=s1`)), want("AND session_id = 's1'"));
    assert.deepEqual(total(await finance(`${range}&tag:team=search&group_by=end_user`)),
      want("AND tags->>'team' = 'search'"));
    assert.deepEqual(total(await finance(`${range}&end_user=alice&group_by=end_user`)), want("AND end_user = 'alice'"));
    const nobody = await finance(`${range}&end_user=nobody&group_by=tag:team`);
    assert.deepEqual(nobody.data.flatMap((bk) => bk.results), []);
  });

  test('top N: order=cost_desc|tokens_desc|requests_desc with group_limit', async () => {
    advance();
    const range = `start_time=${prevStart}&end_time=${monthStart}&bucket_width=1mo&tenant_id=${a.tenant}`;
    const sql = (measure) => pg.query(`SELECT coalesce(end_user, '<null>') FROM usage_events WHERE tenant_id = '${a.tenant}'
        AND occurred_at >= to_timestamp(${prevStart}) AND occurred_at < to_timestamp(${monthStart})
        GROUP BY end_user ORDER BY ${measure} DESC, end_user NULLS LAST LIMIT 2`).map((r) => r[0]);
    for (const [order, measure] of [['cost_desc', 'coalesce(sum(cost_micros), 0)'],
      ['tokens_desc', 'sum(prompt_tokens) + sum(completion_tokens)'], ['requests_desc', 'count(*)']]) {
      for (const raw of ['', '&model=dev-echo']) {
        const page = await finance(`${range}&group_by=end_user&order=${order}&group_limit=2${raw}`);
        assert.equal(page.data.length, 1);
        assert.deepEqual(page.data[0].results.map((r) => r.end_user ?? '<null>'), sql(measure), `${order}${raw}`);
      }
    }
    // Without a limit every group is listed, largest cost first.
    const all = (await finance(`${range}&group_by=end_user&order=cost_desc`)).data[0].results;
    const costs = all.map((r) => r.cost_micros);
    assert.deepEqual(costs, [...costs].sort((x, y) => y - x));
    assert.equal(all.length, Object.keys(sqlGroups(a.tenant, prevStart, monthStart, 'end_user')).length);
  });

  test('cost: micro-units summed, minor units that add up, the currency, unrated events counted', async () => {
    advance();
    const page = await finance(`start_time=${prevStart}&end_time=${now + 60}&bucket_width=1mo&limit=2&group_by=tenant_id,end_user`);
    for (const bucket of page.data) {
      const mine = bucket.results.filter((r) => r.tenant_id === a.tenant);
      const micros = mine.reduce((x, r) => x + r.cost_micros, 0);
      // USD: two decimals; the bucket's results add up to their total rounded half up.
      assert.equal(mine.reduce((x, r) => x + r.cost_minor, 0), Math.floor((micros + 5000) / 10000));
      for (const r of mine) {
        assert.equal(r.currency, 'USD');
        assert.ok(Math.abs(r.cost_minor * 10000 - r.cost_micros) < 10000, JSON.stringify(r));
      }
      // Tenant B has no plan: no currency, no minor units, every event unrated.
      for (const r of bucket.results.filter((x) => x.tenant_id === b.tenant)) {
        assert.equal(r.currency, null);
        assert.equal(r.cost_minor, null);
      }
    }
    const unrated = Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${b.tenant}' AND cost_micros IS NULL`));
    const bGroups = apiGroups(page, (r) => (r.tenant_id === b.tenant ? 'b' : 'a'));
    assert.equal(bGroups.b[4], unrated);
    assert.equal(bGroups.b[0], Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${b.tenant}'`)));
  });

  test('CSV: the new columns, one per grouped tag, and the same sums as JSON', async () => {
    advance();
    const q = `start_time=${prevStart}&end_time=${now + 60}&bucket_width=1mo&tenant_id=${a.tenant}&group_by=end_user,${tagParam(ODD_KEY)},tag:team`;
    const csv = await api(s.adminUrl, 'GET', `/finance/v1/usage?${q}&format=csv`, { token: FINANCE });
    assert.equal(csv.status, 200);
    const lines = csv.text.trim().split('\n');
    assert.equal(lines[0], 'start_time,end_time,tenant_id,project_id,api_key_id,model,batch,input_tokens,'
      + 'input_cached_tokens,output_tokens,output_reasoning_tokens,num_model_requests,end_user,session_id,'
      + 'cost_micros,cost_minor,currency,unrated_requests,"tag:cost ""center"",eu",tag:team');
    const json = await finance(`${q}&limit=2`);
    const results = json.data.flatMap((bk) => bk.results);
    assert.equal(lines.length - 1, results.length);
    const cells = (line) => {
      const out = [''];
      let quoted = false;
      for (let i = 0; i < line.length; i += 1) {
        const c = line[i];
        if (quoted && c === '"' && line[i + 1] === '"') { out[out.length - 1] += '"'; i += 1; }
        else if (c === '"') quoted = !quoted;
        else if (c === ',' && !quoted) out.push('');
        else out[out.length - 1] += c;
      }
      return out;
    };
    let cost = 0;
    for (const l of lines.slice(1)) cost += Number(cells(l)[14]);
    assert.equal(cost, results.reduce((x, r) => x + r.cost_micros, 0));
    const first = cells(lines[1]);
    assert.equal(first.length, 20);
    assert.equal(first[12], results[0].end_user ?? '');
    assert.equal(first[19], results[0].tags.team ?? '');
  });

  test('/v1/usage: a key sees only its own tenant by end user, tag and session, whatever it asks', async () => {
    advance();
    const get = async (key, q) => {
      const r = await fetch(`${s.url}/v1/usage?start_time=${prevStart}&bucket_width=1mo&limit=2&${q}`,
        { headers: { authorization: `Bearer ${key}` } });
      return { status: r.status, json: await r.json() };
    };
    const mineB = Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${b.tenant}'`));
    const users = new Set(pg.query(`SELECT DISTINCT coalesce(end_user, '<null>') FROM usage_events WHERE tenant_id = '${b.tenant}'`).map((r) => r[0]));
    for (const q of ['group_by=end_user', 'group_by=tag:team', 'group_by=session_id', `group_by=end_user&tenant_id=${a.tenant}`,
      'end_user=alice', 'group_by=end_user&order=cost_desc&group_limit=1', 'tag:team=search&group_by=end_user']) {
      const r = await get(b.key, q);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const results = r.json.data.flatMap((bk) => bk.results);
      assert.ok(results.every((x) => !('tenant_id' in x)));
      for (const x of results) {
        assert.ok(x.end_user === null || users.has(x.end_user), `${q}: ${x.end_user}`);
        assert.notEqual(x.session_id, 's1');
      }
      const n = results.reduce((x, y) => x + y.num_model_requests, 0);
      if (q === 'end_user=alice') assert.equal(n, 0);
      else if (q.includes('group_limit') || q.includes('tag:team=search')) assert.ok(n <= mineB);
      else assert.equal(n, mineB, q);
    }
    const grouped = await get(b.key, 'group_by=tenant_id');
    assert.equal(grouped.status, 400);
  });

  test('tollctl usage: --group-by, --tag, --end-user, --session, --order, --group-limit', async () => {
    advance();
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_FINANCE_TOKEN: FINANCE };
    const tollctl = (...args) => JSON.parse(execFileSync(path.join(binDir, 'tollctl'),
      ['usage', '--start', String(prevStart), '--end', String(now + 60), '--bucket', '1mo', '--limit', '2',
        '--tenant', a.tenant, ...args], { env, encoding: 'utf8' }));
    const range = `start_time=${prevStart}&end_time=${now + 60}&bucket_width=1mo&limit=2&tenant_id=${a.tenant}`;
    for (const [args, q] of [
      [['--group-by', 'end_user', '--order', 'cost_desc', '--group-limit', '2'], 'group_by=end_user&order=cost_desc&group_limit=2'],
      [['--group-by', 'tag:team', '--tag', `${ODD_KEY}=yes`], `group_by=tag:team&${tagParam(ODD_KEY)}=yes`],
      [['--end-user', 'alice', '--session', 's1'], 'end_user=alice&session_id=s1'],
    ]) {
      assert.deepEqual(tollctl(...args), await finance(`${range}&${q}`), args.join(' '));
    }
  });

  test('bad parameters are 400s naming the parameter', async () => {
    const base = `start_time=${prevStart}`;
    for (const [q, param] of [['group_by=tag:', 'group_by'], ['group_by=tag:%25ZZ', 'group_by'],
      ['group_by=user', 'group_by'], ['order=cost', 'order'], ['group_limit=0', 'group_limit'],
      ['group_limit=x', 'group_limit'], ['bucket_width=1w', 'bucket_width'], ['tag:=x', 'tag:'],
      [`tag:team=${encodeURIComponent('a\u0001b')}`, 'tag:team']]) {
      const r = await api(s.adminUrl, 'GET', `/finance/v1/usage?${base}&${q}`, { token: FINANCE });
      assert.equal(r.status, 400, `${q}: ${r.text}`);
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.param, param, q);
    }
  });
});
