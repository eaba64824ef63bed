// POST /v1/embeddings and POST /v1/responses end to end, with the official `openai` client
// against a real gateway, the development upstream, a real PostgreSQL and a real Redis: the
// response passes through, the ledger row has the endpoint, the upstream's tokens (or, without
// them, the gateway's own count flagged estimated) and the cost; budgets refuse at the limit
// before anything is forwarded; a previous_response_id is held at the model's context; bad input
// is a 400 that changes nothing. Expected counts come from tiktoken, not from Tollgate's code.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { get_encoding } from 'tiktoken';
import { startStack, postJson, waitFor } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { api, makeTenant } from '../lib/ledger.mjs';
import { budgetConfig, addBudget } from '../lib/budgets.mjs';

const o200k = get_encoding('o200k_base');
const tokens = (text) => o200k.encode_ordinary(text).length;
// The OpenAI chat rule for the messages a Responses request amounts to.
const chatRule = (messages) => messages.reduce((n, m) => n + 3 + tokens(m.role) + tokens(m.content), 0) + 3;
const CONTEXT = 8192;

describe('embeddings and responses endpoints (real PostgreSQL and Redis)', () => {
  let pg;
  let redis;
  let s;
  let priced;  // a tenant with a price plan and no budgets
  let client;

  const rowOf = (id) => {
    const rows = pg.query(`SELECT endpoint, model, stream, status, prompt_tokens, cached_prompt_tokens,
        completion_tokens, reasoning_tokens, coalesce(counted_prompt_tokens, -1), coalesce(counted_completion_tokens, -1),
        usage_reported, estimated, coalesce(cost_micros, -1), coalesce(end_user, ''), coalesce(ts.tags::text, '')
        FROM usage_events LEFT JOIN usage_tag_sets ts ON ts.id = usage_events.tag_set_id WHERE request_id = '${id}'`);
    if (!rows.length) return undefined;
    const r = rows[0];
    return {
      endpoint: r[0], model: r[1], stream: r[2] === 't', status: Number(r[3]), prompt: Number(r[4]),
      cached: Number(r[5]), completion: Number(r[6]), reasoning: Number(r[7]), countedPrompt: Number(r[8]),
      countedCompletion: Number(r[9]), reported: r[10] === 't', estimated: r[11] === 't', cost: Number(r[12]),
      endUser: r[13], tags: r[14] ? JSON.parse(r[14]) : null,
    };
  };
  // The row once it is rated (cost_micros set).
  const ratedRow = async (id) => {
    let row;
    await waitFor(() => (row = rowOf(id)) && row.cost >= 0, { what: `the rated row of ${id}` });
    return row;
  };
  // 2 micro-units per input token, 1 per cached input token, 5 per output token.
  const costOf = (row) => 2 * (row.prompt - row.cached) + row.cached + 5 * row.completion;

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    const dir = path.join(process.env.TMPDIR ?? '/tmp', `tollgate-endpoints-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    const config = budgetConfig(pg, redis, dir);
    config.models = {
      'dev-echo': { upstream: 'dev', tokenizer: 'o200k_base', prompt_format: 'openai', context_tokens: CONTEXT,
        estimate_input_price: 1_000_000, estimate_output_price: 2_000_000 },
    };
    s = await startStack({ config });
    priced = await makeTenant(s.adminUrl, 'Endpoints');
    const book = await api(s.adminUrl, 'POST', '/admin/v1/price_books', {
      body: { name: 'Endpoints book', currency: 'USD', effective_at: 1_700_000_000,
        models: { 'dev-echo': { input: [{ rate: '2000000' }], cached_input: [{ rate: '1000000' }], output: [{ rate: '5000000' }] } } },
    });
    assert.equal(book.status, 201, book.text);
    const plan = await api(s.adminUrl, 'POST', `/admin/v1/tenants/${priced.tenant}/plan`, { body: { price_book_id: book.json.id } });
    assert.equal(plan.status, 200, plan.text);
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: priced.key, maxRetries: 0 });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('embeddings: the openai client gets vectors; the row has the upstream\'s tokens and cost', async () => {
    const input = ['The quick brown fox', 'jumps over the lazy dog'];
    const { data, response } = await client.embeddings.create({ model: 'dev-echo', input, user: 'emb-user-1' })
      .withResponse();
    // The client asked for base64 (its default) and decoded the vectors.
    assert.equal(data.object, 'list');
    assert.equal(data.data.length, 2);
    for (const e of data.data) {
      assert.equal(e.embedding.length, 8);
      assert.ok(e.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
    }
    assert.equal(data.usage.prompt_tokens, 9);  // the upstream counts words
    const row = await ratedRow(response.headers.get('x-request-id'));
    assert.equal(row.endpoint, '/v1/embeddings');
    assert.equal(row.stream, false);
    assert.equal(row.status, 200);
    assert.equal(row.reported, true);
    assert.equal(row.estimated, false);
    assert.equal(row.prompt, 9);
    assert.equal(row.completion, 0);
    assert.equal(row.countedPrompt, tokens(input[0]) + tokens(input[1]));
    assert.equal(row.endUser, 'emb-user-1');
    assert.equal(row.cost, 18);
    assert.equal(response.headers.get('x-tollgate-cost-micros'), '18');

    // Token ids count one each; float vectors when asked for.
    const ids = await client.embeddings.create({ model: 'dev-echo', input: [[1, 2, 3], [4, 5]], encoding_format: 'float', dimensions: 4 })
      .withResponse();
    assert.deepEqual(ids.data.data.map((e) => e.embedding.length), [4, 4]);
    const idRow = await ratedRow(ids.response.headers.get('x-request-id'));
    assert.equal(idRow.countedPrompt, 5);
    assert.equal(idRow.prompt, 5);
  });

  test('embeddings without upstream usage: the gateway\'s count, flagged estimated', async () => {
    const input = 'tg:no_usage naïve café 日本語';
    const { data, response } = await client.embeddings.create({ model: 'dev-echo', input, encoding_format: 'float' })
      .withResponse();
    assert.equal(data.usage, undefined);
    const row = await ratedRow(response.headers.get('x-request-id'));
    assert.equal(row.endpoint, '/v1/embeddings');
    assert.equal(row.reported, false);
    assert.equal(row.estimated, true);
    assert.equal(row.prompt, tokens(input));
    assert.equal(row.countedPrompt, tokens(input));
    assert.equal(row.completion, 0);
    assert.equal(row.cost, 2 * tokens(input));
  });

  test('responses: the Responses object passes through; usage, details and cost on the row', async () => {
    const instructions = 'Answer briefly.';
    const input = 'hello gateway tg:cached=3 tg:reasoning=4';
    const { data, response } = await client.responses.create({
      model: 'dev-echo', instructions, input, max_output_tokens: 64, user: 'resp-user-1', metadata: { feature: 'resp' },
    }).withResponse();
    assert.equal(data.object, 'response');
    assert.equal(data.status, 'completed');
    assert.equal(data.output_text, `Echo: ${input}`);
    const row = await ratedRow(response.headers.get('x-request-id'));
    assert.equal(row.endpoint, '/v1/responses');
    assert.equal(row.stream, false);
    assert.equal(row.reported, true);
    assert.equal(row.prompt, data.usage.input_tokens);
    assert.equal(row.cached, 3);
    assert.equal(row.completion, data.usage.output_tokens);
    assert.equal(row.reasoning, 4);
    assert.equal(row.countedPrompt, chatRule([{ role: 'system', content: instructions }, { role: 'user', content: input }]));
    assert.equal(row.endUser, 'resp-user-1');
    assert.deepEqual(row.tags, { feature: 'resp' });
    assert.equal(row.cost, costOf(row));
    assert.equal(response.headers.get('x-tollgate-cost-micros'), String(row.cost));
  });

  test('responses, streamed: the event sequence passes through; usage from response.completed', async () => {
    const { data: stream, response } = await client.responses.create({
      model: 'dev-echo', input: [{ role: 'user', content: [{ type: 'input_text', text: 'stream these words' }] }], stream: true,
    }).withResponse();
    const types = [];
    let text = '';
    let completed;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.ok(types.filter((t) => t === 'response.output_text.delta').length >= 4);
    assert.equal(text, 'Echo: stream these words');
    assert.ok(completed.usage.input_tokens > 0);
    const row = await ratedRow(response.headers.get('x-request-id'));
    assert.equal(row.endpoint, '/v1/responses');
    assert.equal(row.stream, true);
    assert.equal(row.reported, true);
    assert.equal(row.estimated, false);
    assert.equal(row.prompt, completed.usage.input_tokens);
    assert.equal(row.completion, completed.usage.output_tokens);
    assert.equal(row.cost, costOf(row));
  });

  test('responses, streamed without usage: the streamed text is counted, flagged estimated', async () => {
    const input = 'tg:no_usage un deux trois quatre cinq';
    const stream = await client.responses.create({ model: 'dev-echo', input, stream: true }).withResponse();
    let text = '';
    for await (const event of stream.data) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') assert.equal(event.response.usage, null);
    }
    assert.ok(text.length > 0);
    const row = await ratedRow(stream.response.headers.get('x-request-id'));
    assert.equal(row.reported, false);
    assert.equal(row.estimated, true);
    assert.equal(row.prompt, chatRule([{ role: 'user', content: input }]));
    assert.equal(row.completion, tokens(text));
    assert.equal(row.countedCompletion, tokens(text));
    assert.equal(row.cost, costOf(row));
  });

  test('budgets: refusal at the limit is a 429 before anything is forwarded', async () => {
    const t = await makeTenant(s.adminUrl, 'Embed budget');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 20 });
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    const fits = await c.embeddings.create({ model: 'dev-echo', input: 'five words fit in here' });
    assert.equal(fits.usage.prompt_tokens, 5);
    const before = (await s.upstreamStats()).requests;
    const long = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    await assert.rejects(c.embeddings.create({ model: 'dev-echo', input: long }), (e) => {
      assert.equal(e.status, 429);
      assert.match(e.error.message ?? e.message, new RegExp(b.id));
      return true;
    });
    assert.equal((await s.upstreamStats()).requests, before, 'nothing was forwarded');
    // Responses too: a 20-token budget cannot hold 64 output tokens.
    await assert.rejects(c.responses.create({ model: 'dev-echo', input: 'hi', max_output_tokens: 64 }), (e) => e.status === 429);
    assert.equal((await s.upstreamStats()).requests, before, 'nothing was forwarded');
    await waitFor(() => redis.counters(t.tenant)[b.id]?.used === 5, { what: 'the settled embeddings tokens' });
  });

  test('previous_response_id is held at the model\'s context', async () => {
    const t = await makeTenant(s.adminUrl, 'Context hold');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 5000 });
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
    // Without it, the same request fits the budget easily.
    const plain = await c.responses.create({ model: 'dev-echo', input: 'continue', max_output_tokens: 100 });
    assert.equal(plain.status, 'completed');
    const before = (await s.upstreamStats()).requests;
    await assert.rejects(c.responses.create({
      model: 'dev-echo', input: 'continue', max_output_tokens: 100, previous_response_id: plain.id,
    }), (e) => e.status === 429);
    assert.equal((await s.upstreamStats()).requests, before, 'nothing was forwarded');

    // Under a budget that takes it, the hold in Redis is the whole context while it runs. (At
    // 60,000 tokens a lease's slice, an eighth of what is left, is less than the context: the
    // request holds exactly its worst case, docs/BUDGETS.md "Leases".)
    const big = await makeTenant(s.adminUrl, 'Context hold big');
    const bb = await addBudget(s.adminUrl, { tenant_id: big.tenant, metric: 'tokens', window: 'day', limit: 60_000 });
    const slow = postJson(`${s.url}/v1/responses`, JSON.stringify({
      model: 'dev-echo', input: 'tg:first_byte_delay_ms=1500 later', max_output_tokens: 100, previous_response_id: 'resp_x',
    }), { authorization: `Bearer ${big.key}` });
    await waitFor(() => redis.counters(big.tenant)[bb.id]?.held > 0, { what: 'the hold' });
    assert.equal(redis.counters(big.tenant)[bb.id].held, CONTEXT);
    const res = await slow;
    assert.equal(res.status, 200);
    const body = await res.json();
    await waitFor(() => redis.counters(big.tenant)[bb.id].used === body.usage.input_tokens + body.usage.output_tokens,
      { what: 'settled to the usage' });
    assert.equal(redis.counters(big.tenant)[bb.id].held, 0);
  });

  test('bad input is a 400 in the OpenAI shape and changes nothing', async () => {
    const t = await makeTenant(s.adminUrl, 'Bad input');
    const b = await addBudget(s.adminUrl, { tenant_id: t.tenant, metric: 'tokens', window: 'day', limit: 100_000 });
    const auth = { authorization: `Bearer ${t.key}` };
    const before = (await s.upstreamStats()).requests;
    const cases = [
      ['/v1/embeddings', { model: 'dev-echo', input: '' }, 'input', 'empty_input'],
      ['/v1/embeddings', { model: 'dev-echo', input: [] }, 'input', 'empty_array'],
      ['/v1/embeddings', { model: 'dev-echo', input: ['ok', 7] }, 'input', 'invalid_value'],
      ['/v1/embeddings', { model: 'dev-echo', input: [[1, -2]] }, 'input[0]', 'invalid_value'],
      ['/v1/embeddings', { model: 'dev-echo', input: { text: 'x' } }, 'input', 'invalid_type'],
      ['/v1/embeddings', { model: 'dev-echo', input: 'x', stream: true }, 'stream', 'invalid_value'],
      ['/v1/embeddings', { model: 'dev-echo', input: 'word '.repeat(CONTEXT + 10) }, 'input', 'context_length_exceeded'],
      ['/v1/responses', { model: 'dev-echo' }, 'input', 'missing_required_parameter'],
      ['/v1/responses', { model: 'dev-echo', input: 42 }, 'input', 'invalid_type'],
      ['/v1/responses', { model: 'dev-echo', input: [{ role: 'robot', content: 'x' }] }, 'input[0].role', 'invalid_value'],
      ['/v1/responses', { model: 'dev-echo', input: 'x', max_output_tokens: 0 }, 'max_output_tokens', 'integer_below_min_value'],
      ['/v1/responses', { model: 'dev-echo', input: 'x', max_output_tokens: CONTEXT }, 'max_output_tokens', 'context_length_exceeded'],
      ['/v1/responses', { model: 'dev-echo', input: 'x', background: true }, 'background', 'unsupported_parameter'],
    ];
    const ids = [];
    for (const [route, body, param, code] of cases) {
      const res = await postJson(`${s.url}${route}`, JSON.stringify(body), auth);
      const text = await res.text();
      assert.equal(res.status, 400, `${route} ${text}`);
      const { error } = JSON.parse(text);
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.param, param, text);
      assert.equal(error.code, code, text);
      ids.push(res.headers.get('x-request-id'));
    }
    // The official client raises it as a BadRequestError.
    await assert.rejects(new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 })
      .embeddings.create({ model: 'dev-echo', input: '' }), (e) => e.status === 400);
    assert.equal((await s.upstreamStats()).requests, before, 'nothing was forwarded');
    // Each refusal is recorded with no tokens and no cost; no budget moved.
    await waitFor(() => ids.every((id) => rowOf(id)), { what: 'the refusals\' rows' });
    for (const id of ids) {
      const row = rowOf(id);
      assert.equal(row.status, 400);
      assert.equal(row.prompt + row.completion, 0);
      assert.ok(row.cost <= 0);
    }
    const counters = redis.counters(t.tenant)[b.id] ?? { used: 0, held: 0 };
    assert.equal(counters.used, 0);
    assert.equal(counters.held, 0);
  });

  test('the other routes stay as they were: GET is 405, chat still works', async () => {
    const res = await fetch(`${s.url}/v1/embeddings`, { headers: { authorization: `Bearer ${priced.key}` } });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    const chat = await client.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'still here' }] })
      .withResponse();
    const row = await ratedRow(chat.response.headers.get('x-request-id'));
    assert.equal(row.endpoint, '/v1/chat/completions');
  });
});
