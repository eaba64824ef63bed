// Charts on uPlot (columnar data, one canvas per chart), each with a table view of the same
// numbers: a button switches between them, and the table is always there for screen readers.
import uPlot from '../vendor/uPlot.esm.js';
import { h, replace, table } from './dom.js';

const PALETTE = ['#2457c5', '#d92d20', '#039855', '#f79009', '#7a5af8', '#0e9384', '#c11574',
  '#667085', '#b54708', '#1570ef'];

// The narrowest chart drawn: fits a phone's width (390 px less the page's and card's padding).
const CHART_WIDTH_MIN_PX = 240;

export function color(i) {
  return PALETTE[i % PALETTE.length];
}

// A time series chart. `xs`: unix seconds; `series`: [{label, values, format}]; `fmtX`: how a
// time reads in the table; `step`: draw steps (prices by tier) rather than lines; `xLabel`:
// the first table column's heading.
export function chartCard(title, xs, series, opts = {}) {
  const holder = h('div', { class: 'chart', role: 'img',
    'aria-label': `${title} (chart; the table view lists the numbers)` });
  const tableBox = h('div', { class: 'hidden' });
  const toggle = h('button', { class: 'secondary', type: 'button', 'aria-pressed': 'false' },
    'Table view');
  const fmtX = opts.fmtX || ((x) => String(x));
  const cell = (s, i) => (s.format ? s.format(s.values[i]) : s.values[i] ?? '—');
  const columns = [{ label: opts.xLabel || 'Time', value: (i) => fmtX(xs[i]) }].concat(
    series.map((s) => ({ label: s.label, num: true, value: (i) => cell(s, i) })));
  replace(tableBox, table(columns, xs.map((_, i) => i), `${title}: table`));
  toggle.addEventListener('click', () => {
    const showTable = tableBox.classList.contains('hidden');
    tableBox.classList.toggle('hidden', !showTable);
    holder.classList.toggle('hidden', showTable);
    toggle.textContent = showTable ? 'Chart view' : 'Table view';
    toggle.setAttribute('aria-pressed', String(showTable));
  });
  const card = h('section', { class: 'card', 'aria-label': title },
    h('div', { class: 'chart-head' }, h('h2', {}, title), toggle), holder, tableBox);
  // Drawn once the card is in the page (uPlot measures its container).
  requestAnimationFrame(() => draw(holder, xs, series, opts));
  return card;
}

function draw(holder, xs, series, opts) {
  if (!holder.isConnected) return;
  const width = Math.max(CHART_WIDTH_MIN_PX, holder.clientWidth || 600);
  // uPlot draws numbers; the table view keeps the exact values.
  const plotted = (s) => s.values.map((v) => (v === null || v === undefined ? null : Number(v)));
  const data = [xs, ...series.map(plotted)];
  const xValue = (u, x) => (x === null ? '—' : (opts.fmtX ? opts.fmtX(x) : x));
  const plot = new uPlot({
    width,
    height: 220,
    scales: opts.step ? { x: { time: false } } : {},
    axes: opts.step ? [{ label: opts.xLabel || '' }, {}] : [{}, {}],
    series: [{ label: opts.xLabel || 'Time', value: opts.step ? undefined : xValue },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: color(i),
        width: 2,
        paths: opts.step ? uPlot.paths.stepped({ align: 1 }) : undefined,
        value: (u, v) => (v === null ? '—' : s.format ? s.format(v) : v),
      }))],
  }, data, holder);
  holder.dataset.rendered = 'true';
  holder.dispatchEvent(new CustomEvent('chart-rendered', { bubbles: true }));
  const resize = () => {
    if (!holder.isConnected) {
      window.removeEventListener('resize', resize);
      return;
    }
    plot.setSize({ width: Math.max(CHART_WIDTH_MIN_PX, holder.clientWidth), height: 220 });
  };
  window.addEventListener('resize', resize);
}
