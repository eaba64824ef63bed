// What the pages share: time ranges, usage series built from the APIs' aggregated buckets, and
// budget bars.
import { h } from '../dom.js';
import { get, ApiError } from '../api.js';
import { int, money, percent, share, time } from '../format.js';

export const RANGES = [['24h', 'Last 24 hours', 86400], ['7d', 'Last 7 days', 7 * 86400],
  ['30d', 'Last 30 days', 30 * 86400], ['custom', 'Chosen range', 0]];

const HOUR_S = 3600;
const DAY_S = 86400;
// A chosen range spans at most a year; hourly buckets at most 31 days (the refusals report's
// bound); ranges of up to 3 days get hourly buckets unless asked otherwise, longer ones daily.
export const CUSTOM_RANGE_MAX_S = 366 * DAY_S;
export const HOURLY_RANGE_MAX_S = 31 * DAY_S;
const HOURLY_DEFAULT_MAX_S = 3 * DAY_S;

// A datetime-local value ("2026-12-06T14:00") read as UTC: unix seconds, or null.
export function parseUtc(text) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(text || '')) return null;
  const ms = Date.parse(`${text}Z`);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

// Unix seconds as a datetime-local value in UTC.
export function formatUtc(unixS) {
  return new Date(unixS * 1000).toISOString().slice(0, 16);
}

// start/end (unix s) of a range choice. The last 24 h, 7 or 30 days end at the next whole hour
// (the current hour included), so that buckets are whole hours; a custom one comes from two
// datetime-local inputs (UTC) and is checked by customRange.
export function rangeOf(choice, from, to, wholeHours) {
  if (choice === 'custom') {
    const r = customRange(from, to, wholeHours);
    if (!r.error) return r;
  }
  const end = Math.ceil(Date.now() / 1000 / HOUR_S) * HOUR_S;
  const r = RANGES.find(([id]) => id === choice && id !== 'custom') || RANGES[1];
  return { start: end - r[2], end };
}

// A chosen range: {start, end} (widened to whole hours when asked), or {error} saying what is
// wrong.
export function customRange(from, to, wholeHours) {
  const a = parseUtc(from);
  const z = parseUtc(to);
  if (a === null || z === null) return { error: 'Give both ends of the range (UTC).' };
  if (z <= a) return { error: 'The range must end after it starts.' };
  const start = wholeHours ? Math.floor(a / HOUR_S) * HOUR_S : a;
  const end = wholeHours ? Math.ceil(z / HOUR_S) * HOUR_S : z;
  if (end - start > CUSTOM_RANGE_MAX_S) return { error: 'A range spans at most 366 days.' };
  return { start, end };
}

// The bucket for a range: the one asked for when it fits, else hourly up to 3 days, daily
// beyond; {bucket, error} when hourly was asked for a range too long for it.
export function bucketFor(range, asked) {
  const span = range.end - range.start;
  if (asked === '1h' && span > HOURLY_RANGE_MAX_S) {
    return { bucket: '1d', error: 'Hourly buckets cover at most 31 days; showing days.' };
  }
  if (asked === '1h' || asked === '1d') return { bucket: asked };
  return { bucket: span <= HOURLY_DEFAULT_MAX_S ? '1h' : '1d' };
}

// Columns of a usage report (buckets of results) split by `key(result)`: xs, and per group
// the requests, tokens and cost per bucket (the server's sums; nothing is added up here
// beyond picking each bucket's row).
export function splitSeries(buckets, key, limit = 8) {
  const xs = buckets.map((b) => b.start_time);
  const groups = new Map();
  buckets.forEach((b, i) => {
    for (const r of b.results) {
      const k = key(r) ?? '(none)';
      if (!groups.has(k)) {
        groups.set(k, { label: k, requests: new Array(xs.length).fill(0),
          tokens: new Array(xs.length).fill(0), cost: new Array(xs.length).fill(0n),
          currency: r.currency });
      }
      const g = groups.get(k);
      g.requests[i] = r.num_model_requests;
      g.tokens[i] = r.input_tokens + r.output_tokens;
      g.cost[i] = BigInt(r.cost_micros ?? 0);
    }
  });
  return { xs, groups: [...groups.values()].slice(0, limit) };
}

// The currency of a tenant's plan (its price book's), or null without a plan.
export async function planCurrency(plan) {
  if (!plan) return null;
  const book = await get(`/admin/v1/price_books/${encodeURIComponent(plan.price_book_id)}`);
  return book.currency ?? null;
}

// The currency of a tenant's plan, or null when the tenant has none.
export async function tenantCurrency(tenantId) {
  try {
    return await planCurrency(await get(`/admin/v1/tenants/${encodeURIComponent(tenantId)}/plan`));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

// A long id or name cut to the cell's width with an ellipsis; the whole text in its title.
export function clipped(text) {
  return h('span', { class: 'clip', title: text }, text);
}

export function budgetBar(b) {
  const limit = b.limit;
  const bar = h('div', { class: 'bar', role: 'img',
    'aria-label': `used ${b.used ?? 0}, held ${b.held ?? 0} of ${limit}` });
  const used = h('span', { class: 'used' });
  used.style.width = `${share(b.used ?? 0, limit)}%`;
  const held = h('span', { class: 'held' });
  const usedAndHeld = BigInt(b.used ?? 0) + BigInt(b.held ?? 0);
  held.style.width = `${Math.max(0, share(usedAndHeld, limit) - share(b.used ?? 0, limit))}%`;
  bar.append(used, held);
  return bar;
}

export function budgetAmount(b, v, currency) {
  if (v === null || v === undefined) return '—';
  return b.metric === 'spend' ? money(v, currency) : int(v);
}

export function budgetRows(budgets, tz, currency) {
  return budgets.map((b) => ({ ...b, tz, currency }));
}

export function budgetName(b) {
  return `${b.scope}${b.scope_id ? ` ${b.scope_id}` : ''} · ${b.metric} per ${b.window}`;
}

export const budgetColumns = [
  { label: 'Budget', value: budgetName },
  { label: 'Mode', value: (b) => b.mode },
  { label: 'Used / held', value: (b) => budgetBar(b) },
  { label: 'Used', num: true, value: (b) => budgetAmount(b, b.used, b.currency) },
  { label: 'Held', num: true, value: (b) => budgetAmount(b, b.held, b.currency) },
  { label: 'Remaining', num: true, value: (b) => budgetAmount(b, b.remaining, b.currency) },
  { label: 'Limit', num: true, value: (b) => budgetAmount(b, b.limit, b.currency) },
  { label: 'Used %', num: true, value: (b) => percent(b.used ?? 0, b.limit) },
  { label: 'Resets', value: (b) => time(b.resets_at, b.tz) },
];
