// Helpers for the ledger tests: gateway config with a database, admin/finance API calls, a
// tenant with a project and a key, and spool segments written the way the gateway writes them.
import assert from 'node:assert/strict';
import path from 'node:path';
import { chatBody, postJson } from './harness.mjs';

export const ADMIN = 'admin-token-for-tests-0001';
export const FINANCE = 'finance-token-for-tests-001';

export function dbConfig(pg, dir, extra = {}) {
  return {
    database: { url: pg.url, statement_timeout_ms: 3000, connect_timeout_ms: 1000, ...(extra.database ?? {}) },
    ledger: { spool_dir: path.join(dir, 'spool'), flush_interval_ms: 20, ...(extra.ledger ?? {}) },
    auth: { admin_token: ADMIN, finance_token: FINANCE, key_cache_ttl_ms: 500, ...(extra.auth ?? {}) },
  };
}

export async function api(base, method, target, { body, token = ADMIN, headers = {} } = {}) {
  const res = await fetch(`${base}${target}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

// A tenant with a project and a key; returns their ids and the key's secret.
export async function makeTenant(adminUrl, name, keyExtra = {}) {
  const t = await api(adminUrl, 'POST', '/admin/v1/tenants', { body: { name } });
  assert.equal(t.status, 201, t.text);
  const p = await api(adminUrl, 'POST', `/admin/v1/tenants/${t.json.id}/projects`, { body: { name: `${name} web` } });
  assert.equal(p.status, 201, p.text);
  const k = await api(adminUrl, 'POST', '/admin/v1/keys',
    { body: { tenant_id: t.json.id, project_id: p.json.id, name: `${name} key`, ...keyExtra } });
  assert.equal(k.status, 201, k.text);
  return { tenant: t.json.id, project: p.json.id, keyId: k.json.id, key: k.json.key };
}

export function chat(url, key, content = 'hello', extra = {}, headers = {}) {
  return postJson(`${url}/v1/chat/completions`, chatBody(content, extra),
    key ? { authorization: `Bearer ${key}`, ...headers } : headers);
}

// A spool segment: each record is u32 length, u32 CRC-32C, payload (little-endian).
export function spoolSegment(payloads) {
  const parts = [];
  for (const p of payloads) {
    const body = Buffer.from(p, 'utf8');
    const head = Buffer.alloc(8);
    head.writeUInt32LE(body.length, 0);
    head.writeUInt32LE(crc32c(body), 4);
    parts.push(head, body);
  }
  return Buffer.concat(parts);
}

const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i += 1) {
    let c = i;
    for (let k = 0; k < 8; k += 1) c = (c & 1) ? (c >>> 1) ^ 0x82F63B78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf) {
  let c = 0xFFFFFFFF;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}


// An independent F: graduated tiers with BigInt, micro-units = floor(sum(units x rate_e6) / 10^12
// + flat fees) x (10000 - discount) / 10000.
export function refPrice(tiers, units, discountBp = 0) {
  let scaled = 0n;
  let lower = 0n;
  const u = BigInt(units);
  for (const t of tiers) {
    const upper = t.up_to === undefined ? u : BigInt(Math.min(Number(u), t.up_to));
    const [whole, frac = ''] = t.rate.split('.');
    const rateE6 = BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
    if (u > lower) scaled += (upper - lower) * rateE6 + BigInt(t.flat_fee ?? 0) * 1_000_000_000_000n;
    if (t.up_to === undefined || u <= BigInt(t.up_to)) break;
    lower = BigInt(t.up_to);
  }
  return (scaled * BigInt(10_000 - discountBp)) / (1_000_000_000_000n * 10_000n);
}

export const planTiers = [{ up_to: 50, rate: '3333333.333333' }, { up_to: 500, rate: '1250000' }, { rate: '700000.5' }];

// Gives `tenant` a plan on a new price book for dev-echo with small graduated tiers (so that a
// few requests cross them) and returns the book.
export async function givePlan(adminUrl, tenant) {
  const tiers = planTiers;
  const created = await api(adminUrl, 'POST', '/admin/v1/price_books', {
    body: { name: `Rated ${tenant}`, currency: 'USD', effective_at: 1_700_000_000,
      models: { 'dev-echo': { input: tiers, output: tiers } } },
  });
  if (created.status !== 201) throw new Error(`price book: ${created.text}`);
  const plan = await api(adminUrl, 'POST', `/admin/v1/tenants/${tenant}/plan`, { body: { price_book_id: created.json.id } });
  if (plan.status !== 200) throw new Error(`plan: ${plan.text}`);
  return created.json;
}

// Checks per-event rating of `tenant` in the database: every event rated once, each
// accumulator at exactly the tokens of its events and charged exactly what they cost. Returns
// the token and cost totals.
export function expectRatedOnce(assert, pg, tenant) {
  const [[events, rated]] = pg.query(`SELECT count(*), count(cost_micros) FROM usage_events WHERE tenant_id = '${tenant}'`);
  assert.equal(Number(rated), Number(events), 'every event is rated');
  const sums = pg.query(`SELECT
      sum(prompt_tokens - least(cached_prompt_tokens, prompt_tokens)), sum(completion_tokens), sum(cost_micros)
      FROM usage_events WHERE tenant_id = '${tenant}'`)[0].map((v) => BigInt(v || 0));
  const acc = Object.fromEntries(pg.query(`SELECT token_class, sum(position), sum(charged_micros)
      FROM rating_accumulators WHERE tenant_id = '${tenant}' AND NOT batch GROUP BY 1`)
    .map(([cls, p, c]) => [cls, [BigInt(p), BigInt(c)]]));
  assert.equal(acc.input?.[0] ?? 0n, sums[0], 'the input accumulator holds the input tokens once');
  assert.equal(acc.output?.[0] ?? 0n, sums[1], 'the output accumulator holds the output tokens once');
  assert.equal((acc.input?.[1] ?? 0n) + (acc.output?.[1] ?? 0n) + (acc.cached_input?.[1] ?? 0n), sums[2],
    'the accumulators charged what the events cost');
  return { input: sums[0], output: sums[1], cost: sums[2] };
}
