// A small line chart drawn as inline SVG: one or more series over time, with a readable summary for
// screen readers (the SVG itself is decorative; the figure's caption and table carry the numbers).

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const H = 180;
const PAD = { left: 70, right: 14, top: 12, bottom: 26 };

function svgEl(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

// Steps whose halves are whole numbers from 2 up, so the middle grid line never reads "0.5 nodes".
function niceMax(value, floor) {
  if (value <= floor) return floor;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 4, 6, 8, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function timeLabel(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/**
 * A chart figure. series: [{label, values: number[], tone}] over times: string[] (ISO); format(v) gives
 * the axis and summary text (a money chart passes a formatter that reads BigInt-exact values).
 */
export function lineChart({ title, times, series, format = (v) => String(v), width = 560, floor = 2 }) {
  // Drawn at the pixel width it is shown at, so text is never stretched or shrunk.
  const W = Math.max(260, Math.round(width));
  const numbers = series.flatMap((s) => s.values.map(Number));
  const max = niceMax(Math.max(0, ...numbers), floor);
  const n = times.length;
  const x = (i) => PAD.left + (n <= 1 ? 0 : (i * (W - PAD.left - PAD.right)) / (n - 1));
  const y = (v) => H - PAD.bottom - (Number(v) / max) * (H - PAD.top - PAD.bottom);

  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", "aria-hidden": "true", focusable: "false" });
  for (const fraction of [0, 0.5, 1]) {
    const gy = y(max * fraction);
    svg.append(svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: gy, y2: gy, class: "chart-grid" }));
    const label = svgEl("text", { x: PAD.left - 6, y: gy + 4, class: "chart-axis", "text-anchor": "end" });
    label.textContent = format(max * fraction, true);
    svg.append(label);
  }
  if (n) {
    for (const [i, anchor] of [[0, "start"], [n - 1, "end"]]) {
      const label = svgEl("text", { x: x(i), y: H - 6, class: "chart-axis", "text-anchor": anchor });
      label.textContent = timeLabel(times[i]);
      svg.append(label);
    }
  }
  series.forEach((s, index) => {
    if (!s.values.length) return;
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    if (s.values.length > 1 && index === 0) {
      const area = `${x(0).toFixed(1)},${y(0)} ${points} ${x(s.values.length - 1).toFixed(1)},${y(0)}`;
      svg.append(svgEl("polygon", { points: area, class: `chart-area tone-${s.tone || index}` }));
    }
    svg.append(svgEl("polyline", { points, class: `chart-line tone-${s.tone || index}` }));
    const last = s.values.length - 1;
    svg.append(svgEl("circle", { cx: x(last), cy: y(s.values[last]), r: 3.5, class: `chart-dot tone-${s.tone || index}` }));
  });

  const latest = series.map((s) => `${s.label}: ${s.values.length ? format(s.values[s.values.length - 1]) : "no data"}`).join("; ");
  const peak = series.map((s) => `${s.label} peak ${s.values.length ? format(s.values.reduce((a, b) => (Number(b) > Number(a) ? b : a))) : "—"}`).join("; ");
  return h(
    "figure",
    { class: "chart-card card" },
    h("figcaption", {}, h("span", { class: "chart-title" }, title), legend(series)),
    svg,
    h("p", { class: "visually-hidden" }, `${title}, last hour. Now ${latest}. ${peak}.`),
  );
}

function legend(series) {
  if (series.length < 2) return null;
  return h("span", { class: "legend" }, series.map((s, i) => h("span", { class: `legend-item tone-${s.tone || i}` }, s.label)));
}
