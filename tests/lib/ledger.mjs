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

