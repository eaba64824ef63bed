// The Batch API end to end: the official `openai` npm client uploads a JSONL file, creates a
// batch, polls it and downloads the output and error files, against the real gateway (its batch
// worker), the development upstream, a real PostgreSQL and a real Redis. Checks that the usage
// rows are flagged batch and priced at the plan's discount, that the invoice shows batch lines,
// that budgets admit and refuse, that cancelling works, and that a kill -9 mid-batch neither
// loses nor repeats a line.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { binDir, startStack, waitFor, sleep } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { ADMIN, api, dbConfig, makeTenant, givePlan, planTiers, refPrice } from '../lib/ledger.mjs';

const line = (id, content, extra = {}) => JSON.stringify({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model: 'dev-echo', messages: [{ role: 'user', content }], max_tokens: 40, ...extra },
});
const jsonl = (lines) => `${lines.join('\n')}\n`;
const parseJsonl = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));

describe('the Batch API with the openai client (real PostgreSQL and Redis)', () => {
  let pg;
  let redis;
  let s;
  const dir = path.join('/tmp', `tollgate-batches-${process.pid}`);
  const clientOf = (key) => new OpenAI({ baseURL: `${s.url}/v1`, apiKey: key, maxRetries: 0 });
  const upload = async (client, text, name = 'input.jsonl') =>
    client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'batch' });
  const untilEnded = async (client, id, timeoutMs = 30000) => {
    let b;
    await waitFor(async () => {
      b = await client.batches.retrieve(id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status);
    }, { timeoutMs, intervalMs: 100, what: `batch ${id} to end` });
    return b;
  };
  // cost: '' when the row was not rated (an error without tokens).
  const rowsOf = (tenant) => pg.query(`SELECT request_id, batch, status, prompt_tokens, completion_tokens,
      cost_micros FROM usage_events WHERE tenant_id = '${tenant}' ORDER BY request_id`);

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis();
    s = await startStack({
      config: {
        ...dbConfig(pg, dir),
        budgets: redis.budgetsConfig,
        batches: { poll_interval_ms: 50, lease_ms: 2000, concurrency: 4, max_file_bytes: 1_000_000, max_file_lines: 1000 },
      },
    });
  });
  after(async () => {
    await s?.stop();
    redis?.stop();
    pg?.stop();
  });

  test('upload, create, poll, download: batch usage at the discount, batch lines on the invoice', async () => {
    const t = await makeTenant(s.adminUrl, 'Batch');
    await givePlan(s.adminUrl, t.tenant);  // batch discount: 50 % by default
    const client = clientOf(t.key);
    const lines = [];
    for (let i = 0; i < 6; i += 1) lines.push(line(`job-${i}`, `batch line number ${i} says hello`));
    lines.push(line('job-fails', 'this one fails tg:fail=500'));
    const text = jsonl(lines);

    const file = await upload(client, text);
    assert.match(file.id, /^file_/);
    assert.equal(file.bytes, Buffer.byteLength(text));
    assert.equal(file.purpose, 'batch');
    assert.equal(file.filename, 'input.jsonl');
    assert.ok((await client.files.list()).data.some((f) => f.id === file.id));
    assert.equal((await client.files.retrieve(file.id)).bytes, file.bytes);
    assert.equal(await (await client.files.content(file.id)).text(), text, 'the input comes back byte for byte');

    const created = await client.batches.create({
      input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'nightly' },
    });
    assert.match(created.id, /^batch_/);
    assert.ok(['validating', 'in_progress'].includes(created.status), created.status);
    assert.deepEqual(created.metadata, { job: 'nightly' });
    assert.equal(created.request_counts.total, 7);

    const done = await untilEnded(client, created.id);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: 7, completed: 6, failed: 1 });
    for (const at of ['in_progress_at', 'finalizing_at', 'completed_at']) assert.ok(done[at] >= created.created_at, at);
    assert.ok((await client.batches.list()).data.some((b) => b.id === created.id));

    const output = parseJsonl(await (await client.files.content(done.output_file_id)).text());
    assert.deepEqual(output.map((o) => o.custom_id), [0, 1, 2, 3, 4, 5].map((i) => `job-${i}`));
    for (const [i, o] of output.entries()) {
      assert.match(o.id, /^batch_req_/);
      assert.equal(o.error, null);
      assert.equal(o.response.status_code, 200);
      assert.equal(o.response.body.choices[0].message.content, `Echo: batch line number ${i} says hello`);
    }
    const errors = parseJsonl(await (await client.files.content(done.error_file_id)).text());
    assert.equal(errors.length, 1);
    assert.equal(errors[0].custom_id, 'job-fails');
    assert.equal(errors[0].response.status_code, 500);
    assert.ok(errors[0].response.body.error, 'the OpenAI error body');
    const outFile = await client.files.retrieve(done.output_file_id);
    assert.equal(outFile.purpose, 'batch_output');

    // The ledger: one row per line, every one flagged batch, the successes priced at 50 % off.
    await waitFor(() => rowsOf(t.tenant).length === 7, { what: 'seven usage rows' });
    const rows = rowsOf(t.tenant);
    assert.ok(rows.every((r) => r[1] === 't'), 'every row is flagged batch');
    const ids = new Set([...output, ...errors].map((o) => o.response.request_id));
    assert.deepEqual(new Set(rows.map((r) => r[0])), ids, 'the rows are the lines\' requests');
    const ok = rows.filter((r) => r[2] === '200');
    const input = ok.reduce((n, r) => n + Number(r[3]), 0);
    const outputTokens = ok.reduce((n, r) => n + Number(r[4]), 0);
    assert.ok(ok.every((r) => r[5] !== ''), 'every successful line is rated');
    const cost = rows.reduce((n, r) => n + BigInt(r[5] || 0), 0n);
    assert.equal(cost, refPrice(planTiers, input, 5000) + refPrice(planTiers, outputTokens, 5000),
      'priced at the batch discount, exactly');

    // The invoice shows the batch lines, and the finance API the batch usage separately.
    const period = new Date().toISOString().slice(0, 7);
    const inv = await api(s.adminUrl, 'POST', '/admin/v1/invoices/run', { body: { tenant_id: t.tenant, period } });
    assert.equal(inv.status, 200, inv.text);
    const batchLines = inv.json.data[0].lines.filter((l) => l.batch);
    assert.ok(batchLines.length >= 2, JSON.stringify(inv.json.data[0].lines));
    assert.equal(BigInt(batchLines.reduce((n, l) => n + l.amount_micros, 0)), cost);
    const start = Math.floor(Date.now() / 1000) - 3600;
    const usage = await api(s.adminUrl, 'GET', `/finance/v1/usage?start_time=${start}&group_by=batch&tenant_id=${t.tenant}`);
    assert.equal(usage.status, 200, usage.text);
    const results = usage.json.data.flatMap((b) => b.results);
    assert.equal(results.filter((r) => r.batch === true).reduce((n, r) => n + r.num_model_requests, 0), 7);

    // tollctl lists and shows batches.
    const env = { ...process.env, TOLLGATE_ADMIN_URL: s.adminUrl, TOLLGATE_ADMIN_TOKEN: ADMIN };
    const tollctl = (...args) => execFileSync(path.join(binDir, 'tollctl'), args, { env, encoding: 'utf8' });
    assert.ok(JSON.parse(tollctl('batches', 'list', '--tenant', t.tenant)).data.some((b) => b.id === created.id));
    assert.equal(JSON.parse(tollctl('batches', 'get', created.id)).status, 'completed');

    // Deleting a file.
    const deleted = await client.files.delete(file.id);
    assert.deepEqual([deleted.id, deleted.deleted], [file.id, true]);
    await assert.rejects(client.files.retrieve(file.id), (e) => e instanceof OpenAI.NotFoundError);
    // The batch's output outlives its input file.
    assert.equal(parseJsonl(await (await client.files.content(done.output_file_id)).text()).length, 6);
  });

  test('attribution: each line\'s user and metadata, over the key\'s default tags, on its ledger row', async () => {
    const t = await makeTenant(s.adminUrl, 'BatchAttr', { default_tags: { team: 'key-team', source: 'key' } });
    const client = clientOf(t.key);
    const lines = [
      line('a-0', 'first', { user: 'customer-1', metadata: { team: 'line-team', feature: 'summaries' } }),
      line('a-1', 'second', { user: 'customer-2' }),
      line('a-2', 'third'),
    ];
    const file = await upload(client, jsonl(lines));
    const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await untilEnded(client, b.id);
    assert.equal(done.status, 'completed');
    const output = parseJsonl(await (await client.files.content(done.output_file_id)).text());
    const byLine = Object.fromEntries(output.map((o) => [o.custom_id, o.response.request_id]));
    await waitFor(() => pg.value(`SELECT count(*) FROM usage_events WHERE tenant_id = '${t.tenant}'`) === '3', { what: 'three rows' });
    const rowOf = (id) => pg.query(`SELECT coalesce(end_user, '<null>'), tags::text, batch FROM finance.usage_events
      WHERE request_id = '${id}'`)[0];
    const [u0, tags0, batch0] = rowOf(byLine['a-0']);
    assert.equal(u0, 'customer-1');
    assert.deepEqual(JSON.parse(tags0), { team: 'line-team', feature: 'summaries', source: 'key' });
    assert.equal(batch0, 't');
    const [u1, tags1] = rowOf(byLine['a-1']);
    assert.equal(u1, 'customer-2');
    assert.deepEqual(JSON.parse(tags1), { team: 'key-team', source: 'key' });
    const [u2, tags2] = rowOf(byLine['a-2']);
    assert.equal(u2, '<null>');
    assert.deepEqual(JSON.parse(tags2), { team: 'key-team', source: 'key' });
  });

  test('bad input gets a clear error and creates nothing', async () => {
    const t = await makeTenant(s.adminUrl, 'BadBatch');
    const other = await makeTenant(s.adminUrl, 'Other');
    const client = clientOf(t.key);
    const rejects = async (promise, status, pattern) => assert.rejects(promise, (e) => {
      assert.equal(e.status, status, e.message);
      assert.match(e.message, pattern);
      return true;
    });
    await rejects(upload(client, jsonl([line('a', 'x'), '{"custom_id": "b", '])), 400, /Line 2 of the file: not valid JSON/);
    await rejects(upload(client, jsonl([line('a', 'x'), line('a', 'y')])), 400, /Line 2.*custom_id.*unique/);
    await rejects(upload(client, jsonl([JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'm' } })])),
      400, /Line 1.*custom_id/);
    await rejects(upload(client, jsonl([line('a', 'x'), '', line('b', 'y')])), 400, /Line 2 of the file: the line is blank/);
    await rejects(upload(client, jsonl([line('a', 'x', { stream: true })])), 400, /stream/);
    await rejects(upload(client, jsonl([line('a', 'x').replace('/v1/chat/completions', '/v1/embeddings')])), 400, /Line 1.*url/);
    await rejects(upload(client, ''), 400, /empty/);
    // Oversized: over the file limit (400), and over the upload's body limit (413).
    const sized = (bytes) => {
      const out = [];
      for (let n = 0; n < bytes; n += out[out.length - 1].length + 1) out.push(line(`l${out.length}`, 'x'.repeat(400)));
      return jsonl(out);
    };
    await rejects(upload(client, sized(1_010_000)), 400, /bytes; the most a batch input file may have is 1000000/);
    await rejects(upload(client, sized(1_200_000)), 413, /too large/);
    await rejects(upload(client, jsonl(Array.from({ length: 1001 }, (_, i) => line(`n${i}`, 'x')))), 400, /more than 1000 lines/);
    const wrongPurpose = await fetch(`${s.url}/v1/files`, {
      method: 'POST', headers: { authorization: `Bearer ${t.key}` },
      body: (() => { const f = new FormData(); f.set('purpose', 'fine-tune'); f.set('file', new Blob(['{}\n']), 'a.jsonl'); return f; })(),
    });
    assert.equal(wrongPurpose.status, 400);
    assert.match((await wrongPurpose.json()).error.message, /purpose must be "batch"/);
    const notMultipart = await fetch(`${s.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(notMultipart.status, 400);
    assert.equal((await client.files.list()).data.length, 0, 'no file was stored');

    // Unknown models and a line for another endpoint are found when the batch is created.
    const unknown = await upload(client, jsonl([line('a', 'x'), line('b', 'y', { model: 'gpt-nope' })]));
    await rejects(client.batches.create({ input_file_id: unknown.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      404, /Line 2 of the input file: the model `gpt-nope` does not exist/);
    await rejects(client.batches.create({ input_file_id: unknown.id, endpoint: '/v1/completions', completion_window: '24h' }),
      400, /Line 1 of the input file: its url \/v1\/chat\/completions is not the batch's endpoint/);
    const invalid = await upload(client, jsonl([line('a', 'x', { max_tokens: -3 })]));
    await rejects(client.batches.create({ input_file_id: invalid.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      400, /Line 1 of the input file: .*max_tokens/);
    await rejects(client.batches.create({ input_file_id: unknown.id, endpoint: '/v1/chat/completions', completion_window: '1h' }),
      400, /completion_window/);
    await rejects(client.batches.create({ input_file_id: 'file_nope', endpoint: '/v1/chat/completions', completion_window: '24h' }),
      404, /No such File object/);
    assert.equal((await client.batches.list()).data.length, 0, 'no batch was created');

    // Another tenant's file and batch do not exist for this key.
    const theirs = await upload(clientOf(other.key), jsonl([line('a', 'x')]));
    await rejects(client.files.retrieve(theirs.id), 404, /No such File object/);
    await rejects(client.files.content(theirs.id), 404, /No such File object/);
    await rejects(client.files.delete(theirs.id), 404, /No such File object/);
    await rejects(client.batches.create({ input_file_id: theirs.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      404, /No such File object/);
    const theirBatch = await clientOf(other.key).batches.create({ input_file_id: theirs.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await rejects(client.batches.retrieve(theirBatch.id), 404, /No such Batch object/);
    await rejects(client.batches.cancel(theirBatch.id), 404, /No such Batch object/);
    // Without a key: 401.
    assert.equal((await fetch(`${s.url}/v1/batches`)).status, 401);
    assert.equal((await fetch(`${s.url}/v1/files/x/y`, { headers: { authorization: `Bearer ${t.key}` } })).status, 404);
  });

  test('budgets: a batch whose worst case does not fit is refused; lines refused later go to the error file', async () => {
    const t = await makeTenant(s.adminUrl, 'BudgetBatch');
    const client = clientOf(t.key);
    const budget = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric: 'requests', window: 'day', limit: 100 } });
    assert.equal(budget.status, 201, budget.text);
    const tokens = await api(s.adminUrl, 'POST', '/admin/v1/budgets',
      { body: { tenant_id: t.tenant, metric: 'tokens', window: 'month', limit: 2000 } });
    assert.equal(tokens.status, 201, tokens.text);

    // 60 lines x (prompt + 40 max_tokens) is more than 2000 tokens: refused, nothing created.
    const tooBig = await upload(client, jsonl(Array.from({ length: 60 }, (_, i) => line(`b${i}`, 'hello there'))));
    await assert.rejects(client.batches.create({ input_file_id: tooBig.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      (e) => e.status === 429 && e.code === 'insufficient_quota' && /this batch's worst case needs/.test(e.message));
    assert.equal((await client.batches.list()).data.length, 0);

    // Eight slow lines fit; right after creation the request budget drops to 4: whatever ran
    // first, exactly four lines get through and four are refused into the error file. (Four
    // run at once; each takes 1.5 s, so the lowering lands before the next four start even on
    // a busy machine: with 400 ms, all eight were served once.)
    const slow = await upload(client, jsonl(Array.from({ length: 8 }, (_, i) => line(`s${i}`, `slow ${i} tg:first_byte_delay_ms=1500`))));
    const b = await client.batches.create({ input_file_id: slow.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const lowered = await api(s.adminUrl, 'POST', `/admin/v1/budgets/${budget.json.id}`, { body: { limit: 4 } });
    assert.equal(lowered.status, 200, lowered.text);
    const done = await untilEnded(client, b.id);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: 8, completed: 4, failed: 4 });
    const errors = parseJsonl(await (await client.files.content(done.error_file_id)).text());
    assert.equal(errors.length, 4);
    for (const e of errors) {
      assert.equal(e.response.status_code, 429);
      assert.equal(e.response.body.error.code, 'insufficient_quota');
    }
    // Nothing is held any more: a live request fits exactly nothing (4 of 4 used).
    const live = await client.chat.completions.create({ model: 'dev-echo', messages: [{ role: 'user', content: 'x' }] })
      .then(() => 200, (e) => e.status);
    assert.equal(live, 429);
  });

  test('cancelling stops a batch: running lines finish, the rest never run', async () => {
    const t = await makeTenant(s.adminUrl, 'CancelBatch');
    const client = clientOf(t.key);
    const file = await upload(client, jsonl(Array.from({ length: 40 }, (_, i) => line(`c${i}`, `line ${i} tg:first_byte_delay_ms=200`))));
    const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await sleep(300);
    const cancelling = await client.batches.cancel(b.id);
    assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);
    const done = await untilEnded(client, b.id);
    assert.equal(done.status, 'cancelled');
    assert.ok(done.cancelled_at >= done.cancelling_at);
    const finished = done.request_counts.completed + done.request_counts.failed;
    assert.ok(finished > 0 && finished < 40, `${finished} lines ran`);
    const output = parseJsonl(await (await client.files.content(done.output_file_id)).text());
    assert.equal(output.length, done.request_counts.completed);
    await sleep(500);
    const after = await client.batches.retrieve(b.id);
    assert.deepEqual(after.request_counts, done.request_counts, 'no line runs after the cancel');
    await waitFor(() => rowsOf(t.tenant).length === finished, { what: 'one usage row per line that ran' });
    await assert.rejects(client.batches.cancel(b.id).then(() => client.batches.cancel(b.id)).then(async () => {
      const completedFile = await upload(client, jsonl([line('z', 'z')]));
      const quick = await client.batches.create({ input_file_id: completedFile.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      await untilEnded(client, quick.id);
      return client.batches.cancel(quick.id);
    }), (e) => e.status === 409 && /Cannot cancel a batch with status completed/.test(e.message));
  });

  test('a batch past its completion window expires: the lines not run become batch_expired errors', async () => {
    const t = await makeTenant(s.adminUrl, 'ExpireBatch');
    const client = clientOf(t.key);
    const file = await upload(client, jsonl(Array.from({ length: 30 }, (_, i) => line(`e${i}`, `line ${i} tg:first_byte_delay_ms=150`))));
    const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    assert.equal(b.expires_at - b.created_at, 86400);
    await waitFor(async () => (await client.batches.retrieve(b.id)).request_counts.completed >= 2, { what: 'some lines done' });
    pg.query(`UPDATE batches SET expires_at = now() WHERE id = '${b.id}'`);  // the window passes
    const done = await untilEnded(client, b.id);
    assert.equal(done.status, 'expired');
    assert.ok(done.expired_at > 0);
    const { completed, failed, total } = done.request_counts;
    assert.equal(completed + failed, total, 'every line has an outcome');
    assert.ok(completed >= 2 && failed > 0, `${completed} completed, ${failed} expired`);
    const errors = parseJsonl(await (await client.files.content(done.error_file_id)).text());
    assert.equal(errors.length, failed);
    for (const e of errors) {
      assert.equal(e.response, null);
      assert.equal(e.error.code, 'batch_expired');
    }
    await waitFor(() => rowsOf(t.tenant).length === completed, { what: 'a usage row per line that ran' });
  });

  test('kill -9 mid-batch, restart: every line once in the output and once in the ledger', async () => {
    const t = await makeTenant(s.adminUrl, 'KillBatch');
    await givePlan(s.adminUrl, t.tenant);
    const client = clientOf(t.key);
    const n = 40;
    const file = await upload(client, jsonl(Array.from({ length: n }, (_, i) => line(`k${i}`, `line ${i} tg:first_byte_delay_ms=60`))));
    const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(async () => (await client.batches.retrieve(b.id)).request_counts.completed >= 8, { what: 'some lines done' });
    s.gateway.child.kill('SIGKILL');
    await s.gateway.exited;
    const before = Number(pg.value(`SELECT count(*) FROM batch_lines WHERE batch_id = '${b.id}' AND done`));
    assert.ok(before < n, `${before} of ${n} lines were done at the kill`);
    await s.restartGateway();
    const done = await untilEnded(client, b.id, 60000);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: n, completed: n, failed: 0 });
    const output = parseJsonl(await (await client.files.content(done.output_file_id)).text());
    assert.deepEqual(output.map((o) => o.custom_id), Array.from({ length: n }, (_, i) => `k${i}`), 'each line once, in order');
    await waitFor(() => rowsOf(t.tenant).length >= n, { what: `${n} usage rows`, timeoutMs: 20000 });
    await sleep(300);
    const rows = rowsOf(t.tenant);
    assert.equal(rows.length, n, 'each line is billed once');
    assert.deepEqual(new Set(rows.map((r) => r[0])), new Set(output.map((o) => o.response.request_id)));
    assert.ok(rows.every((r) => r[1] === 't' && r[2] === '200'));
    const input = rows.reduce((x, r) => x + Number(r[3]), 0);
    const out = rows.reduce((x, r) => x + Number(r[4]), 0);
    const cost = rows.reduce((x, r) => x + BigInt(r[5]), 0n);
    assert.equal(cost, refPrice(planTiers, input, 5000) + refPrice(planTiers, out, 5000), 'rated once, at the discount');
  });
});
