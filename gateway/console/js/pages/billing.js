// Credits and invoices: a tenant's grants with balances and expiry (admins grant credits), its
// credit transfers, its invoices (drafts and finalized) with lines and credits, each as CSV and
// in a printable view.
import { h, replace, field, table, notify } from '../dom.js';
import { get, post, listAll, qs, ApiError } from '../api.js';
import { money, time, decimalToMicros } from '../format.js';
import { clipped, parseUtc, planCurrency } from './common.js';

// The API's bound on a grant (docs/CREDITS.md): 10^15 micro-units.
const GRANT_MICROS_MAX = 1000000000000000n;

export async function billingPage(main, session, args) {
  const tenants = await listAll('/admin/v1/tenants');
  const pick = h('select', { id: 'billing-tenant',
    onchange: () => { location.hash = `#/billing/${pick.value}`; } },
  h('option', { value: '' }, 'Choose a tenant'),
  tenants.map((t) => h('option', { value: t.id, selected: t.id === args[0] }, t.name)));
  const out = h('div', {});
  replace(main, h('h1', {}, 'Credits and invoices'),
    h('div', { class: 'controls' }, field('Tenant', pick),
      h('button', { type: 'button', class: 'secondary no-print', onclick: () => window.print() },
        'Print')),
    out);
  const tenant = tenants.find((t) => t.id === args[0]);
  if (!tenant) return;
  const tz = tenant.time_zone || 'UTC';
  let credits = null;
  try {
    credits = await get(`/finance/v1/credits${qs({ tenant_id: tenant.id })}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const [transfers, invoices, plan] = await Promise.all([
    get(`/finance/v1/credit_transfers${qs({ tenant_id: tenant.id, limit: 50 })}`),
    get(`/finance/v1/invoices${qs({ tenant_id: tenant.id })}`),
    get(`/admin/v1/tenants/${tenant.id}/plan`).catch((e) => {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }),
  ]);
  const cur = (await planCurrency(plan)) ?? invoices.data[0]?.currency ?? null;
  const reload = () => billingPage(main, session, args);
  const grants = h('section', { class: 'card', 'aria-label': 'Credit grants' },
    h('h2', {}, 'Credits'));
  if (credits) {
    grants.append(h('p', { id: 'credit-summary' },
      `Available ${money(credits.available_micros, cur)}`,
      ` · used ${money(credits.used_micros, cur)}`,
      ` · expired ${money(credits.expired_micros, cur)}`),
    table([{ label: 'Grant', value: (g) => clipped(g.id) },
      { label: 'Kind', value: (g) => g.kind },
      { label: 'Amount', num: true, value: (g) => money(g.amount_micros, cur) },
      { label: 'Balance', num: true, value: (g) => money(g.balance_micros, cur) },
      { label: 'Expires', value: (g) => time(g.expires_at, tz) },
      { label: 'Memo', value: (g) => g.memo ?? '—' }], credits.grants ?? []));
  } else {
    grants.append(h('p', { class: 'muted' }, 'No credits yet.'));
  }
  if (session.role === 'admin') grants.append(grantForm(tenant.id, cur, reload));
  out.append(grants);
  const entries = (t) => t.entries.map((e) => `${e.account}: ${money(e.amount_micros, cur)}`);
  out.append(h('section', { class: 'card', 'aria-label': 'Credit transfers' },
    h('h2', {}, 'Credit transfers'),
    table([{ label: 'When', value: (t) => time(t.occurred_at, tz) },
      { label: 'Kind', value: (t) => t.kind },
      { label: 'Period', value: (t) => t.period ?? '—' },
      { label: 'Entries', value: (t) => entries(t).join('; ') }], transfers.data)));
  for (const inv of invoices.data) out.append(invoiceCard(inv));
  if (!invoices.data.length) out.append(h('p', { class: 'muted' }, 'No invoices yet.'));
}

function invoiceCard(inv) {
  const name = inv.number ?? inv.id;
  return h('section', { class: 'card invoice', 'aria-label': `Invoice ${name}` },
    h('div', { class: 'chart-head' },
      h('h2', {}, `Invoice ${name} · ${inv.period} · ${inv.status}`),
      h('a', { href: `/finance/v1/invoices/${inv.id}?format=csv`, download: `${inv.id}.csv` },
        'CSV')),
    table([{ label: 'Model', value: (l) => l.model ?? '—' },
      { label: 'Class', value: (l) => l.token_class ?? l.kind ?? '—' },
      { label: 'Quantity', num: true, value: (l) => l.quantity ?? l.tokens ?? '—' },
      { label: 'Amount', num: true, value: (l) => money(l.amount_micros, inv.currency) }],
    inv.lines ?? []),
    h('p', {}, `Credits ${money(inv.credits_micros ?? 0, inv.currency)}`,
      ` · total due ${money(inv.total_due_micros, inv.currency)}`));
}

// An amount typed in the currency as micro-units within the API's bound, or null.
function amountOf(text) {
  const v = decimalToMicros(text);
  return v !== null && v > 0n && v <= GRANT_MICROS_MAX ? Number(v) : null;
}

// Admins grant credits: purchased (with the price paid) or promotional, with an expiry.
function grantForm(tenantId, currency, reload) {
  const unit = currency ?? 'currency units';
  const kind = h('select', { id: 'grant-kind' },
    ['purchased', 'promotional'].map((k) => h('option', { value: k }, k)));
  const amount = h('input', { id: 'grant-amount', required: true, inputmode: 'decimal' });
  const paid = h('input', { id: 'grant-paid', inputmode: 'decimal' });
  const expires = h('input', { id: 'grant-expires', type: 'datetime-local' });
  const memo = h('input', { id: 'grant-memo', maxlength: 200 });
  const error = h('p', { class: 'error', role: 'alert', id: 'grant-error' });
  const paidLabel = field(`Price paid (${unit})`, paid);
  const showPaid = () => paidLabel.classList.toggle('hidden', kind.value !== 'purchased');
  kind.addEventListener('change', showPaid);
  showPaid();
  return h('form', { class: 'controls', 'aria-label': 'Grant credits', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { kind: kind.value, amount_micros: amountOf(amount.value) };
    const problems = [];
    if (body.amount_micros === null) problems.push(`The amount is a positive sum in ${unit}.`);
    if (kind.value === 'purchased') {
      body.price_paid_micros = paid.value.trim() === '0' ? 0 : amountOf(paid.value);
      if (body.price_paid_micros === null) problems.push('Give the price paid.');
    }
    if (expires.value) {
      body.expires_at = parseUtc(expires.value);
      if (body.expires_at === null || body.expires_at * 1000 <= Date.now()) {
        problems.push('The expiry is a time in the future.');
      }
    }
    if (memo.value.trim()) body.memo = memo.value.trim();
    error.textContent = problems.join(' ');
    if (problems.length) return;
    try {
      await post(`/admin/v1/tenants/${tenantId}/credit_grants`, body);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    notify('Credits granted.');
    reload();
  } }, field('Kind', kind), field(`Amount (${unit})`, amount), paidLabel,
  field('Expires (UTC, optional)', expires), field('Memo', memo),
  h('button', { type: 'submit' }, 'Grant credits'), error);
}
