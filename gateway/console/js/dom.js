// A tiny view helper: h(tag, attrs, ...children) builds elements (no innerHTML anywhere, so no
// markup injection); `on*` attributes become listeners.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// A labelled input or select.
export function field(label, control) {
  return h('label', {}, label, control);
}

export function select(id, options, value) {
  return h('select', { id },
    options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
}

// A table from column specs {label, value(row), num?}, in a box that scrolls sideways when the
// table is wider than the page (the page itself never does; keyboard users reach the box).
export function table(columns, rows, caption) {
  const cls = (c) => (c.num ? 'num' : null);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: cls(c) }, c.label)));
  const body = rows.length === 0
    ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing yet.'))
    : rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: cls(c) }, c.value(r)))));
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region',
    'aria-label': caption || 'Table' },
  h('table', {},
    caption ? h('caption', { class: 'muted' }, caption) : null,
    h('thead', {}, head),
    h('tbody', {}, body)));
}

// A message in the status corner, gone after a few seconds.
export function notify(message, isError) {
  const box = document.getElementById('status');
  const item = h('div', { class: isError ? 'error' : null }, message);
  box.append(item);
  setTimeout(() => item.remove(), isError ? 8000 : 4000);
}
