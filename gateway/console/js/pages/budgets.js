// A budget's controls on the tenant page: its limit as a person types it (spend in the
// tenant's currency, converted to micro-units without floating point; requests and tokens as
// whole numbers), its alert thresholds and webhook, and the alerts it has raised with their
// delivery (GET /admin/v1/budgets/{id}/alerts). The finance role sees the alerts only.
import { h, replace, field, table, notify } from '../dom.js';
import { get, post } from '../api.js';
import { decimalToMicros, microsToDecimal, time } from '../format.js';
import { budgetAmount, budgetName } from './common.js';

const THRESHOLDS_MAX = 10;
const PERCENT_MAX = 1000;

export function thresholdsText(thresholds) {
  return thresholds && thresholds.length ? thresholds.map((t) => `${t}%`).join(', ') : 'none';
}

// "50, 80 100%" as [50, 80, 100], or a message saying what is wrong.
export function parseThresholds(text) {
  const parts = text.split(/[\s,%]+/).filter(Boolean);
  if (!parts.every((p) => /^\d+$/.test(p))) return { error: 'Thresholds are whole percents.' };
  const values = [...new Set(parts.map(Number))].sort((a, b) => a - b);
  if (values.length > THRESHOLDS_MAX || values.some((v) => v < 1 || v > PERCENT_MAX)) {
    return { error: `At most ${THRESHOLDS_MAX} thresholds, each 1 to ${PERCENT_MAX} %.` };
  }
  return { values };
}

// A limit input: `metric()` says which, so the label and the reading follow a metric select.
// read() gives the limit (micro-units for spend) or null after telling what is wrong.
export function budgetLimitInput(id, metric, currency, initial, ariaLabel) {
  const spend = () => metric() === 'spend';
  const input = h('input', { id, required: true, inputmode: 'decimal', class: 'amount',
    'aria-label': ariaLabel,
    value: initial === undefined ? null : spend() ? microsToDecimal(initial) : initial });
  const caption = h('span', {});
  const relabel = () => {
    caption.textContent = spend() ? `Limit (${currency ?? 'currency units'})` : 'Limit';
  };
  relabel();
  const read = () => {
    const text = input.value.trim();
    let value = null;
    if (spend()) {
      const micros = decimalToMicros(text);
      if (micros !== null && micros > 0n && micros <= BigInt(Number.MAX_SAFE_INTEGER)) {
        value = Number(micros);
      }
    } else if (/^\d+$/.test(text) && Number(text) >= 1 && Number(text) <= Number.MAX_SAFE_INTEGER) {
      value = Number(text);
    }
    if (value === null) {
      notify(spend() ? 'The limit is an amount such as 25 or 12.50.'
        : 'The limit is a whole number of at least 1.', true);
    }
    return value;
  };
  return { input, label: h('label', {}, caption, input), read, relabel };
}

// The alerts panel of budget `b`: its thresholds and webhook (admins change them) and the
// alerts raised, newest first.
export async function budgetAlertsPanel(b, admin, reload) {
  const alerts = await get(`/admin/v1/budgets/${b.id}/alerts`);
  const panel = h('section', { class: 'card', 'aria-label': 'Budget alerts', id: 'budget-alerts' },
    h('h2', {}, `Alerts of ${budgetName(b)}`),
    h('p', {}, `Alerts at ${thresholdsText(b.alert_thresholds)} of the limit; webhook `,
      b.alert_webhook_url ? h('code', {}, b.alert_webhook_url) : 'none (alerts are recorded).'));
  if (admin) panel.append(alertForm(b, reload));
  panel.append(h('h3', {}, 'Deliveries'), table([
    { label: 'Raised', value: (a) => time(a.created_at, b.tz) },
    { label: 'Threshold', num: true, value: (a) => `${a.threshold}%` },
    { label: 'Used', num: true, value: (a) => budgetAmount(b, a.used, b.currency) },
    { label: 'Limit', num: true, value: (a) => budgetAmount(b, a.limit, b.currency) },
    { label: 'Status', value: (a) => h('span', { class: `badge ${a.status}` }, a.status) },
    { label: 'Attempts', num: true, value: (a) => a.attempts },
    { label: 'Delivered', value: (a) => time(a.delivered_at, b.tz) },
    { label: 'Last error', value: (a) => a.last_error ?? '—' },
  ], alerts.data ?? [], 'Alerts raised, newest first'));
  return panel;
}

function alertForm(b, reload) {
  const thresholds = h('input', { id: 'alert-thresholds', placeholder: '50, 80, 100',
    value: (b.alert_thresholds ?? []).join(', ') });
  const url = h('input', { id: 'alert-webhook-url', type: 'url', placeholder: 'https://…',
    value: b.alert_webhook_url ?? '' });
  const error = h('p', { class: 'error', role: 'alert' });
  const secret = h('div', {});
  return h('form', { class: 'controls', 'aria-label': 'Alert settings', onsubmit: async (ev) => {
    ev.preventDefault();
    const parsed = parseThresholds(thresholds.value);
    error.textContent = parsed.error ?? '';
    if (parsed.error) return;
    const body = { alert_thresholds: parsed.values };
    if (url.value.trim() !== (b.alert_webhook_url ?? '')) {
      body.alert_webhook_url = url.value.trim() || null;
    }
    let saved = null;
    try {
      saved = await post(`/admin/v1/budgets/${b.id}`, body);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    notify('Alert settings saved.');
    if (saved.alert_webhook_secret && body.alert_webhook_url) {
      replace(secret, h('p', { class: 'secret', role: 'alert' },
        `Webhook secret (shown once): ${saved.alert_webhook_secret}`));
      return;
    }
    reload();
  } }, field('Thresholds (% of the limit)', thresholds), field('Webhook URL (optional)', url),
  h('button', { type: 'submit' }, 'Save alerts'), error, secret);
}
