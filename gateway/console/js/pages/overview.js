// Overview: requests, tokens and spend over time split by model or tenant; the top tenants,
// projects, keys and end users by spend; budgets nearest their limit; refusals over time.
import { h, replace, field, select, table } from '../dom.js';
import { get, usageBuckets, listAll, qs } from '../api.js';
import { chartCard } from '../chart.js';
import { int, money, time, sumMicros } from '../format.js';
import { RANGES, rangeOf, splitSeries, budgetColumns } from './common.js';

export async function overviewPage(main, session, args) {
  const [rangeArg = '7d', bucketArg = '', splitArg = 'model'] = args;
  const range = rangeOf(rangeArg);
  const bucket = bucketArg || (rangeArg === '24h' ? '1h' : '1d');
  const controls = h('form', { class: 'controls', 'aria-label': 'Overview range',
    onchange: () => {
      location.hash = `#/overview/${rangeSel.value}/${bucketSel.value}/${splitSel.value}`;
    } });
  const rangeSel = select('ov-range', RANGES.filter(([id]) => id !== 'custom').map(([id, l]) => [id, l]), rangeArg);
  const bucketSel = select('ov-bucket', [['1h', 'Hourly'], ['1d', 'Daily']], bucket);
  const splitSel = select('ov-split', [['model', 'By model'], ['tenant_id', 'By tenant']], splitArg);
  controls.append(field('Range', rangeSel), field('Buckets', bucketSel), field('Split', splitSel));
  const body = h('div', {});
  replace(main, h('h1', {}, 'Overview'), h('p', { class: 'muted' }, 'Times in UTC; spend in each plan\'s currency.'), controls, body);

  const limit = bucket === '1h' ? 168 : 31;
  const params = { start_time: range.start, end_time: range.end, bucket_width: bucket, limit };
  const [split, refusals, tenants] = await Promise.all([
    usageBuckets('/finance/v1/usage', { ...params, group_by: splitArg }),
    get(`/finance/v1/refusals${qs({ start_time: range.start, end_time: range.end, bucket_width: bucket })}`),
    listAll('/admin/v1/tenants'),
  ]);
  const names = new Map(tenants.map((t) => [t.id, t.name]));
  const label = (r) => (splitArg === 'model' ? r.model : names.get(r.tenant_id) ?? r.tenant_id);
  const { xs, groups } = splitSeries(split, label);
  const fmtX = (x) => time(x, 'UTC');
  const currency = groups.find((g) => g.currency)?.currency ?? null;
  body.append(h('div', { class: 'grid' },
    chartCard('Requests', xs, groups.map((g) => ({ label: g.label, values: g.requests, format: int })), { fmtX }),
    chartCard('Tokens', xs, groups.map((g) => ({ label: g.label, values: g.tokens, format: int })), { fmtX }),
    chartCard('Spend', xs, groups.map((g) => ({ label: g.label, values: g.cost, format: (v) => money(v, g.currency ?? currency) })), { fmtX })));

  // Refusals: the server's counts per non-empty bucket, placed on the same time axis.
  const byStart = new Map(refusals.data.map((r) => [r.start_time, r]));
  const step = bucket === '1h' ? 3600 : 86400;
  const rxs = [];
  for (let x = range.start; x < range.end; x += step) rxs.push(x);
  body.append(chartCard('Refused requests (429, 402)', rxs, [
    { label: '429 (budget or rate limit)', values: rxs.map((x) => byStart.get(x)?.refused_429 ?? 0), format: int },
    { label: '402 (credits)', values: rxs.map((x) => byStart.get(x)?.refused_402 ?? 0), format: int },
  ], { fmtX }));

  // Top N by spend over the range: the per-bucket sums of the server, added across buckets.
  const tops = h('div', { class: 'grid' });
  body.append(h('h2', {}, 'Top by spend'), tops);
  for (const [groupBy, title] of [['tenant_id', 'Tenants'], ['project_id', 'Projects'], ['api_key_id', 'Keys'], ['end_user', 'End users']]) {
    const buckets = await usageBuckets('/finance/v1/usage', { start_time: range.start, end_time: range.end, bucket_width: '1d', limit: 31, group_by: groupBy });
    const totals = new Map();
    for (const b of buckets) {
      for (const r of b.results) {
        const k = r[groupBy] ?? '(none)';
        const t = totals.get(k) ?? { key: k, cost: [], requests: 0, currency: r.currency, tenant: r.tenant_id };
        t.cost.push(r.cost_micros ?? 0);
        t.requests += r.num_model_requests;
        totals.set(k, t);
      }
    }
    const rows = [...totals.values()].map((t) => ({ ...t, total: sumMicros(t.cost) }))
      .sort((a, b) => (b.total > a.total ? 1 : b.total < a.total ? -1 : 0)).slice(0, 5);
    tops.append(h('section', { class: 'card', 'aria-label': `Top ${title}` }, h('h3', {}, title), table([
      { label: title.slice(0, -1), value: (r) => (groupBy === 'tenant_id' ? names.get(r.key) ?? r.key : r.key) },
      { label: 'Requests', num: true, value: (r) => int(r.requests) },
      { label: 'Spend', num: true, value: (r) => money(r.total, r.currency) },
    ], rows)));
  }

  // Budgets nearest their limit (each tenant's budgets with what they hold now).
  const budgets = [];
  for (const t of tenants.slice(0, 50)) {
    const list = await get(`/admin/v1/budgets${qs({ tenant_id: t.id, limit: 100 })}`);
    for (const b of list.data) budgets.push({ ...b, tz: t.time_zone, tenantName: t.name });
  }
  const ratio = (b) => (b.used === null || !b.limit ? -1n : (BigInt(b.used) * 1000000n) / BigInt(b.limit));
  budgets.sort((a, b) => (ratio(b) > ratio(a) ? 1 : ratio(b) < ratio(a) ? -1 : 0));
  body.append(h('section', { class: 'card', 'aria-label': 'Budgets nearest their limit' },
    h('h2', {}, 'Budgets nearest their limit'),
    table([{ label: 'Tenant', value: (b) => h('a', { href: `#/tenants/${b.tenant_id}` }, b.tenantName) }, ...budgetColumns], budgets.slice(0, 10))));
}
