// Tenants: a searchable list; a tenant's projects, keys (create with the secret shown once,
// revoke, rotate with grace, allowed models, expiry), budgets (bars, create, edit limits),
// plan, credit balance and audit log. The finance role sees the same without any control.
import { h, replace, field, table, notify } from '../dom.js';
import { get, post, listAll, qs, ApiError } from '../api.js';
import { int, money, time } from '../format.js';
import { budgetColumns } from './common.js';

export async function tenantsPage(main, session, args) {
  const admin = session.role === 'admin';
  const tenants = await listAll('/admin/v1/tenants');
  const search = h('input', { id: 'tenant-search', type: 'search', placeholder: 'Name or id' });
  const list = h('nav', { class: 'list', 'aria-label': 'Tenants' });
  const drawList = () => {
    const q = search.value.toLowerCase();
    replace(list, tenants.filter((t) => !q || t.name.toLowerCase().includes(q) || t.id.includes(q))
      .map((t) => h('a', { href: `#/tenants/${t.id}`, 'aria-current': t.id === args[0] ? 'true' : null },
        t.name, ' ', h('span', { class: `badge ${t.status}` }, t.status))));
  };
  search.addEventListener('input', drawList);
  drawList();
  const side = h('section', { class: 'card', 'aria-label': 'Tenant list' }, field('Search tenants', search), list);
  if (admin) {
    const name = h('input', { id: 'new-tenant-name', required: true });
    const tz = h('input', { id: 'new-tenant-tz', value: 'UTC' });
    side.append(h('form', { class: 'controls', 'aria-label': 'New tenant', onsubmit: async (ev) => {
      ev.preventDefault();
      const t = await guarded(post('/admin/v1/tenants', { name: name.value, time_zone: tz.value }));
      if (t) location.hash = `#/tenants/${t.id}`;
    } }, field('New tenant', name), field('Time zone', tz), h('button', { type: 'submit' }, 'Create tenant')));
  }
  const detail = h('div', {});
  replace(main, h('h1', {}, 'Tenants'), h('div', { class: 'split' }, side, detail));
  if (args[0]) await tenantDetail(detail, args[0], admin);
  else detail.append(h('p', { class: 'muted' }, 'Choose a tenant.'));
}

async function guarded(promise) {
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

async function tenantDetail(box, id, admin) {
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
  const currency = plan?.currency ?? null;
  const reload = () => tenantDetail(box, id, admin);
  const secretBox = h('div', { id: 'secret-box' });
  replace(box,
    h('section', { class: 'card', 'aria-label': 'Tenant' }, h('h2', {}, tenant.name),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Id'), h('dd', {}, tenant.id),
        h('dt', {}, 'Status'), h('dd', {}, h('span', { class: `badge ${tenant.status}` }, tenant.status)),
        h('dt', {}, 'Time zone'), h('dd', {}, tz),
        h('dt', {}, 'Plan'), h('dd', {}, plan ? `${plan.price_book_id} (${plan.settlement_mode ?? 'credit_then_invoice'})` : 'none'),
        h('dt', {}, 'Credit balance'), h('dd', { id: 'credit-balance' }, credits ? money(credits.available_micros, currency) : '—'))),
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
        { label: 'Actions', value: (k) => (admin && k.status === 'active' ? keyActions(k, secretBox, reload) : '') },
      ], keys),
      admin ? keyForm(id, projects, secretBox, reload) : null),
    h('section', { class: 'card', 'aria-label': 'Budgets' }, h('h2', {}, 'Budgets'),
      table([...budgetColumns, { label: 'Edit', value: (b) => (admin ? limitEditor(b, reload) : '') }],
        budgets.data.map((b) => ({ ...b, tz, currency }))),
      admin ? budgetForm(id, reload) : null),
    h('section', { class: 'card', 'aria-label': 'Audit log' }, h('h2', {}, 'Audit log'),
      table([{ label: 'When', value: (a) => time(a.occurred_at, tz, true) }, { label: 'Actor', value: (a) => a.actor },
        { label: 'Action', value: (a) => a.action }, { label: 'Object', value: (a) => `${a.object_type} ${a.object_id}` }], audit.data)));
}

function showSecret(secretBox, key, what) {
  replace(secretBox, h('section', { class: 'card', role: 'alert', 'aria-label': 'New key secret' },
    h('h2', {}, what),
    h('p', {}, 'Copy this secret now: it is shown only once.'),
    h('div', { class: 'secret', id: 'new-key-secret' }, key.key),
    h('button', { type: 'button', class: 'secondary', onclick: () => replace(secretBox) }, 'I have copied it')));
}

function keyActions(k, secretBox, reload) {
  const grace = h('input', { type: 'number', min: 0, max: 2592000, value: 0, 'aria-label': `Grace seconds for ${k.name ?? k.id}`, class: 'grace' });
  return h('span', { class: 'controls' },
    h('button', { type: 'button', class: 'danger', 'data-action': 'revoke', 'aria-label': `Revoke ${k.name ?? k.id}`,
      onclick: async () => {
        if (await guarded(post(`/admin/v1/keys/${k.id}/revoke`))) { notify('Key revoked.'); reload(); }
      } }, 'Revoke'),
    grace,
    h('button', { type: 'button', class: 'secondary', 'aria-label': `Rotate ${k.name ?? k.id}`,
      onclick: async () => {
        const made = await guarded(post(`/admin/v1/keys/${k.id}/rotate`, { grace_seconds: Number(grace.value) }));
        if (made) { await reload(); showSecret(document.getElementById('secret-box'), made, 'Rotated key'); }
      } }, 'Rotate'));
}

function projectForm(tenantId, reload) {
  const name = h('input', { id: 'new-project-name', required: true });
  return h('form', { class: 'controls', 'aria-label': 'New project', onsubmit: async (ev) => {
    ev.preventDefault();
    if (await guarded(post(`/admin/v1/tenants/${tenantId}/projects`, { name: name.value }))) reload();
  } }, field('New project', name), h('button', { type: 'submit' }, 'Create project'));
}

function keyForm(tenantId, projects, secretBox, reload) {
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
    if (models.value.trim()) body.allowed_models = models.value.split(',').map((m) => m.trim()).filter(Boolean);
    if (expires.value) body.expires_at = Math.floor(Date.parse(`${expires.value}Z`) / 1000);
    const made = await guarded(post('/admin/v1/keys', body));
    if (made) { await reload(); showSecret(document.getElementById('secret-box'), made, 'New key'); }
  } }, field('Key name', name), field('Project', project), field('Allowed models (comma-separated)', models),
  field('Expires (UTC)', expires), h('button', { type: 'submit' }, 'Create key'));
}

function budgetForm(tenantId, reload) {
  const metric = h('select', { id: 'new-budget-metric' }, ['requests', 'tokens', 'spend'].map((m) => h('option', { value: m }, m)));
  const win = h('select', { id: 'new-budget-window' }, ['minute', 'hour', 'day', 'week', 'month', 'lifetime'].map((w) => h('option', { value: w, selected: w === 'day' }, w)));
  const limit = h('input', { id: 'new-budget-limit', type: 'number', min: 1, required: true });
  const mode = h('select', { id: 'new-budget-mode' }, ['hard', 'soft'].map((m) => h('option', { value: m }, m)));
  return h('form', { class: 'controls', 'aria-label': 'New budget', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { tenant_id: tenantId, metric: metric.value, window: win.value, limit: Number(limit.value), mode: mode.value };
    if (await guarded(post('/admin/v1/budgets', body))) { notify('Budget created.'); reload(); }
  } }, field('Metric', metric), field('Window', win), field('Limit (spend in micro-units)', limit), field('Mode', mode),
  h('button', { type: 'submit' }, 'Create budget'));
}

function limitEditor(b, reload) {
  const input = h('input', { type: 'number', min: 1, value: b.limit, 'aria-label': `New limit for budget ${b.id}` });
  return h('span', { class: 'controls' }, input, h('button', { type: 'button', class: 'secondary', onclick: async () => {
    if (await guarded(post(`/admin/v1/budgets/${b.id}`, { limit: Number(input.value) }))) { notify('Limit saved.'); reload(); }
  } }, 'Save'));
}

export { int };
