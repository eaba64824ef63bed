// Tenants: a searchable list; a tenant's projects, keys (create with the secret shown once,
// revoke, rotate with grace, allowed models, expiry), budgets (bars, create, edit limits and
// alert thresholds, alert deliveries), plan, credit balance and audit log. The finance role
// sees the same without any control.
import { h, replace, field, table, notify } from '../dom.js';
import { get, post, listAll, qs, ApiError } from '../api.js';
import { int, money, time } from '../format.js';
import { budgetColumns, budgetName, clipped, planCurrency } from './common.js';
import {
  budgetLimitInput, budgetAlertsPanel, parseThresholds, thresholdsText,
} from './budgets.js';

export async function tenantsPage(main, session, args) {
  const admin = session.role === 'admin';
  const tenants = await listAll('/admin/v1/tenants');
  const search = h('input', { id: 'tenant-search', type: 'search', placeholder: 'Name or id' });
  const list = h('nav', { class: 'list', 'aria-label': 'Tenants' });
  const drawList = () => {
    const q = search.value.toLowerCase();
    const shown = tenants.filter((t) => !q || t.name.toLowerCase().includes(q) || t.id.includes(q));
    replace(list, shown.map((t) => h('a', {
      href: `#/tenants/${t.id}`, 'aria-current': t.id === args[0] ? 'true' : null,
    }, t.name, ' ', h('span', { class: `badge ${t.status}` }, t.status))));
  };
  search.addEventListener('input', drawList);
  drawList();
  const side = h('section', { class: 'card', 'aria-label': 'Tenant list' },
    field('Search tenants', search), list);
  if (admin) side.append(tenantForm());
  const detail = h('div', {});
  replace(main, h('h1', {}, 'Tenants'), h('div', { class: 'split' }, side, detail));
  if (args[0]) await tenantDetail(detail, args[0], admin, args[1]);
  else detail.append(h('p', { class: 'muted' }, 'Choose a tenant.'));
}

export async function guarded(promise) {
  try {
    return await promise;
  } catch (e) {
    notify(e.message, true);
    return null;
  }
}

async function optional(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

function tenantForm() {
  const name = h('input', { id: 'new-tenant-name', required: true });
  const tz = h('input', { id: 'new-tenant-tz', value: 'UTC' });
  return h('form', { class: 'controls', 'aria-label': 'New tenant', onsubmit: async (ev) => {
    ev.preventDefault();
    const t = await guarded(post('/admin/v1/tenants', { name: name.value, time_zone: tz.value }));
    if (t) location.hash = `#/tenants/${t.id}`;
  } }, field('New tenant', name), field('Time zone', tz),
  h('button', { type: 'submit' }, 'Create tenant'));
}

async function tenantDetail(box, id, admin, alertsOf) {
  const [tenant, projects, keys, budgets, plan, credits, audit] = await Promise.all([
    get(`/admin/v1/tenants/${id}`),
    listAll(`/admin/v1/tenants/${id}/projects`),
    listAll('/admin/v1/keys', { tenant_id: id }),
    get(`/admin/v1/budgets${qs({ tenant_id: id, limit: 100 })}`),
    optional(get(`/admin/v1/tenants/${id}/plan`)),
    optional(get(`/admin/v1/tenants/${id}/credits`)),
    get(`/admin/v1/audit_log${qs({ tenant_id: id, limit: 20 })}`),
  ]);
  const tz = tenant.time_zone || 'UTC';
  const currency = await planCurrency(plan);
  const reload = () => tenantDetail(box, id, admin, alertsOf);
  const secretBox = h('div', { id: 'secret-box' });
  const rows = budgets.data.map((b) => ({ ...b, tz, currency }));
  const chosen = rows.find((b) => b.id === alertsOf);
  const planText = plan
    ? `${plan.price_book_id} (${plan.settlement_mode ?? 'credit_then_invoice'})` : 'none';
  replace(box,
    h('section', { class: 'card', 'aria-label': 'Tenant' }, h('h2', {}, tenant.name),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Id'), h('dd', {}, tenant.id),
        h('dt', {}, 'Status'),
        h('dd', {}, h('span', { class: `badge ${tenant.status}` }, tenant.status)),
        h('dt', {}, 'Time zone'), h('dd', {}, tz),
        h('dt', {}, 'Plan'), h('dd', {}, planText),
        h('dt', {}, 'Credit balance'), h('dd', { id: 'credit-balance' },
          credits ? money(credits.available_micros, currency) : '—'),
        h('dt', {}, 'Credits and invoices'),
        h('dd', {}, h('a', { href: `#/billing/${tenant.id}` }, 'Grants, transfers, invoices')))),
    secretBox,
    h('section', { class: 'card', 'aria-label': 'Projects' }, h('h2', {}, 'Projects'),
      table([{ label: 'Name', value: (p) => p.name }, { label: 'Id', value: (p) => p.id },
        { label: 'Status', value: (p) => p.status }], projects),
      admin ? projectForm(id, reload) : null),
    h('section', { class: 'card', 'aria-label': 'API keys' }, h('h2', {}, 'API keys'),
      table([
        { label: 'Name', value: (k) => k.name ?? '—' },
        { label: 'Key', value: (k) => k.redacted_value ?? k.prefix ?? k.id },
        { label: 'Status', value: (k) => h('span', { class: `badge ${k.status}` }, k.status) },
        { label: 'Models', value: (k) => (k.allowed_models ? k.allowed_models.join(', ') : 'all') },
        { label: 'Expires', value: (k) => time(k.expires_at, tz) },
        { label: 'Actions',
          value: (k) => (admin && k.status === 'active' ? keyActions(k, reload) : '') },
      ], keys),
      admin ? keyForm(id, projects, reload) : null),
    h('section', { class: 'card', 'aria-label': 'Budgets' }, h('h2', {}, 'Budgets'),
      // The budget's name opens its alerts panel (thresholds, webhook, deliveries).
      table([{ label: 'Budget (its alerts)', value: (b) => h('a', {
        href: `#/tenants/${id}/${b.id}`, 'data-action': 'alerts',
        'aria-current': b.id === alertsOf ? 'true' : null,
        'aria-label': `${budgetName(b)}: alerts`,
      }, budgetName(b)) },
      ...budgetColumns.slice(1),
      { label: 'Alerts at', value: (b) => thresholdsText(b.alert_thresholds) },
      { label: 'Edit', value: (b) => (admin ? limitEditor(b, reload) : '') }], rows),
      admin ? budgetForm(id, currency, reload) : null),
    chosen ? await budgetAlertsPanel(chosen, admin, reload) : null,
    h('section', { class: 'card', 'aria-label': 'Audit log' }, h('h2', {}, 'Audit log'),
      table([{ label: 'When', value: (a) => time(a.occurred_at, tz, true) },
        { label: 'Actor', value: (a) => a.actor },
        { label: 'Action', value: (a) => a.action },
        { label: 'Object', value: (a) => clipped(`${a.object_type} ${a.object_id}`) }],
      audit.data)));
}

function showSecret(key, what) {
  const secretBox = document.getElementById('secret-box');
  replace(secretBox, h('section', { class: 'card', role: 'alert', 'aria-label': 'New key secret' },
    h('h2', {}, what),
    h('p', {}, 'Copy this secret now: it is shown only once.'),
    h('div', { class: 'secret', id: 'new-key-secret' }, key.key),
    h('button', { type: 'button', class: 'secondary', onclick: () => replace(secretBox) },
      'I have copied it')));
}

function keyActions(k, reload) {
  const who = k.name ?? k.id;
  const grace = h('input', { type: 'number', min: 0, max: 2592000, value: 0, class: 'grace',
    'aria-label': `Grace seconds for ${who}` });
  const revoke = async () => {
    if (await guarded(post(`/admin/v1/keys/${k.id}/revoke`))) {
      notify('Key revoked.');
      reload();
    }
  };
  const rotate = async () => {
    const body = { grace_seconds: Number(grace.value) };
    const made = await guarded(post(`/admin/v1/keys/${k.id}/rotate`, body));
    if (made) {
      await reload();
      showSecret(made, 'Rotated key');
    }
  };
  return h('span', { class: 'controls' },
    h('button', { type: 'button', class: 'danger', 'data-action': 'revoke',
      'aria-label': `Revoke ${who}`, onclick: revoke }, 'Revoke'),
    grace,
    h('button', { type: 'button', class: 'secondary', 'aria-label': `Rotate ${who}`,
      onclick: rotate }, 'Rotate'));
}

function projectForm(tenantId, reload) {
  const name = h('input', { id: 'new-project-name', required: true });
  return h('form', { class: 'controls', 'aria-label': 'New project', onsubmit: async (ev) => {
    ev.preventDefault();
    if (await guarded(post(`/admin/v1/tenants/${tenantId}/projects`, { name: name.value }))) {
      reload();
    }
  } }, field('New project', name), h('button', { type: 'submit' }, 'Create project'));
}

function keyForm(tenantId, projects, reload) {
  const name = h('input', { id: 'new-key-name' });
  const project = h('select', { id: 'new-key-project' }, h('option', { value: '' }, '(none)'),
    projects.map((p) => h('option', { value: p.id }, p.name)));
  const models = h('input', { id: 'new-key-models', placeholder: 'all' });
  const expires = h('input', { id: 'new-key-expires', type: 'datetime-local' });
  return h('form', { class: 'controls', 'aria-label': 'New key', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { tenant_id: tenantId };
    if (name.value) body.name = name.value;
    if (project.value) body.project_id = project.value;
    const allowed = models.value.split(',').map((m) => m.trim()).filter(Boolean);
    if (allowed.length) body.allowed_models = allowed;
    if (expires.value) body.expires_at = Math.floor(Date.parse(`${expires.value}Z`) / 1000);
    const made = await guarded(post('/admin/v1/keys', body));
    if (made) {
      await reload();
      showSecret(made, 'New key');
    }
  } }, field('Key name', name), field('Project', project),
  field('Allowed models (comma-separated)', models), field('Expires (UTC)', expires),
  h('button', { type: 'submit' }, 'Create key'));
}

function budgetForm(tenantId, currency, reload) {
  const options = (id, values, chosen) => h('select', { id },
    values.map((v) => h('option', { value: v, selected: v === chosen }, v)));
  const metric = options('new-budget-metric', ['requests', 'tokens', 'spend'], 'requests');
  const windows = ['minute', 'hour', 'day', 'week', 'month', 'quarter', 'lifetime'];
  const win = options('new-budget-window', windows, 'day');
  const limit = budgetLimitInput('new-budget-limit', () => metric.value, currency);
  const mode = options('new-budget-mode', ['hard', 'soft'], 'hard');
  const alerts = h('input', { id: 'new-budget-alerts', placeholder: '50, 80, 100' });
  metric.addEventListener('change', limit.relabel);
  return h('form', { class: 'controls', 'aria-label': 'New budget', onsubmit: async (ev) => {
    ev.preventDefault();
    const amount = limit.read();
    if (amount === null) return;
    const thresholds = parseThresholds(alerts.value);
    if (thresholds.error) {
      notify(thresholds.error, true);
      return;
    }
    const body = { tenant_id: tenantId, metric: metric.value, window: win.value, limit: amount,
      mode: mode.value, alert_thresholds: thresholds.values };
    if (await guarded(post('/admin/v1/budgets', body))) {
      notify('Budget created.');
      reload();
    }
  } }, field('Metric', metric), field('Window', win), limit.label, field('Mode', mode),
  field('Alerts at (% of the limit)', alerts), h('button', { type: 'submit' }, 'Create budget'));
}

function limitEditor(b, reload) {
  const limit = budgetLimitInput(null, () => b.metric, b.currency, b.limit,
    `New limit for budget ${b.id}`);
  const save = async () => {
    const amount = limit.read();
    if (amount === null) return;
    if (await guarded(post(`/admin/v1/budgets/${b.id}`, { limit: amount }))) {
      notify('Limit saved.');
      reload();
    }
  };
  return h('span', { class: 'controls' }, limit.input,
    h('button', { type: 'button', class: 'secondary', onclick: save }, 'Save'));
}

export { int };
