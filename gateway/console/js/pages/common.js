// What the pages share: time ranges, usage series built from the APIs' aggregated buckets, and
// budget bars.
import { h } from '../dom.js';
import { int, money, percent, share, time } from '../format.js';

export const RANGES = [['24h', 'Last 24 hours', 86400], ['7d', 'Last 7 days', 7 * 86400],
  ['30d', 'Last 30 days', 30 * 86400], ['custom', 'Custom range', 0]];

// start/end (unix s) of a range choice; a custom one from two datetime-local inputs (UTC).
export function rangeOf(choice, from, to) {
  const now = Math.floor(Date.now() / 1000);
  if (choice === 'custom' && from && to) {
    return { start: Math.floor(Date.parse(`${from}Z`) / 1000), end: Math.floor(Date.parse(`${to}Z`) / 1000) };
  }
  const r = RANGES.find(([id]) => id === choice) || RANGES[1];
  const width = r[2] || 7 * 86400;
  return { start: now - width, end: now };
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
          tokens: new Array(xs.length).fill(0), cost: new Array(xs.length).fill(0n), currency: r.currency });
      }
      const g = groups.get(k);
      g.requests[i] = r.num_model_requests;
      g.tokens[i] = r.input_tokens + r.output_tokens;
      g.cost[i] = BigInt(r.cost_micros ?? 0);
    }
  });
  return { xs, groups: [...groups.values()].slice(0, limit) };
}

export function budgetBar(b) {
  const limit = b.limit;
  const bar = h('div', { class: 'bar', role: 'img',
    'aria-label': `used ${b.used ?? 0}, held ${b.held ?? 0} of ${limit}` });
  const used = h('span', { class: 'used' });
  used.style.width = `${share(b.used ?? 0, limit)}%`;
  const held = h('span', { class: 'held' });
  held.style.width = `${Math.max(0, share((b.used ?? 0) + (b.held ?? 0), limit) - share(b.used ?? 0, limit))}%`;
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

export const budgetColumns = [
  { label: 'Budget', value: (b) => `${b.scope}${b.scope_id ? ` ${b.scope_id}` : ''} · ${b.metric} per ${b.window}` },
  { label: 'Mode', value: (b) => b.mode },
  { label: 'Used / held', value: (b) => budgetBar(b) },
  { label: 'Used', num: true, value: (b) => budgetAmount(b, b.used, b.currency) },
  { label: 'Held', num: true, value: (b) => budgetAmount(b, b.held, b.currency) },
  { label: 'Remaining', num: true, value: (b) => budgetAmount(b, b.remaining, b.currency) },
  { label: 'Limit', num: true, value: (b) => budgetAmount(b, b.limit, b.currency) },
  { label: 'Used %', num: true, value: (b) => percent(b.used ?? 0, b.limit) },
  { label: 'Resets', value: (b) => time(b.resets_at, b.tz) },
];
