// The panel's shell: hash routes, the navigation (admin links only for admins), sign-in state, and focus
// moved to each new page's heading so keyboard and screen-reader users land where the content is.

import { SIGNED_OUT, get, session, signOut } from "./api.js";
import { announce, h, replace } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as overview from "./pages/overview.js";
import * as nodes from "./pages/nodes.js";
import * as jobs from "./pages/jobs.js";
import * as wallet from "./pages/wallet.js";
import * as admin from "./pages/admin.js";

const ROUTES = [
  { path: /^\/signin$/, page: signin.signInPage, open: true, title: "Sign in" },
  { path: /^\/register$/, page: signin.registerPage, open: true, title: "Create an account" },
  { path: /^\/overview$/, page: overview.page, title: "Overview" },
  { path: /^\/nodes$/, page: nodes.listPage, title: "My nodes" },
  { path: /^\/nodes\/([^/]+)$/, page: nodes.detailPage, title: "Node" },
  { path: /^\/jobs$/, page: jobs.listPage, title: "My jobs" },
  { path: /^\/jobs\/([^/]+)$/, page: jobs.detailPage, title: "Job" },
  { path: /^\/wallet$/, page: wallet.page, title: "My wallet" },
  { path: /^\/admin\/nodes$/, page: admin.nodesPage, admin: true, title: "All nodes" },
  { path: /^\/admin\/nodes\/([^/]+)$/, page: admin.nodeDetailPage, admin: true, title: "Node (admin)" },
  { path: /^\/admin\/jobs$/, page: admin.jobsPage, admin: true, title: "All jobs" },
  { path: /^\/admin\/jobs\/([^/]+)$/, page: admin.jobDetailPage, admin: true, title: "Job (admin)" },
  { path: /^\/admin\/users$/, page: admin.usersPage, admin: true, title: "Users" },
  { path: /^\/admin\/ledger$/, page: admin.ledgerPage, admin: true, title: "Ledger" },
  { path: /^\/admin\/pricing$/, page: admin.pricingPage, admin: true, title: "Pricing" },
  { path: /^\/admin\/audit$/, page: admin.auditPage, admin: true, title: "Audit log" },
];

const NAV = [
  { href: "#/overview", label: "Overview" },
  { href: "#/nodes", label: "My nodes" },
  { href: "#/jobs", label: "My jobs" },
  { href: "#/wallet", label: "My wallet" },
];
const ADMIN_NAV = [
  { href: "#/admin/nodes", label: "All nodes" },
  { href: "#/admin/jobs", label: "All jobs" },
  { href: "#/admin/users", label: "Users" },
  { href: "#/admin/ledger", label: "Ledger" },
  { href: "#/admin/pricing", label: "Pricing" },
  { href: "#/admin/audit", label: "Audit log" },
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const navToggle = document.getElementById("nav-toggle");
const account = document.getElementById("account");
let cleanup = null;
let pendingNotice = "";

function currentPath() {
  return location.hash.replace(/^#/, "") || "/overview";
}

export function navigate(path) {
  if (location.hash === `#${path}`) render();
  else location.hash = `#${path}`;
}

function renderNav(path) {
  const me = session.get();
  const isAdmin = me?.role === "admin";
  const link = (item) => {
    const active = `#${path}` === item.href || `#${path}`.startsWith(`${item.href}/`);
    return h("li", {}, h("a", { href: item.href, "aria-current": active ? "page" : null }, item.label));
  };
  replace(
    nav,
    h("ul", { class: "nav-list" }, NAV.map(link)),
    isAdmin ? [h("h2", { class: "nav-heading", id: "nav-admin" }, "Administration"), h("ul", { class: "nav-list", "aria-labelledby": "nav-admin" }, ADMIN_NAV.map(link))] : null,
  );
  replace(
    document.getElementById("account-name"),
    me ? [h("span", { class: "visually-hidden" }, "Signed in as "), me.username, isAdmin ? h("span", { class: "badge badge-admin" }, "admin") : null] : null,
  );
}

function setSignedIn(signedIn) {
  nav.hidden = !signedIn;
  account.hidden = !signedIn;
  navToggle.hidden = !signedIn;
  document.body.classList.toggle("signed-out", !signedIn);
}

function closeMenu() {
  document.body.classList.remove("nav-open");
  navToggle.setAttribute("aria-expanded", "false");
}

async function render() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  closeMenu();
  const path = currentPath();
  const route = ROUTES.find((r) => r.path.test(path));
  const me = session.get();
  if (!route) {
    navigate(me ? "/overview" : "/signin");
    return;
  }
  if (!route.open && !me) {
    navigate("/signin");
    return;
  }
  if (route.open && me) {
    navigate("/overview");
    return;
  }
  setSignedIn(Boolean(me));
  if (me) renderNav(path);
  const params = path.match(route.path).slice(1).map(decodeURIComponent);
  const container = h("div", { class: "page" });
  replace(main, container);
  document.title = `${route.title} · HiveMind`;
  const ctx = { navigate, isAdmin: me?.role === "admin", me, notice: pendingNotice };
  pendingNotice = "";
  try {
    cleanup = (await route.page(container, ctx, ...params)) || null;
  } catch (error) {
    replace(container, h("h1", { tabindex: "-1" }, route.title), h("p", { class: "notice notice-error", role: "alert" }, error.message));
  }
  const heading = container.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    // Focus the heading only on navigation inside the panel, not on the first load of a bookmarked page.
    if (rendered && !container.contains(document.activeElement)) heading.focus();
  }
  rendered = true;
  announce(`${route.title} page`);
}
let rendered = false;

navToggle.addEventListener("click", () => {
  const open = !document.body.classList.contains("nav-open");
  document.body.classList.toggle("nav-open", open);
  navToggle.setAttribute("aria-expanded", String(open));
  if (open) nav.querySelector("a")?.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("nav-open")) {
    closeMenu();
    navToggle.focus();
  }
});
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  pendingNotice = "You are signed out.";
  navigate("/signin");
});
window.addEventListener(SIGNED_OUT, (event) => {
  pendingNotice = event.detail;
  navigate("/signin");
});
window.addEventListener("hashchange", render);
// The address's hash holds the route, so the skip link moves focus itself instead of changing the hash.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

// A stored session may belong to an account that was disabled or demoted since: ask who we are first.
async function start() {
  if (session.get()) {
    try {
      const me = await get("/api/v1/auth/me");
      const stored = session.get();
      if (stored && stored.role !== me.role) session.set({ ...stored, role: me.role });
    } catch {
      /* a refused session already sent us to sign-in */
    }
  }
  render();
}
start();
