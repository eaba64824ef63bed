// Integration test of the price dimensions through the real gateway, the development upstream
// and PostgreSQL: the upstream reports cache writes, image and audio tokens and a long context;
// the ledger stores them in their columns, rates each class (and the per-request fee) on its
// own accumulator, in the context band the prompt falls in, and the invoice lines and the cost
// preview price them the same way. An upstream whose cache-write field is switched off bills
// those tokens as plain input. A monthly spend budget's forecast alert fires once per
// threshold the run-rate forecast reaches, delivered to a webhook.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { startStack, freePort, chatBody, postJson, waitFor, sleep, binDir } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { dbConfig, api, makeTenant, spoolSegment, ADMIN, FINANCE } from '../lib/ledger.mjs';
import { budgetConfig, ask } from '../lib/budgets.mjs';

const thisPeriod = () => new Date().toISOString().slice(0, 7);

// Single-tier rates in micro-units per 1M tokens (so a token costs rate / 10^6 micro-units).
const base = {
  input: 1_000_000n, cached_input: 500_000n, cache_write: 1_250_000n, image_input: 2_000_000n,
  audio_input: 3_000_000n, output: 4_000_000n, audio_output: 8_000_000n, requests: 700n,
};
const long = { ...base, input: 2_000_000n, cache_write: 2_500_000n, output: 8_000_000n, requests: 1000n };
const tiers = (rate) => [{ rate: String(rate) }];
const classes = (r) => ({
  input: tiers(r.input), cached_input: tiers(r.cached_input), cache_write: tiers(r.cache_write),
  image_input: tiers(r.image_input), audio_input: tiers(r.audio_input), output: tiers(r.output),
  audio_output: tiers(r.audio_output), request_fee: Number(r.requests),
});

// The classes of a reported usage, split as docs/PRICING.md says: cached, cache writes, image
// and audio out of the prompt in that order, the rest input; audio out of the completion.
function split(usage, cacheWrite) {
  const p = usage.prompt_tokens;
  const d = usage.prompt_tokens_details ?? {};
  let rest = p;
  const take = (n) => { const t = Math.min(n ?? 0, rest); rest -= t; return t; };
  const out = {};
  out.cached_input = take(d.cached_tokens);
  out.cache_write = take(cacheWrite);
  out.image_input = take(d.image_tokens);
  out.audio_input = take(d.audio_tokens);
  out.input = rest;
  const audioOut = Math.min(usage.completion_tokens_details?.audio_tokens ?? 0, usage.completion_tokens);
  out.audio_output = audioOut;
  out.output = usage.completion_tokens - audioOut;
  return out;
}

describe('price dimensions: cache writes, image and audio, request fees, context bands', () => {
  let pg;
  let s;
  const dir = path.join('/tmp', `tollgate-pricedims-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    const upstreamPort = await freePort();
    const upstream = `http://127.0.0.1:${upstreamPort}/v1`;
    s = await startStack({
      upstreamPort,
      config: {
        ...dbConfig(pg, dir),
        upstreams: {
          dev: { base_url: upstream },
          // An upstream that reports no cache writes (its field switched off).
          plain: { base_url: upstream, usage_fields: { cache_write: '' } },
        },
        models: { 'dev-echo': { upstream: 'dev' }, 'dev-plain': { upstream: 'plain' } },
      },
    });
  });
  after(async () => {
    await s?.stop();
    pg?.stop();
  });

  test('the ledger rates each class and fee in its band; the invoice lines add up to it', async () => {
    const t = await makeTenant(s.adminUrl, 'Dimensions');
    const prices = { ...classes(base), context_bands: [{ above: 50_000, ...classes(long) }] };
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Dimensions', currency: 'USD', effective_at: 1_700_000_000,
              models: { 'dev-echo': prices, 'dev-plain': prices } },
    });
    assert.equal(book.status, 201, book.text);
    // The book reads back with its classes, fee and band.
    const v1 = book.json.versions[0].prices['dev-echo'];
    assert.deepEqual(v1.cache_write, tiers(base.cache_write));
    assert.equal(v1.request_fee, 700);
    assert.equal(v1.context_bands[0].above, 50_000);
    assert.deepEqual(v1.context_bands[0].output, tiers(long.output));
    const bad = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Bad', currency: 'USD', models: { m: { input: tiers(1), output: tiers(1), request_fee: -5 } } },
    });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.json.error.message, /request_fee/);
    // tollctl takes the same book from a file.
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'dimensions.json');
    writeFileSync(file, JSON.stringify({ name: 'Dimensions (file)', currency: 'USD', models: { 'dev-echo': prices } }));
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const viaCli = JSON.parse(execFileSync(path.join(binDir, 'tollctl'), ['price-books', 'create', '--file', file], { env, encoding: 'utf8' }));
    assert.deepEqual(viaCli.versions[0].prices['dev-echo'], v1);
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } });
    assert.equal(plan.status, 200, plan.text);

    const auth = { authorization: `Bearer ${t.key}` };
    const sent = [];
    const send = async (model, content, extra = {}) => {
      const r = await postJson(`${s.url}/v1/chat/completions`, JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }), auth);
      const text = await r.text();
      sent.push({ model, status: r.status, id: r.headers.get('x-request-id'), body: r.status === 200 ? JSON.parse(text) : null,
        quoted: r.headers.get('x-tollgate-cost-micros') });
      return r.status;
    };
    assert.equal(await send('dev-echo', 'cache me tg:cache_write=40 tg:image=30 tg:audio_in=20 tg:audio_out=10 tg:cached=5'), 200);
    assert.equal(await send('dev-echo', 'read it back tg:cached=40 tg:audio_out=3'), 200);
    assert.equal(await send('dev-echo', 'a long document tg:extra_prompt=60000 tg:cache_write=100'), 200);
    assert.equal(await send('dev-plain', 'no cache field here tg:cache_write=40'), 200);
    assert.ok(await send('dev-echo', 'this one fails tg:fail=500') >= 500);
    // A stream reports its usage in its last chunk: the same classes.
    const streamed = await postJson(`${s.url}/v1/chat/completions`, chatBody('streamed tg:image=7 tg:audio_out=2',
      { stream: true, stream_options: { include_usage: true } }), auth);
    assert.equal(streamed.status, 200);
    const events = (await streamed.text()).split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)));
    sent.push({ model: 'dev-echo', status: 200, id: streamed.headers.get('x-request-id'), body: { usage: events.at(-1).usage } });

    await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === sent.length,
      { what: 'ledger rows' });
    // An independent rating: per band and class, an accumulator in request order.
    const positions = new Map();
    const charge = (key, rate, q) => {
      const c = positions.get(key) ?? 0n;
      positions.set(key, c + q);
      return ((c + q) * rate) / 1_000_000n - (c * rate) / 1_000_000n;
    };
    const totals = new Map();  // invoice line key -> [tokens, micros]
    const add = (key, q, amount) => {
      const [n, m] = totals.get(key) ?? [0n, 0n];
      totals.set(key, [n + q, m + amount]);
    };
    let expectedTotal = 0n;
    for (const r of sent) {
      const row = pg.query(`SELECT status, prompt_tokens, cached_prompt_tokens, cache_write_tokens, image_prompt_tokens,
        audio_prompt_tokens, completion_tokens, audio_completion_tokens, cost_micros, request_fee_micros, context_band
        FROM usage_events WHERE tenant_id = '${t.tenant}' AND request_id = '${r.id}'`)[0];
      assert.ok(row, `the ledger row of ${r.id}`);
      const [status, prompt, cached, cw, image, audioIn, completion, audioOut, cost, fee, band] = row.map((v, i) => (i === 0 ? Number(v) : v));
      assert.equal(status, r.status);
      if (r.status === 200) {
        // The row holds what the upstream reported.
        const u = r.body.usage;
        assert.equal(Number(prompt), u.prompt_tokens);
        const reportedCw = r.model === 'dev-plain' ? 0 : (u.cache_creation_input_tokens ?? 0);
        assert.equal(Number(cw), reportedCw, 'cache writes as the upstream reported them (or not read)');
        assert.equal(Number(image), u.prompt_tokens_details?.image_tokens ?? 0);
        assert.equal(Number(audioIn), u.prompt_tokens_details?.audio_tokens ?? 0);
        assert.equal(Number(audioOut), u.completion_tokens_details?.audio_tokens ?? 0);
      }
      const usage = {
        prompt_tokens: Number(prompt), completion_tokens: Number(completion),
        prompt_tokens_details: { cached_tokens: Number(cached), image_tokens: Number(image), audio_tokens: Number(audioIn) },
        completion_tokens_details: { audio_tokens: Number(audioOut) },
      };
      const above = usage.prompt_tokens > 50_000 ? 50_000 : 0;
      assert.equal(Number(band), above, 'the context band that priced it');
      const rates = above ? long : base;
      const suffix = above ? `>${above}` : '';
      let expected = 0n;
      for (const [cls, q] of Object.entries(split(usage, Number(cw)))) {
        if (q === 0) continue;
        const key = `${r.model}/${cls}${suffix}`;
        const amount = charge(key, rates[cls], BigInt(q));
        add(key, BigInt(q), amount);
        expected += amount;
      }
      if (status >= 200 && status < 300) {
        add(`${r.model}/requests${suffix}`, 1n, rates.requests);
        assert.equal(BigInt(fee), rates.requests, 'the request fee of its band');
        expected += rates.requests;
      } else {
        assert.equal(fee, '0', 'a failed request pays no request fee');
      }
      assert.equal(BigInt(cost), expected, `the cost of ${r.id}`);
      if (r.quoted) assert.equal(BigInt(r.quoted), expected, 'the cost header quotes it');
      expectedTotal += expected;
    }
    assert.ok(totals.has('dev-echo/cache_write') && totals.has('dev-echo/input>50000') &&
      totals.has('dev-echo/requests>50000') && totals.has('dev-echo/audio_output') && totals.has('dev-echo/image_input'),
      'every dimension was exercised');
    assert.ok(!totals.has('dev-plain/cache_write'), 'the plain upstream reports no cache writes');
    // The accumulators hold what the events were charged.
    const acc = pg.query(`SELECT model || '/' || token_class, position, charged_micros FROM rating_accumulators
      WHERE tenant_id = '${t.tenant}' ORDER BY 1`);
    for (const [key, position, charged] of acc) {
      assert.deepEqual([BigInt(position), BigInt(charged)], totals.get(key), `accumulator ${key}`);
    }
    assert.equal(acc.length, totals.size);
    // The finance API shows the new columns.
    const raw = (await api(s.adminUrl, 'GET', `/finance/v1/usage_events?tenant_id=${t.tenant}&limit=100`, { token: FINANCE })).json.data;
    assert.equal(raw.reduce((n, e) => n + (e.request_fee_micros ?? 0), 0), 700 * 4 + 1000);
    assert.ok(raw.some((e) => e.cache_write_tokens === 40 && e.context_band === 0));
    assert.equal(pg.value(`SELECT sum(audio_completion_tokens) FROM finance.usage_events WHERE tenant_id = '${t.tenant}'`), '15');
    const cloudEvents = await (await fetch(`${s.adminUrl}/finance/v1/usage_events?tenant_id=${t.tenant}&limit=100&format=cloudevents`,
      { headers: { authorization: `Bearer ${FINANCE}` } })).json();
    assert.ok(cloudEvents.some((e) => e.data.cache_write_input_tokens === 40 && e.data.request_fee_micros === 700));

    // The invoice and the cost preview: a line per class and band (one tier each), adding up
    // to what the events were charged.
    const inv = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { period: thisPeriod(), tenant_id: t.tenant } });
    assert.equal(inv.status, 200, inv.text);
    const invoice = inv.json.data[0];
    const lines = new Map(invoice.lines.map((l) => [`${l.model}/${l.token_class}`, [BigInt(l.tokens), BigInt(l.amount_micros)]]));
    assert.deepEqual(lines, totals);
    assert.equal(BigInt(invoice.total_micros), expectedTotal);
    const preview = (await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}`, { token: FINANCE })).json;
    assert.equal(BigInt(preview.total_micros), expectedTotal);
    assert.ok(preview.lines.some((l) => l.token_class === 'requests>50000' && l.tokens === 1));
    const csv = await api(s.adminUrl, 'GET', `/finance/v1/invoices/${invoice.id}?format=csv`, { token: FINANCE });
    assert.equal(csv.status, 200, csv.text);
    assert.match(csv.text, /,dev-echo,cache_write,false,1,40,50,/);
  });

  test('journal records of version 5 (before the token class columns) replay with them 0', async () => {
    const t = await makeTenant(s.adminUrl, 'Replayed');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Replayed', currency: 'USD', effective_at: 1_700_000_000, models: { 'dev-echo': classes(base) } },
    });
    assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
    const r = await postJson(`${s.url}/v1/chat/completions`, chatBody('replay me tg:cache_write=40 tg:image=5'), { authorization: `Bearer ${t.key}` });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-request-id');
    await r.text();
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE request_id = '${id}'`) === '1', { what: 'the row' });
    assert.equal(pg.value(`SELECT cache_write_tokens FROM usage_events WHERE request_id = '${id}'`), '40');
    // The row as version 5 wrote it: every column up to the trace id.
    const v5Cols = ['tenant_id', 'occurred_at', 'request_id', 'project_id', 'api_key_id', 'endpoint', 'model', 'upstream',
      'stream', 'batch', 'status', 'prompt_tokens', 'cached_prompt_tokens', 'completion_tokens', 'reasoning_tokens',
      'counted_prompt_tokens', 'counted_completion_tokens', 'usage_reported', 'estimated', 'latency_us', 'ttft_us',
      'client_disconnected', 'error_code', 'client_request_id', 'end_user', 'ts.tags', 'session_id',
      'upstream_endpoint', 'attempts', 'routing_rule', 'trace_id'];
    const line = execFileSync('psql', [pg.url, '-X', '-q', '-c',
      `COPY (SELECT ${v5Cols.map((c) => (c === 'ts.tags' ? c : `e.${c}`)).join(', ')} FROM usage_events e LEFT JOIN usage_tag_sets ts ON ts.id = e.tag_set_id WHERE request_id = '${id}') TO STDOUT`],
    { encoding: 'utf8' }).trim();
    assert.equal(line.split('\t').length, 31);
    const v5 = '\0' + `5\t\\N\t\t\t${line.replace(id, `${id}_v5`)}\n`;
    await s.gateway.stop();
    const spoolDir = JSON.parse(readFileSync(s.configPath, 'utf8')).ledger.spool_dir;
    writeFileSync(path.join(spoolDir, 'ledger-9300000000000001.spool'), spoolSegment([v5]));
    await s.restartGateway();
    await waitFor(() => readdirSync(spoolDir).filter((f) => f.startsWith('ledger-9300000000000001')).length === 0,
      { what: 'spool replayed' }).catch((e) => { throw new Error(`${e.message}\n${s.gateway.output()}`); });
    const [prompt, cached, completion, cw, image, cost, fee] = pg.query(`SELECT prompt_tokens, cached_prompt_tokens, completion_tokens,
      cache_write_tokens, image_prompt_tokens, cost_micros, request_fee_micros FROM usage_events WHERE request_id = '${id}_v5'`)[0].map(Number);
    assert.deepEqual([cw, image], [0, 0], 'the columns version 5 lacks are 0');
    // Rated without them: the whole uncached prompt as input (1 micro-unit a token), the
    // completion at 4, and the request fee.
    assert.equal(fee, 700);
    assert.equal(cost, (prompt - cached) * 1 + completion * 4 + 700);
  });
});

describe('forecast alerts (real PostgreSQL and Redis)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-forecast-${process.pid}`);
  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({ config: budgetConfig(pg, redis, dir, { forecast_alert_interval_ms: 200 }) });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('a monthly spend budget alerts once per threshold its forecast reaches', async () => {
    const received = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { received.push(JSON.parse(body)); res.writeHead(204).end(); });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const t = await makeTenant(s.adminUrl, 'Forecast');
      const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
        body: { name: 'Forecast', currency: 'USD', effective_at: 1_700_000_000,
                models: { 'dev-echo': { input: tiers(1_000_000), output: tiers(2_000_000) } } },
      });
      assert.equal(book.status, 201, book.text);
      assert.equal((await api(s.adminUrl, 'POST', `/admin/v1/tenants/${t.tenant}/plan`, { body: { price_book_id: book.json.id } })).status, 200);
      for (let i = 0; i < 5; i++) {
        const r = await ask(s.url, t.key, { max_tokens: 8 }, `forecast request number ${i}`);
        assert.equal(r.status, 200);
        await r.text();
      }
      await waitFor(() => Number(pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`)) === 5, { what: 'ledger rows' });
      const preview = (await api(s.adminUrl, 'GET', `/finance/v1/cost_preview?tenant_id=${t.tenant}`, { token: FINANCE })).json;
      const forecast = preview.forecast.total_micros;
      assert.ok(forecast > preview.total_micros, 'the month is under way: the forecast is above the cost so far');
      // Only a tenant's monthly spend budget can have forecast alerts.
      const url = `http://127.0.0.1:${receiver.address().port}/hooks/forecast`;
      const daily = await api(s.adminUrl, 'POST', '/admin/v1/budgets', {
        body: { tenant_id: t.tenant, metric: 'spend', window: 'day', limit: 10, forecast_alert_thresholds: [50] },
      });
      assert.equal(daily.status, 400, daily.text);
      assert.match(daily.json.error.message, /forecast_alert_thresholds/);
      // A limit 90 % of the forecast (the forecast falls a little as the month goes on): 50 and
      // 100 % are reached, 900 % is not.
      const limit = Math.floor(forecast * 0.9);
      const b = await api(s.adminUrl, 'POST', '/admin/v1/budgets', {
        body: { tenant_id: t.tenant, metric: 'spend', window: 'month', limit, mode: 'soft',
                forecast_alert_thresholds: [100, 50, 900], alert_webhook_url: url },
      });
      assert.equal(b.status, 201, b.text);
      assert.deepEqual(b.json.forecast_alert_thresholds, [50, 100, 900]);
      await waitFor(() => received.length >= 2, { timeoutMs: 10000, what: 'two forecast alerts' });
      await sleep(1500);  // several more checks: nothing fires twice
      assert.equal(received.length, 2);
      assert.deepEqual(received.map((a) => a.threshold_percent).sort((x, y) => x - y), [50, 100]);
      const monthStart = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) / 1000;
      for (const a of received) {
        assert.equal(a.object, 'budget.forecast_alert');
        assert.equal(a.budget_id, b.json.id);
        assert.equal(a.limit, limit);
        assert.equal(a.window_start, monthStart);
        assert.equal(a.used, preview.total_micros, 'the cost so far');
        assert.ok(a.forecast >= Math.ceil((limit * a.threshold_percent) / 100) && a.forecast <= forecast);
      }
      if (preview.forecast.elapsed_s < preview.forecast.period_s * 0.8) {
        assert.ok(preview.total_micros < limit, 'the cost so far is below the limit: only the forecast crossed it');
      }
      const listed = (await api(s.adminUrl, 'GET', `/admin/v1/budgets/${b.json.id}/alerts`)).json.data;
      assert.deepEqual(listed.map((a) => a.kind), ['forecast', 'forecast']);
      assert.ok(listed.every((a) => a.status === 'delivered'));
    } finally {
      receiver.close();
    }
  });
});
