// Credits and invoices: a tenant's grants with balances and expiry, its credit transfers, its
// invoices (drafts and finalized) with lines and credits, each as CSV and in a printable view.
import { h, replace, field, table } from '../dom.js';
import { get, listAll, qs, ApiError } from '../api.js';
import { money, time } from '../format.js';

export async function billingPage(main, session, args) {
  const tenants = await listAll('/admin/v1/tenants');
  const pick = h('select', { id: 'billing-tenant', onchange: () => { location.hash = `#/billing/${pick.value}`; } },
    h('option', { value: '' }, 'Choose a tenant'), tenants.map((t) => h('option', { value: t.id, selected: t.id === args[0] }, t.name)));
  const out = h('div', {});
  replace(main, h('h1', {}, 'Credits and invoices'), h('div', { class: 'controls' }, field('Tenant', pick),
    h('button', { type: 'button', class: 'secondary no-print', onclick: () => window.print() }, 'Print')), out);
  const tenant = tenants.find((t) => t.id === args[0]);
  if (!tenant) return;
  const tz = tenant.time_zone || 'UTC';
  let credits = null;
  try {
    credits = await get(`/finance/v1/credits${qs({ tenant_id: tenant.id })}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const [transfers, invoices] = await Promise.all([
    get(`/finance/v1/credit_transfers${qs({ tenant_id: tenant.id, limit: 50 })}`),
    get(`/finance/v1/invoices${qs({ tenant_id: tenant.id })}`),
  ]);
  const cur = invoices.data[0]?.currency ?? null;
  if (credits) {
    out.append(h('section', { class: 'card', 'aria-label': 'Credit grants' }, h('h2', {}, 'Credits'),
      h('p', {}, `Available ${money(credits.available_micros, cur)} · used ${money(credits.used_micros, cur)} · expired ${money(credits.expired_micros, cur)}`),
      table([{ label: 'Grant', value: (g) => g.id }, { label: 'Kind', value: (g) => g.kind },
        { label: 'Amount', num: true, value: (g) => money(g.amount_micros, cur) },
        { label: 'Balance', num: true, value: (g) => money(g.balance_micros, cur) },
        { label: 'Expires', value: (g) => time(g.expires_at, tz) }], credits.grants ?? [])));
  }
  out.append(h('section', { class: 'card', 'aria-label': 'Credit transfers' }, h('h2', {}, 'Credit transfers'),
    table([{ label: 'When', value: (t) => time(t.occurred_at, tz) }, { label: 'Kind', value: (t) => t.kind },
      { label: 'Period', value: (t) => t.period ?? '—' },
      { label: 'Entries', value: (t) => t.entries.map((e) => `${e.account}: ${money(e.amount_micros, cur)}`).join('; ') }], transfers.data)));
  for (const inv of invoices.data) {
    out.append(h('section', { class: 'card invoice', 'aria-label': `Invoice ${inv.number ?? inv.id}` },
      h('div', { class: 'chart-head' }, h('h2', {}, `Invoice ${inv.number ?? inv.id} · ${inv.period} · ${inv.status}`),
        h('a', { href: `/finance/v1/invoices/${inv.id}?format=csv`, download: `${inv.id}.csv` }, 'CSV')),
      table([{ label: 'Model', value: (l) => l.model ?? '—' }, { label: 'Class', value: (l) => l.token_class ?? l.kind ?? '—' },
        { label: 'Quantity', num: true, value: (l) => l.quantity ?? l.tokens ?? '—' },
        { label: 'Amount', num: true, value: (l) => money(l.amount_micros, inv.currency) }], inv.lines ?? []),
      h('p', {}, `Credits ${money(inv.credits_micros ?? 0, inv.currency)} · total due ${money(inv.total_due_micros, inv.currency)}`)));
  }
  if (!invoices.data.length) out.append(h('p', { class: 'muted' }, 'No invoices yet.'));
}
