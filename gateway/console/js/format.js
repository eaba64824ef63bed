// Numbers, money and times for people: money from integer micro-units with BigInt arithmetic
// (never floating point) in the tenant's currency; times in the tenant's time zone.
const MICROS = 1000000n;

// Fraction digits of a currency (2 for USD, 0 for JPY), from the browser's currency data.
function currencyDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions()
      .maximumFractionDigits;
  } catch {
    return 2;
  }
}

function group(intText) {
  return intText.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

// "USD 1,234.50" from micro-units (a number or a string of digits, any size). Shows the
// currency's minor digits, and more (up to all six) only when the amount has them, so a tiny
// cost reads "USD 0.00004125" rather than a misleading zero.
export function money(micros, currency) {
  if (micros === null || micros === undefined) return '—';
  let v = BigInt(micros);
  const negative = v < 0n;
  if (negative) v = -v;
  const whole = v / MICROS;
  let frac = (v % MICROS).toString().padStart(6, '0');
  const digits = currency ? currencyDigits(currency) : 2;
  let keep = 6;
  while (keep > digits && frac[keep - 1] === '0') keep -= 1;
  frac = frac.slice(0, keep);
  const text = group(whole.toString()) + (frac ? `.${frac}` : '');
  return `${negative ? '-' : ''}${currency ? `${currency} ` : ''}${text}`;
}

// Micro-units as a decimal number of the currency (exact string), for CSV and inputs.
export function microsToDecimal(micros) {
  let v = BigInt(micros);
  const negative = v < 0n;
  if (negative) v = -v;
  return `${negative ? '-' : ''}${v / MICROS}.${(v % MICROS).toString().padStart(6, '0')}`;
}

// A decimal amount typed by a person ("12.5") as micro-units (BigInt), or null when malformed.
export function decimalToMicros(text) {
  const m = /^\s*(\d+)(?:\.(\d{0,6}))?\s*$/.exec(text);
  if (!m) return null;
  return BigInt(m[1]) * MICROS + BigInt((m[2] || '').padEnd(6, '0'));
}

// Sum of micro-unit values as BigInt.
export function sumMicros(values) {
  let s = 0n;
  for (const v of values) if (v !== null && v !== undefined) s += BigInt(v);
  return s;
}

export function int(n) {
  if (n === null || n === undefined) return '—';
  return group(BigInt(n).toString());
}

// A unix time (seconds) in a time zone: "2025-12-06 14:00".
export function time(unixS, timeZone, withSeconds) {
  if (unixS === null || unixS === undefined) return '—';
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: timeZone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: withSeconds ? '2-digit' : undefined,
    hourCycle: 'h23',
  }).formatToParts(new Date(unixS * 1000));
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${withSeconds ? `:${p.second}` : ''}`;
}

// A percentage of used over limit (integers), with one decimal, from BigInt arithmetic.
export function percent(used, limit) {
  if (!limit || BigInt(limit) === 0n) return '—';
  const tenths = (BigInt(used) * 1000n) / BigInt(limit);
  return `${tenths / 10n}.${tenths % 10n}%`;
}

// Bar widths as whole percents 0..100 (for the CSS classes w0..w100).
export function share(part, whole) {
  if (!whole || BigInt(whole) === 0n) return 0;
  const p = (BigInt(part) * 100n) / BigInt(whole);
  return Number(p > 100n ? 100n : p < 0n ? 0n : p);
}

// A CSV cell.
export function csvCell(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
