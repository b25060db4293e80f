// Overview: the platform at a glance, asked again every few seconds, with charts of the last hour.

import { get } from "../api.js";
import { lineChart } from "../chart.js";
import { button, h, noticeArea, pollMs, poll, replace } from "../dom.js";
import { formatCpt } from "../money.js";

const TILES = [
  { key: "nodes_online", label: "Nodes online" },
  { key: "cpu_cores_available", label: "CPU cores available" },
  { key: "gpus_available", label: "GPUs available" },
  { key: "jobs_queued", label: "Jobs queued" },
  { key: "jobs_running", label: "Jobs running" },
  { key: "jobs_done", label: "Jobs done" },
  { key: "dispatch_rate_per_min", label: "Dispatch rate", unit: "leases / min" },
  { key: "paid_today_micro", label: "Task payments today (incl. fee)", money: true },
];

function tileText(tile, data) {
  const value = data[tile.key];
  if (value === undefined || value === null) return "—";
  if (tile.money) return formatCpt(value);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(1);
  return String(value);
}

export function page(container) {
  const values = new Map();
  const tiles = h(
    "div",
    { class: "tiles" },
    TILES.map((tile) => {
      const value = h("span", { class: "tile-value", id: `tile-${tile.key}`, dataset: { key: tile.key } }, "…");
      values.set(tile.key, value);
      return h("div", { class: "tile card" }, h("span", { class: "tile-label", id: `label-${tile.key}` }, tile.label), value, tile.unit ? h("span", { class: "tile-unit" }, tile.unit) : null);
    }),
  );
  const notice = noticeArea();
  const updated = h("span", { class: "muted", id: "overview-updated" }, "Loading…");
  const charts = h("div", { class: "charts" });
  let paused = false;
  const pauseButton = button("Pause live updates", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume live updates" : "Pause live updates";
    pauseButton.setAttribute("aria-pressed", String(paused));
  }, { kind: "quiet", "aria-pressed": "false" });

  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), h("div", { class: "page-tools" }, updated, pauseButton)),
    notice,
    // Polite: a screen reader mentions a figure when it changes, not on every poll (unchanged text is left alone).
    h("section", { "aria-label": "Platform now", "aria-live": "polite", class: "tiles-region" }, tiles),
    h("h2", {}, "Last hour"),
    charts,
  );

  let lastSeries = "";
  let lastData = [];
  // Charts are drawn at their shown width: redraw when the window is resized (once it settles).
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => renderCharts(charts, lastData), 150);
  };
  window.addEventListener("resize", onResize);
  async function tick() {
    if (paused) return;
    let data;
    try {
      data = await get("/api/v1/overview");
    } catch (error) {
      notice.show(error.message);
      return;
    }
    notice.clear();
    for (const tile of TILES) {
      const text = tileText(tile, data);
      const el = values.get(tile.key);
      if (el.textContent !== text) el.textContent = text;
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    const series = data.series || [];
    const signature = JSON.stringify(series, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
    if (signature !== lastSeries) {
      lastSeries = signature;
      lastData = series;
      renderCharts(charts, series);
    }
  }
  const stop = poll(tick, pollMs(3000));
  return () => {
    stop();
    window.removeEventListener("resize", onResize);
  };
}

function renderCharts(charts, series) {
  // As many columns as the CSS grid has now (one on a phone); each chart minus its card's padding.
  const columns = getComputedStyle(charts).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
  const width = (charts.clientWidth - (columns - 1) * 14) / columns - 42;
  const times = series.map((p) => p.at);
  const pick = (key) => series.map((p) => p[key] ?? 0);
  const money = (v, axis) => {
    const micro = typeof v === "bigint" ? v : BigInt(Math.round(Number(v)));
    return axis ? formatCpt(micro, { unit: false }) : formatCpt(micro);
  };
  replace(
    charts,
    lineChart({ title: "Nodes online", width, times, series: [{ label: "Nodes online", values: pick("nodes_online"), tone: 1 }] }),
    lineChart({
      title: "Jobs queued and running",
      width,
      times,
      series: [
        { label: "Queued", values: pick("jobs_queued"), tone: 2 },
        { label: "Running", values: pick("jobs_running"), tone: 3 },
      ],
    }),
    lineChart({ title: "Leases per minute", width, times, series: [{ label: "Leases per minute", values: pick("leases_per_min"), tone: 4 }] }),
    lineChart({ title: "CPT paid per minute", width, times, series: [{ label: "Paid", values: series.map((p) => p.paid_micro ?? 0n), tone: 5 }], format: money, floor: 1_000_000 }),
  );
  if (!series.length) charts.prepend(h("p", { class: "empty" }, "No history yet: the charts fill in minute by minute."));
}
