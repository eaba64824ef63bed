// Usage explorer: the finance usage API's filters and groupings as a table and a chart, and a
// CSV download of exactly the rows shown.
import { h, replace, field, select, table } from '../dom.js';
import { usageBuckets } from '../api.js';
import { chartCard } from '../chart.js';
import { int, money, time, csvCell, microsToDecimal } from '../format.js';
import { RANGES, rangeOf, customRange, splitSeries, clipped } from './common.js';

const GROUPS = ['tenant_id', 'project_id', 'api_key_id', 'model', 'end_user', 'batch'];
const BUCKET_LIMITS = { '1h': 168, '1d': 31, '1mo': 12 };

export async function usagePage(main, session, args) {
  const params = new URLSearchParams(args[0] || 'range=7d&bucket_width=1d&group_by=model');
  const rangeSel = select('u-range', RANGES, params.get('range') || '7d');
  const from = h('input', { id: 'u-from', type: 'datetime-local',
    value: params.get('from') || '' });
  const to = h('input', { id: 'u-to', type: 'datetime-local', value: params.get('to') || '' });
  const bucket = select('u-bucket', [['1h', 'Hour'], ['1d', 'Day'], ['1mo', 'Month']],
    params.get('bucket_width') || '1d');
  const chosen = new Set((params.get('group_by') || '').split(',').filter(Boolean));
  const boxes = GROUPS.map((g) => h('label', {}, g,
    h('input', { type: 'checkbox', name: 'group_by', value: g, checked: chosen.has(g) })));
  const tenant = h('input', { id: 'u-tenant', value: params.get('tenant_id') || '',
    placeholder: 'any' });
  const model = h('input', { id: 'u-model', value: params.get('model') || '', placeholder: 'any' });
  const order = select('u-order', [['', 'By group'], ['cost_desc', 'Cost'],
    ['tokens_desc', 'Tokens'], ['requests_desc', 'Requests']], params.get('order') || '');
  const groupLimit = h('input', { id: 'u-group-limit', type: 'number', min: 1, max: 10000,
    value: params.get('group_limit') || '' });
  const checkedGroups = () => boxes.map((b) => b.lastChild).filter((c) => c.checked)
    .map((c) => c.value).join(',');
  const form = h('form', { class: 'controls', 'aria-label': 'Usage query', onsubmit: (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams({ range: rangeSel.value, from: from.value, to: to.value,
      bucket_width: bucket.value, group_by: checkedGroups(), tenant_id: tenant.value,
      model: model.value, order: order.value, group_limit: groupLimit.value });
    location.hash = `#/usage/${encodeURIComponent(p.toString())}`;
  } }, field('Range', rangeSel), field('From (UTC)', from), field('To (UTC)', to),
  field('Bucket', bucket), h('fieldset', {}, h('legend', {}, 'Group by'), boxes),
  field('Tenant id', tenant), field('Model', model), field('Order', order),
  field('Top N per bucket', groupLimit), h('button', { type: 'submit' }, 'Show'));
  const out = h('div', {});
  replace(main, h('h1', {}, 'Usage explorer'), form, out);
  if (rangeSel.value === 'custom') {
    const checked = customRange(from.value, to.value);
    if (checked.error) {
      out.append(h('p', { class: 'error', role: 'alert', id: 'u-error' }, checked.error));
      return;
    }
  }

  const range = rangeOf(rangeSel.value, from.value, to.value);
  const width = bucket.value;
  const query = { start_time: range.start, end_time: range.end, bucket_width: width,
    limit: BUCKET_LIMITS[width] ?? 31, group_by: params.get('group_by') || '',
    tenant_id: tenant.value, model: model.value, order: order.value,
    group_limit: groupLimit.value };
  const buckets = await usageBuckets('/finance/v1/usage', query);
  const groups = (params.get('group_by') || '').split(',').filter(Boolean);
  const rows = buckets.flatMap((b) => b.results.map((r) => ({ ...r, start_time: b.start_time,
    end_time: b.end_time })));
  const columns = [
    { label: 'Start (UTC)', csv: (r) => r.start_time, value: (r) => time(r.start_time, 'UTC') },
    ...groups.map((g) => ({ label: g, csv: (r) => r[g], value: (r) => clipped(r[g] ?? '(none)') })),
    { label: 'Requests', num: true, csv: (r) => r.num_model_requests,
      value: (r) => int(r.num_model_requests) },
    { label: 'Input tokens', num: true, csv: (r) => r.input_tokens,
      value: (r) => int(r.input_tokens) },
    { label: 'Output tokens', num: true, csv: (r) => r.output_tokens,
      value: (r) => int(r.output_tokens) },
    { label: 'Cost', num: true, csv: (r) => microsToDecimal(r.cost_micros ?? 0),
      value: (r) => money(r.cost_micros, r.currency) },
    { label: 'Currency', csv: (r) => r.currency, value: (r) => r.currency ?? '—' },
  ];
  const csv = [columns.map((c) => csvCell(c.label)).join(',')]
    .concat(rows.map((r) => columns.map((c) => csvCell(c.csv(r))).join(','))).join('\n');
  const blob = new Blob([`${csv}\n`], { type: 'text/csv' });
  const link = h('a', { href: URL.createObjectURL(blob), download: 'usage.csv', id: 'usage-csv' },
    'Download CSV (these rows)');
  const key = (r) => (groups.length ? groups.map((g) => r[g] ?? '(none)').join(' · ') : 'all');
  const { xs, groups: series } = splitSeries(buckets, key);
  out.append(chartCard('Cost per bucket', xs,
    series.map((g) => ({ label: g.label, values: g.cost, format: (v) => money(v, g.currency) })),
    { fmtX: (x) => time(x, 'UTC') }),
  h('section', { class: 'card', 'aria-label': 'Usage rows' },
    h('div', { class: 'chart-head' }, h('h2', {}, `${rows.length} rows`), link),
    table(columns, rows)));
}
