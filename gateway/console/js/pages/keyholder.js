// The key holder's page (public listener): the own tenant's usage over time by model and by
// end user, and the budgets that apply with what remains and when they reset, in the tenant's
// time zone. The gateway scopes every answer to the key's tenant.
import { h, replace, field, select, table } from '../dom.js';
import { get, usageBuckets } from '../api.js';
import { chartCard } from '../chart.js';
import { int, money, time } from '../format.js';
import { RANGES, rangeOf, splitSeries, budgetColumns } from './common.js';

export async function keyHolderPage(main, session, args) {
  const tz = session.tenant?.time_zone || 'UTC';
  const rangeArg = args[0] || '7d';
  const range = rangeOf(rangeArg);
  const bucket = rangeArg === '24h' ? '1h' : '1d';
  const rangeSel = select('kh-range', RANGES.filter(([id]) => id !== 'custom'), rangeArg);
  rangeSel.addEventListener('change', () => { location.hash = `#/usage/${rangeSel.value}`; });
  const out = h('div', {});
  replace(main, h('h1', {}, `Usage of ${session.tenant?.name ?? session.tenant_id}`),
    h('p', { class: 'muted' }, `Times in ${tz}.`),
    h('div', { class: 'controls' }, field('Range', rangeSel)), out);
  const params = { start_time: range.start, end_time: range.end, bucket_width: bucket,
    limit: bucket === '1h' ? 168 : 31 };
  const [byModel, byUser, budgets] = await Promise.all([
    usageBuckets('/v1/usage', { ...params, group_by: 'model' }),
    usageBuckets('/v1/usage', { ...params, group_by: 'end_user' }),
    get('/v1/budgets'),
  ]);
  const fmtX = (x) => time(x, tz);
  // The tenant's currency, as its usage reports it (spend budgets are in the same one).
  const currency = byModel.flatMap((b) => b.results).find((r) => r.currency)?.currency ?? null;
  const m = splitSeries(byModel, (r) => r.model);
  const u = splitSeries(byUser, (r) => r.end_user);
  const series = (s, measure, format) => s.groups.map((g) => ({
    label: g.label, values: g[measure], format: format(g) }));
  out.append(h('div', { class: 'grid' },
    chartCard('Requests by model', m.xs, series(m, 'requests', () => int), { fmtX }),
    chartCard('Spend by model', m.xs, series(m, 'cost', (g) => (v) => money(v, g.currency)),
      { fmtX }),
    chartCard('Tokens by end user', u.xs, series(u, 'tokens', () => int), { fmtX })),
  h('section', { class: 'card', 'aria-label': 'Budgets' }, h('h2', {}, 'Budgets'),
    table(budgetColumns, (budgets.data ?? []).map((b) => ({ ...b, tz, currency })))));
}
