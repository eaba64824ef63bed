// What the budget suites share: a gateway configuration with budgets on (two models with
// estimate prices), creating a budget through the admin API, a chat request with a key, where
// a calendar window starts in a time zone, and a gateway's budget lease events.
import assert from 'node:assert/strict';
import { chatBody, postJson } from './harness.mjs';
import { dbConfig, api } from './ledger.mjs';

// Estimate prices of 1 and 2 micro-units per prompt and completion token make spend easy to
// check: spend = prompt + 2 x completion.
export function budgetConfig(pg, redis, dir, extra = {}) {
  return {
    ...dbConfig(pg, dir),
    budgets: { ...redis.budgetsConfig, ...extra },
    // A request without max_tokens holds the rest of the context: a small one keeps those
    // holds inside the tests' budgets.
    models: {
      'dev-echo': { upstream: 'dev', context_tokens: 8192, estimate_input_price: 1_000_000, estimate_output_price: 2_000_000 },
      'dev-other': { upstream: 'dev', context_tokens: 8192, estimate_input_price: 1_000_000, estimate_output_price: 2_000_000 },
    },
  };
}

export async function addBudget(adminUrl, body) {
  const r = await api(adminUrl, 'POST', '/admin/v1/budgets', { body });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

export function ask(url, key, extra = {}, content = 'budget test') {
  return postJson(`${url}/v1/chat/completions`, chatBody(content, extra), { authorization: `Bearer ${key}` });
}

// The instant of local midnight starting the day (ISO week, month or quarter) that holds `now`
// in time zone `tz`, worked out with the JavaScript runtime's own time zone data.
export function localWindowStart(tz, now, unit) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(now)).map((p) => [p.type, Number(p.value)]));
  const offsetAt = (t) => {
    const q = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
      timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
    }).formatToParts(new Date(t)).map((p) => [p.type, Number(p.value)]));
    return Date.UTC(q.year, q.month - 1, q.day, q.hour, q.minute, q.second) - Math.floor(t / 1000) * 1000;
  };
  const day = Date.UTC(parts.year, parts.month - 1, parts.day);
  const wall = {
    day,
    week: day - ((new Date(day).getUTCDay() + 6) % 7) * 86400000,
    month: Date.UTC(parts.year, parts.month - 1, 1),
    quarter: Date.UTC(parts.year, Math.floor((parts.month - 1) / 3) * 3, 1),
  }[unit];
  let t = wall - offsetAt(wall);
  t = wall - offsetAt(t);
  return t;
}

// A gateway's tollgate_budget_leases_total counts by event: {leased, exact, recalled,
// flush_failed, flush_repeated, renewed} (all registered when leases are on).
export async function leaseEvents(adminUrl) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^tollgate_budget_leases_total\{event="([a-z_]+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}
