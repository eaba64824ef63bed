// The console's calls to the gateway's APIs with its session cookie: JSON in and out, the
// session's CSRF token on every change, errors as thrown Error(message) with status and code.
let csrf = '';

export function setCsrf(token) {
  csrf = token || '';
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

export async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['x-csrf-token'] = csrf;
    headers['x-tollgate-actor'] = 'console';
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body === undefined ? {} : body);
export const del = (path) => call('DELETE', path);

// A query string from an object, skipping empty values.
export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

// Every page of an admin list (limit 100, `after`), up to `max` items.
export async function listAll(path, params = {}, max = 1000) {
  const out = [];
  let after = '';
  for (;;) {
    const page = await get(path + qs({ ...params, limit: 100, after }));
    out.push(...page.data);
    if (!page.has_more || out.length >= max) return out;
    after = page.last_id;
  }
}

// Every bucket of a usage report (JSON pages, `next_page`).
export async function usageBuckets(path, params) {
  const out = [];
  let page = '';
  for (let i = 0; i < 200; ++i) {
    const res = await get(path + qs({ ...params, page }));
    out.push(...res.data);
    if (!res.has_more) return out;
    page = res.next_page;
  }
  return out;
}
