// Pricing: price books with their versions, each model's tiers drawn as a step chart (price
// per million tokens against tokens), and the plan of each tenant.
import { h, replace, table } from '../dom.js';
import { get, listAll, ApiError } from '../api.js';
import { chartCard } from '../chart.js';
import { int, money, time } from '../format.js';

// A tier's rate is micro-units per million tokens, a decimal string: shown exactly.
function rate(r, currency) {
  const [whole, frac = ''] = String(r).split('.');
  return `${money(whole, currency)}${frac ? ` + 0.${frac} µ` : ''} / 1M`;
}

// Basis points as a percent, exactly ("12.5%").
function basisPoints(bp) {
  const whole = Math.trunc(bp / 100);
  const frac = String(bp % 100).padStart(2, '0').replace(/0+$/, '');
  return `${whole}${frac ? `.${frac}` : ''}%`;
}

export async function pricingPage(main) {
  const [books, tenants] = await Promise.all([listAll('/admin/v1/price_books'),
    listAll('/admin/v1/tenants')]);
  const out = [];
  for (const summary of books) {
    const book = await get(`/admin/v1/price_books/${summary.id}`);
    const versions = book.versions ?? [];
    const latest = versions[versions.length - 1];
    const section = h('section', { class: 'card', 'aria-label': `Price book ${book.name}` },
      h('h2', {}, `${book.name} (${book.currency}, ${book.tier_mode}, ${book.tier_scope})`),
      table([{ label: 'Version', value: (v) => v.version },
        { label: 'Effective (UTC)', value: (v) => time(v.effective_at, 'UTC') },
        { label: 'Models', value: (v) => Object.keys(v.models ?? {}).join(', ') }], versions));
    for (const [model, classes] of Object.entries(latest?.models ?? {})) {
      for (const cls of ['input', 'output']) {
        const tiers = classes[cls] ?? [];
        if (!tiers.length) continue;
        // Steps: x = the tier's first token, y = its rate (micro-units per million tokens).
        const xs = [];
        const ys = [];
        let from = 0;
        for (const t of tiers) {
          xs.push(from);
          ys.push(Number(String(t.rate).split('.')[0]));
          from = t.up_to ?? from * 2 + 1000000;
        }
        xs.push(from);
        ys.push(ys[ys.length - 1]);
        section.append(chartCard(`${model} · ${cls} tiers (v${latest.version})`, xs,
          [{ label: `${cls} rate`, values: ys, format: (v) => rate(v, book.currency) }],
          { step: true, xLabel: 'From token', fmtX: (x) => int(x) }));
      }
    }
    out.push(section);
  }
  const plans = [];
  for (const t of tenants) {
    try {
      const p = await get(`/admin/v1/tenants/${t.id}/plan`);
      plans.push({ tenant: t, plan: p });
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
      plans.push({ tenant: t, plan: null });
    }
  }
  replace(main, h('h1', {}, 'Pricing'),
    out.length ? out : h('p', { class: 'muted' }, 'No price books yet.'),
    h('section', { class: 'card', 'aria-label': 'Plans per tenant' },
      h('h2', {}, 'Plans per tenant'),
      table([{ label: 'Tenant', value: (r) => r.tenant.name },
        { label: 'Price book', value: (r) => r.plan?.price_book_id ?? 'none' },
        { label: 'Batch discount',
          value: (r) => (r.plan ? basisPoints(r.plan.batch_discount_bp) : '—') },
        { label: 'Settlement', value: (r) => r.plan?.settlement_mode ?? '—' }], plans)));
}
