// Small DOM helpers. Pages build elements with h(); text goes in as text nodes, never as HTML, so nothing
// the API returns can inject markup.

import { formatCpt } from "./money.js";

/** h("button", {class: "button", onclick: fn}, "Save") */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export const nextId = (prefix = "f") => `${prefix}-${++uid}`;

// -- announcements and notices ---------------------------------------------------------------------------
/** Say something to screen-reader users (polite). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh node on the next frame, so the same sentence twice is announced twice.
  requestAnimationFrame(() => (region.textContent = text));
}

/** An area for a form's outcome: errors are alerts (read at once), successes are polite status. */
export function noticeArea() {
  const el = h("div", { class: "notice-area" });
  el.show = (text, kind = "error") => {
    replace(el, text ? h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text) : null);
  };
  el.clear = () => replace(el);
  return el;
}

// -- formatting ------------------------------------------------------------------------------------------
export function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function timeEl(value) {
  return value ? h("time", { datetime: value }, formatTime(value)) : "—";
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…` : id ?? "—";
}

const STATE_TONES = {
  completed: "ok", accepted: "ok", idle: "ok", online: "ok", ok: "ok", active: "ok", valid: "ok",
  running: "busy", busy: "busy", leased: "busy",
  queued: "wait", waiting: "wait", registered: "wait", paused: "wait",
  failed: "bad", cancelled: "muted", offline: "muted", revoked: "bad", quarantined: "bad", disabled: "bad",
  invalid: "bad", expired: "muted",
  agreed: "ok", pending: "wait", disagreed: "bad", undecided: "bad", not_run: "muted", succeeded: "ok",
};

export function badge(state) {
  const text = String(state ?? "—");
  return h("span", { class: `badge badge-${STATE_TONES[text] || "muted"}` }, text);
}

export function cpt(micro, opts) {
  return micro === undefined || micro === null ? "—" : formatCpt(micro, opts);
}

// -- structures ------------------------------------------------------------------------------------------
/**
 * A data table: columns are {label, value(row) -> Node|string, numeric?}. Wrapped in a focusable scroll
 * region so a wide table scrolls by keyboard on a phone.
 */
export function table(columns, rows, { caption, empty = "Nothing to show yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const t = h(
    "table",
    { class: "table" },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h("tr", {}, columns.map((c, i) => {
          const cell = c.value(row);
          return i === 0 && c.header !== false
            ? h("th", { scope: "row", class: c.numeric ? "num" : null }, cell)
            : h("td", { class: c.numeric ? "num" : null }, cell);
        })),
      ),
    ),
  );
  return h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": caption || "Table" }, t);
}

/** A description list from [label, value] pairs. */
export function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v ?? "—"))));
}

/** Any JSON value as readable nested facts: for parts of an answer the panel has no special view of. */
export function anyValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) {
    if (!value.length) return "none";
    if (value.every((v) => v === null || typeof v !== "object")) return value.join(", ");
    return h("ol", { class: "nested" }, value.map((v) => h("li", {}, anyValue(v))));
  }
  if (typeof value === "object") {
    return dl(Object.entries(value).map(([k, v]) => [humanize(k), /_micro$/.test(k) ? cpt(v) : anyValue(v)]));
  }
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

export function humanize(key) {
  return key.replace(/_micro$/, "").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

// -- form fields -----------------------------------------------------------------------------------------
/** A labelled input: field("Username", {name: "username", autocomplete: "username"}). */
export function field(label, attrs = {}, hint) {
  const { tag = "input", ...rest } = attrs;
  const id = rest.id || nextId("field");
  const hintId = hint ? `${id}-hint` : null;
  const input = h(tag, { ...rest, id, "aria-describedby": hintId });
  return h("div", { class: "field" }, h("label", { for: id }, label), hint ? h("p", { class: "hint", id: hintId }, hint) : null, input);
}

export function select(label, name, options, value = "") {
  const id = nextId("select");
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("select", { id, name }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))),
  );
}

export function button(label, onclick, { kind = "", type = "button", ...attrs } = {}) {
  return h("button", { type, class: `button ${kind ? `button-${kind}` : ""}`.trim(), onclick, ...attrs }, label);
}

/** Disable a button while an async action runs; restore it afterwards. */
export async function busy(buttonEl, action) {
  const was = buttonEl.disabled;
  buttonEl.disabled = true;
  buttonEl.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    buttonEl.disabled = was;
    buttonEl.removeAttribute("aria-busy");
  }
}

// -- the confirmation dialog -----------------------------------------------------------------------------
/** Ask before doing something that matters. Resolves true when confirmed. extra: nodes shown in the dialog. */
export function confirmAction({ title, text, confirm = "Confirm", danger = false, extra = null }) {
  const dialog = document.getElementById("confirm-dialog");
  replace(document.getElementById("confirm-title"), title);
  replace(document.getElementById("confirm-text"), text);
  replace(document.getElementById("confirm-extra"), extra);
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirm;
  ok.className = `button ${danger ? "button-danger" : "button-primary"}`;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      () => {
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve(dialog.returnValue === "ok");
      },
      { once: true },
    );
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// -- polling ---------------------------------------------------------------------------------------------
/** How often live pages ask again; ?poll=<ms> in the address overrides it (tests use a short one). */
export function pollMs(fallback) {
  const value = Number(new URLSearchParams(location.search).get("poll"));
  return Number.isFinite(value) && value >= 200 ? value : fallback;
}

/**
 * Run tick() now and then every interval ms until stop() is called; a tick never overlaps the previous
 * one. Hidden tabs skip ticks, so an idle tab costs the coordinator nothing.
 */
export function poll(tick, interval) {
  let stopped = false;
  let timer = null;
  const run = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await tick();
      } catch {
        /* tick shows its own errors */
      }
    }
    if (!stopped) timer = setTimeout(run, interval);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Replace el's content with build(data) only when data differs from last time, so a poll that finds
 * nothing new leaves focus and scroll position alone. */
export function renderIfChanged(el, data, build) {
  const signature = JSON.stringify(data, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  if (el.dataset.signature === signature) return false;
  el.dataset.signature = signature;
  replace(el, build(data));
  return true;
}
