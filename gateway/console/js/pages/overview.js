// Overview: requests, tokens and spend over time split by model or tenant; the top tenants,
// projects, keys and end users by spend; budgets nearest their limit; refusals over time. The
// range is the last 24 h, 7 or 30 days, or one chosen with two UTC times (#/overview/custom/
// <bucket>/<split>/<from>/<to>).
import { h, replace, field, select, table } from '../dom.js';
import { get, usageBuckets, listAll, qs } from '../api.js';
import { chartCard } from '../chart.js';
import { int, money, time, sumMicros } from '../format.js';
import {
  RANGES, rangeOf, customRange, bucketFor, formatUtc, splitSeries, budgetColumns, clipped,
  tenantCurrency,
} from './common.js';

const TOPS = [['tenant_id', 'Tenants', 'Tenant'], ['project_id', 'Projects', 'Project'],
  ['api_key_id', 'Keys', 'Key'], ['end_user', 'End users', 'End user']];

export async function overviewPage(main, session, args) {
  const [rangeArg = '7d', bucketArg = '', splitArg = 'model', fromArg = '', toArg = ''] = args;
  const custom = rangeArg === 'custom';
  const checked = custom ? customRange(fromArg, toArg, true) : rangeOf(rangeArg);
  const range = checked.error ? rangeOf('7d') : checked;
  const chosen = bucketFor(range, bucketArg);
  const bucket = chosen.bucket;

  const rangeSel = select('ov-range', RANGES.map(([id, l]) => [id, l]), rangeArg);
  const bucketSel = select('ov-bucket', [['', 'Automatic'], ['1h', 'Hourly'], ['1d', 'Daily']],
    bucketArg);
  const splitSel = select('ov-split', [['model', 'By model'], ['tenant_id', 'By tenant']],
    splitArg);
  const from = h('input', { id: 'ov-from', type: 'datetime-local',
    value: fromArg || formatUtc(range.start) });
  const to = h('input', { id: 'ov-to', type: 'datetime-local',
    value: toArg || formatUtc(range.end) });
  const customBox = h('span', { class: custom ? 'controls inline' : 'controls inline hidden' },
    field('From (UTC)', from), field('To (UTC)', to),
    h('button', { type: 'submit', id: 'ov-apply' }, 'Show range'));
  const go = () => {
    const base = `#/overview/${rangeSel.value}/${bucketSel.value}/${splitSel.value}`;
    location.hash = rangeSel.value === 'custom' ? `${base}/${from.value}/${to.value}` : base;
  };
  const controls = h('form', {
    class: 'controls', 'aria-label': 'Overview range',
    onsubmit: (ev) => { ev.preventDefault(); go(); },
    onchange: () => {
      // A chosen range is shown with its button, once both ends are given.
      customBox.classList.toggle('hidden', rangeSel.value !== 'custom');
      if (rangeSel.value !== 'custom') go();
    },
  }, field('Range', rangeSel), field('Buckets', bucketSel), field('Split', splitSel), customBox);
  const body = h('div', {});
  const notes = [checked.error, chosen.error].filter(Boolean);
  replace(main, h('h1', {}, 'Overview'),
    checked.error ? null : h('p', { class: 'muted', id: 'ov-range-text' },
      `${time(range.start, 'UTC')} to ${time(range.end, 'UTC')} UTC, `,
      `${bucket === '1h' ? 'hourly' : 'daily'}; spend in each plan's currency.`),
    controls,
    notes.length
      ? h('p', { class: 'error', role: 'alert', id: 'ov-error' }, notes.join(' ')) : null,
    body);
  if (checked.error) return;

  const params = { start_time: range.start, end_time: range.end, bucket_width: bucket,
    limit: bucket === '1h' ? 168 : 31 };
  const refusalQuery = qs({ start_time: range.start, end_time: range.end, bucket_width: bucket });
  const [split, refusals, tenants] = await Promise.all([
    usageBuckets('/finance/v1/usage', { ...params, group_by: splitArg }),
    get(`/finance/v1/refusals${refusalQuery}`),
    listAll('/admin/v1/tenants'),
  ]);
  const names = new Map(tenants.map((t) => [t.id, t.name]));
  const label = (r) => (splitArg === 'model' ? r.model : names.get(r.tenant_id) ?? r.tenant_id);
  const { xs, groups } = splitSeries(split, label);
  const fmtX = (x) => time(x, 'UTC');
  const currency = groups.find((g) => g.currency)?.currency ?? null;
  const series = (measure, format) => groups.map((g) => ({
    label: g.label, values: g[measure], format: format(g) }));
  body.append(h('div', { class: 'grid' },
    chartCard('Requests', xs, series('requests', () => int), { fmtX }),
    chartCard('Tokens', xs, series('tokens', () => int), { fmtX }),
    chartCard('Spend', xs, series('cost', (g) => (v) => money(v, g.currency ?? currency)),
      { fmtX })));

  // Refusals: the server's counts per non-empty bucket, placed on the same time axis.
  const byStart = new Map(refusals.data.map((r) => [r.start_time, r]));
  const step = bucket === '1h' ? 3600 : 86400;
  const rxs = [];
  for (let x = range.start; x < range.end; x += step) rxs.push(x);
  const refused = (key) => rxs.map((x) => byStart.get(x)?.[key] ?? 0);
  body.append(chartCard('Refused requests (429, 402)', rxs, [
    { label: '429 (budget or rate limit)', values: refused('refused_429'), format: int },
    { label: '402 (credits)', values: refused('refused_402'), format: int },
  ], { fmtX }));

  const tops = h('div', { class: 'grid tops' });
  body.append(h('h2', {}, 'Top by spend'), tops);
  await Promise.all([
    Promise.all(TOPS.map(([groupBy, title, one]) => topCard(range, groupBy, title, one, names)))
      .then((cards) => tops.append(...cards)),
    nearestBudgets(tenants).then((card) => body.append(card)),
  ]);
}

// The top 5 by spend over the range: the server's sums per calendar month (a bucket each),
// added across months as BigInt.
async function topCard(range, groupBy, title, one, names) {
  const buckets = await usageBuckets('/finance/v1/usage', { start_time: range.start,
    end_time: range.end, bucket_width: '1mo', limit: 12, group_by: groupBy });
  const totals = new Map();
  for (const b of buckets) {
    for (const r of b.results) {
      const k = r[groupBy] ?? '(none)';
      const t = totals.get(k) ?? { key: k, cost: [], requests: 0, currency: r.currency };
      t.cost.push(r.cost_micros ?? 0);
      t.requests += r.num_model_requests;
      totals.set(k, t);
    }
  }
  const rows = [...totals.values()].map((t) => ({ ...t, total: sumMicros(t.cost) }))
    .sort((a, b) => (b.total > a.total ? 1 : b.total < a.total ? -1 : 0)).slice(0, 5);
  const name = (r) => (groupBy === 'tenant_id' ? names.get(r.key) ?? r.key : r.key);
  return h('section', { class: 'card', 'aria-label': `Top ${title}` }, h('h3', {}, title), table([
    { label: one, value: (r) => clipped(name(r)) },
    { label: 'Requests', num: true, value: (r) => int(r.requests) },
    { label: 'Spend', num: true, value: (r) => money(r.total, r.currency) },
  ], rows));
}

// Budgets nearest their limit (each tenant's budgets with what they hold now).
async function nearestBudgets(tenants) {
  const budgets = [];
  const lists = await Promise.all(tenants.slice(0, 50).map((t) =>
    get(`/admin/v1/budgets${qs({ tenant_id: t.id, limit: 100 })}`).then((l) => [t, l])));
  for (const [t, list] of lists) {
    for (const b of list.data) budgets.push({ ...b, tz: t.time_zone, tenantName: t.name });
  }
  const ratio = (b) => (b.used === null || !b.limit ? -1n
    : (BigInt(b.used) * 1000000n) / BigInt(b.limit));
  budgets.sort((a, b) => (ratio(b) > ratio(a) ? 1 : ratio(b) < ratio(a) ? -1 : 0));
  const shown = budgets.slice(0, 10);
  // Spend is shown in each tenant's currency: one look-up per tenant with a spend budget shown.
  const spendTenants = [...new Set(shown.filter((b) => b.metric === 'spend')
    .map((b) => b.tenant_id))];
  const currencies = new Map(await Promise.all(spendTenants.map((id) =>
    tenantCurrency(id).then((c) => [id, c]))));
  for (const b of shown) b.currency = currencies.get(b.tenant_id) ?? null;
  const tenantLink = (b) => h('a', { href: `#/tenants/${b.tenant_id}` }, b.tenantName);
  return h('section', { class: 'card', 'aria-label': 'Budgets nearest their limit' },
    h('h2', {}, 'Budgets nearest their limit'),
    table([{ label: 'Tenant', value: tenantLink }, ...budgetColumns], shown));
}
