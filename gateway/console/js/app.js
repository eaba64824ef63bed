// The console's entry point: sign-in, the session (role, CSRF token), navigation by hash
// (#/overview, #/tenants/<id>, ...) and the pages each role may see.
import { h, replace, notify } from './dom.js';
import { get, post, del, setCsrf, ApiError } from './api.js';
import { overviewPage } from './pages/overview.js';
import { tenantsPage } from './pages/tenants.js';
import { usagePage } from './pages/usage.js';
import { pricingPage } from './pages/pricing.js';
import { billingPage } from './pages/billing.js';
import { keyHolderPage } from './pages/keyholder.js';

const OPERATOR_PAGES = [
  ['overview', 'Overview', overviewPage],
  ['tenants', 'Tenants', tenantsPage],
  ['usage', 'Usage explorer', usagePage],
  ['pricing', 'Pricing', pricingPage],
  ['billing', 'Credits and invoices', billingPage],
];
const KEY_HOLDER_PAGES = [['usage', 'My usage', keyHolderPage]];

const main = document.getElementById('main');
let session = null;

function pagesFor(s) {
  return s.role === 'key_holder' ? KEY_HOLDER_PAGES : OPERATOR_PAGES;
}

function drawNav() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session) {
    replace(nav);
    replace(who);
    return;
  }
  const current = (location.hash.slice(2).split('/')[0]) || pagesFor(session)[0][0];
  replace(nav, pagesFor(session).map(([id, label]) =>
    h('a', { href: `#/${id}`, 'aria-current': id === current ? 'page' : null }, label)));
  const tenant = session.tenant?.name ?? session.tenant_id;
  const label = session.role === 'key_holder' ? `Key holder · ${tenant}`
    : session.role === 'finance' ? 'Finance (read-only)' : 'Admin';
  replace(who, h('span', { 'data-role': session.role }, label),
    h('button', { type: 'button', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try {
    await del('/console/session');
  } catch (e) {
    notify(e.message, true);
  }
  session = null;
  setCsrf('');
  location.hash = '';
  route();
}

function signInForm(message) {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const operator = location.port !== '' && document.documentElement.dataset.listener !== 'api';
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const res = await fetch('/console/session', {
          method: 'POST', credentials: 'same-origin',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token: input.value }),
        });
        const body = await res.json();
        if (!res.ok) {
          error.textContent = body.error?.message || 'Sign-in failed.';
          return;
        }
        start(body);
      } catch (e) {
        error.textContent = e.message;
      }
    },
  },
  h('label', { for: 'token' }, operator ? 'Admin or finance token, or API key' : 'Token'), input,
  h('button', { type: 'submit' }, 'Sign in'), error);
  replace(main, h('section', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to Tollgate'), form));
  drawNav();
  input.focus();
}

function start(s) {
  session = s;
  setCsrf(s.csrf_token);
  if (!location.hash || location.hash === '#') {
    location.hash = `#/${pagesFor(s)[0][0]}`;  // its hashchange draws the page, once
    return;
  }
  route();
}

async function route() {
  if (!session) return signInForm();
  drawNav();
  const parts = location.hash.slice(2).split('/').map(decodeURIComponent);
  const pages = pagesFor(session);
  const page = pages.find(([id]) => id === parts[0]) || pages[0];
  replace(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    await page[2](main, session, parts.slice(1));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session = null;
      return signInForm('Your session has ended; sign in again.');
    }
    replace(main,
      h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
  main.focus();
}

window.addEventListener('hashchange', route);

(async () => {
  try {
    const s = await get('/console/session');
    if (s.signed_in) start(s);
    else signInForm();
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) notify(e.message, true);
    signInForm();
  }
})();

export { post };
