// Live latency while a batch runs: the batch worker yields to live traffic and runs at most
// `batches.concurrency` lines at once. A gateway (real PostgreSQL, the development upstream)
// answers N sequential live chat requests idle, then again while a large batch runs; prints p50
// and p99 of both and the ratio busy / idle, and how many batch lines ran meanwhile.
//   node tests/bench/batch_bench.mjs [--requests N] [--lines N]
import path from 'node:path';
import os from 'node:os';
import OpenAI, { toFile } from 'openai';
import { startStack, sleep } from '../lib/harness.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { dbConfig, makeTenant, chat } from '../lib/ledger.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const requests = arg('--requests', 400);
const lines = arg('--lines', 3000);

const pg = await startPostgres();
const s = await startStack({ config: { ...dbConfig(pg, path.join(os.tmpdir(), `tollgate-batch-bench-${process.pid}`)), batches: { poll_interval_ms: 100 } } });
try {
  const t = await makeTenant(s.adminUrl, 'Bench');
  const measure = async (n) => {
    const xs = [];
    for (let i = 0; i < n; i += 1) {
      const t0 = performance.now();
      const r = await chat(s.url, t.key, `live ${i}`);
      await r.text();
      xs.push(performance.now() - t0);
    }
    xs.sort((a, b) => a - b);
    return { p50: xs[Math.floor(n / 2)], p99: xs[Math.floor(n * 0.99)] };
  };
  await measure(50);  // warm-up
  const idle = await measure(requests);
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: t.key, maxRetries: 0 });
  const jsonl = Array.from({ length: lines }, (_, i) => JSON.stringify({
    custom_id: `b${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'dev-echo', messages: [{ role: 'user', content: `batch line ${i} tg:first_byte_delay_ms=5` }] },
  })).join('\n');
  const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'bench.jsonl'), purpose: 'batch' });
  const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  await sleep(1000);
  const before = (await client.batches.retrieve(batch.id)).request_counts.completed;
  const busy = await measure(requests);
  const after = (await client.batches.retrieve(batch.id)).request_counts.completed;
  const ms = (x) => x.toFixed(2);
  console.log(`batch bench: ${requests} sequential live requests, ${os.cpus().length} CPUs`);
  console.log(`  idle:             p50 ${ms(idle.p50)} ms, p99 ${ms(idle.p99)} ms`);
  console.log(`  batch running:    p50 ${ms(busy.p50)} ms, p99 ${ms(busy.p99)} ms  (${after - before} batch lines done meanwhile)`);
  console.log(`  ratio busy / idle: p50 ${(busy.p50 / idle.p50).toFixed(2)}, p99 ${(busy.p99 / idle.p99).toFixed(2)}`);
} finally {
  await s.stop();
  pg.stop();
}
