// Administration: every admin-API action, shown only to admins (and refused by the API to anyone else).

import { LOST_ANSWER, RetryKey, get, post, put } from "../api.js";
import {
  anyValue, badge, busy, button, confirmAction, cpt, dl, field, h, noticeArea, poll, pollMs,
  renderIfChanged, replace, select, shortId, table, timeEl,
} from "../dom.js";
import { AmountError, formatCpt, formatMicro, parseCpt, parseMicroInteger } from "../money.js";
import { JOB_STATES, jobColumns, jobDetail } from "./jobs.js";
import { nodeColumns, nodeFacts, nodeState } from "./nodes.js";
import { pagedStatement } from "./wallet.js";

const grantKey = new RetryKey();

const PAGE = 50;
const enc = encodeURIComponent;

// -- shared pieces ---------------------------------------------------------------------------------------
function head(title, lead) {
  return [h("div", { class: "page-head" }, h("h1", {}, title)), lead ? h("p", { class: "lead" }, lead) : null];
}

/**
 * A filtered, paged admin list. filters: form fields (inputs/selects with names); fetch(params) -> {rows,
 * total}; render(rows) -> Node. Re-asks every interval so the page stays current.
 */
function filteredList({ filters, fetch, render, interval = 5000, notice }) {
  let offset = 0;
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const counter = h("p", { class: "muted pager-count", role: "status" });
  const prev = button("Previous page", () => go(offset - PAGE), { kind: "quiet" });
  const next = button("Next page", () => go(offset + PAGE), { kind: "quiet" });
  const form = h("form", { class: "toolbar", role: "search" }, filters, button("Apply filters", null, { type: "submit" }));
  const params = () => Object.fromEntries(new FormData(form).entries());
  async function load() {
    const { rows, total } = await fetch({ ...params(), limit: PAGE, offset });
    notice.clear();
    renderIfChanged(body, rows, render);
    counter.textContent = total ? `${offset + 1}–${offset + rows.length} of ${total}` : "";
    prev.disabled = offset === 0;
    next.disabled = offset + rows.length >= total;
  }
  function go(to) {
    offset = Math.max(0, to);
    load().catch((error) => notice.show(error.message));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(0);
  });
  const el = h("div", {}, form, body, h("div", { class: "pager" }, prev, counter, next));
  const stop = poll(() => load().catch((error) => notice.show(error.message)), pollMs(interval));
  return { el, stop, reload: load };
}

function textFilter(label, name, placeholder = "") {
  return field(label, { name, placeholder, autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
}

/** A button that asks first (with an optional reason field), calls the API and reports the outcome. */
function actionButton({ label, title, text, danger = false, reasonLabel, run, notice, done, kind }) {
  const b = button(label, async () => {
    let reasonInput = null;
    const extra = reasonLabel ? field(reasonLabel, { name: "reason", maxlength: "500", required: true, autocomplete: "off" }) : null;
    if (extra) reasonInput = extra.querySelector("input");
    const ok = await confirmAction({ title: typeof title === "function" ? title() : title, text: typeof text === "function" ? text() : text, confirm: label, danger, extra });
    if (!ok) return;
    const reason = reasonInput ? reasonInput.value.trim() : undefined;
    if (reasonInput && !reason) {
      notice.show(`${label}: give a reason; it is written to the audit log.`);
      return;
    }
    await busy(b, async () => {
      try {
        const reply = await run(reason);
        notice.show(done(reply), "success");
      } catch (error) {
        notice.show(error.message);
      }
    });
  }, { kind: kind || (danger ? "danger" : "") });
  return b;
}

// -- nodes -----------------------------------------------------------------------------------------------
export function nodesPage(container) {
  const notice = noticeArea();
  const list = filteredList({
    notice,
    filters: [
      select("Status", "status", [["", "Any"], ["online", "Online"], ["offline", "Offline"], ["idle", "Idle"], ["busy", "Busy"], ["paused", "Paused"], ["registered", "Registered"]]),
      textFilter("Owner", "owner", "username"),
      select("Quarantined", "quarantined", [["", "Any"], ["true", "Quarantined"], ["false", "Not quarantined"]]),
      select("GPU", "gpu", [["", "Any"], ["true", "Has a GPU"], ["false", "No GPU"]]),
      field("Least trust streak", { name: "min_trust", type: "number", min: "0", inputmode: "numeric" }),
    ],
    fetch: async (params) => {
      const data = await get("/api/v1/admin/nodes", params);
      return { rows: data.nodes, total: data.total };
    },
    render: (rows) =>
      table(
        [
          ...nodeColumns("#/admin/nodes").slice(0, 2),
          { label: "Owner", value: (n) => n.owner ?? String(n.owner_id) },
          { label: "Trust", value: (n) => (n.trusted ? "trusted" : `streak ${n.valid_streak ?? 0}`) },
          { label: "Results ✓ / ✗", value: (n) => `${n.valid_results ?? 0} / ${n.invalid_results ?? 0}`, numeric: true },
          { label: "Leases", value: (n) => String(n.active_leases ?? 0), numeric: true },
          ...nodeColumns("#/admin/nodes").slice(2),
        ],
        rows,
        { caption: "All nodes", empty: "No node matches these filters." },
      ),
  });
  container.append(...head("All nodes", "Every registered node. Open one to quarantine, release or revoke it."), notice, list.el);
  return list.stop;
}

export function nodeDetailPage(container, ctx, nodeId) {
  const notice = noticeArea();
  const title = h("h1", {}, "Node");
  const stateLine = h("p", { class: "state-line", id: "node-state", "aria-live": "polite" });
  const facts = h("div", {});
  const trust = h("div", {});
  const leases = h("div", {});
  const results = h("div", {});
  const history = h("div", {});
  const path = `/api/v1/admin/nodes/${enc(nodeId)}`;
  let node = null;

  const after = async () => {
    await load();
  };
  const quarantine = actionButton({
    label: "Quarantine",
    title: () => `Quarantine ${node.hostname}?`,
    text: "The node gets no new work from now on. Tasks it is running may finish and are paid as usual.",
    reasonLabel: "Reason",
    danger: true,
    notice,
    run: async (reason) => {
      const reply = await post(`${path}/quarantine`, { reason });
      await after();
      return reply;
    },
    done: (n) => `${n.hostname} is quarantined.`,
  });
  const release = actionButton({
    label: "Release",
    title: () => `Release ${node.hostname} from quarantine?`,
    text: "It gets work again, starting untrusted: its results are cross-checked until it earns trust.",
    notice,
    run: async () => {
      const reply = await post(`${path}/release`);
      await after();
      return reply;
    },
    done: (n) => `${n.hostname} is released from quarantine.`,
  });
  const revoke = actionButton({
    label: "Revoke credential",
    title: () => `Revoke ${node.hostname}'s credential?`,
    text: "The worker is refused from now on and must be registered again to rejoin.",
    danger: true,
    notice,
    run: async () => {
      const reply = await post(`${path}/revoke`);
      await after();
      return reply;
    },
    done: (n) => `${n.hostname}'s credential is revoked.`,
  });

  container.append(
    h("p", { class: "breadcrumb" }, h("a", { href: "#/admin/nodes" }, "All nodes")),
    h("div", { class: "page-head" }, title, h("div", { class: "actions" }, quarantine, release, revoke)),
    stateLine,
    notice,
    h("div", { class: "two-col" },
      h("section", { class: "card", "aria-labelledby": "hw-title" }, h("h2", { id: "hw-title" }, "Hardware and status"), facts),
      h("section", { class: "card", "aria-labelledby": "trust-title" }, h("h2", { id: "trust-title" }, "Trust and earnings"), trust),
    ),
    h("section", { "aria-labelledby": "leases-title" }, h("h2", { id: "leases-title" }, "Current leases"), leases),
    h("section", { "aria-labelledby": "results-title" }, h("h2", { id: "results-title" }, "Recent results"), results),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "Admin history"), history),
  );

  async function load() {
    node = await get(path);
    title.textContent = `Node ${node.hostname}`;
    const state = nodeState(node);
    const text = `State: ${state}${node.quarantined && node.quarantine_reason ? ` — ${node.quarantine_reason}` : ""}`;
    if (stateLine.dataset.text !== text) {
      replace(stateLine, "State: ", badge(state), node.quarantined && node.quarantine_reason ? ` — ${node.quarantine_reason}` : "");
      stateLine.dataset.text = text;
      stateLine.dataset.state = state;
    }
    quarantine.hidden = Boolean(node.quarantined) || Boolean(node.revoked);
    release.hidden = !node.quarantined;
    revoke.disabled = Boolean(node.revoked);
    renderIfChanged(facts, node, (n) => [h("p", {}, "Owner: ", h("strong", {}, n.owner ?? String(n.owner_id))), nodeFacts(n)]);
    renderIfChanged(trust, [node.trusted, node.valid_streak, node.valid_results, node.invalid_results, node.earnings_micro, node.quarantine_reason], () =>
      dl([
        ["Trusted", node.trusted ? "yes" : `no (streak ${node.valid_streak ?? 0} of ${node.trust_streak_needed ?? "?"})`],
        ["Results that agreed", String(node.valid_results ?? 0)],
        ["Results that disagreed", `${node.invalid_results ?? 0} (quarantined automatically after ${node.quarantine_after ?? "?"})`],
        ["Quarantined", node.quarantined ? `yes: ${node.quarantine_reason || "no reason given"}` : "no"],
        ["Lifetime earnings", cpt(node.earnings_micro)],
      ]),
    );
    renderIfChanged(leases, node.current_leases || [], (rows) =>
      table(
        [
          { label: "Job", value: (l) => h("a", { href: `#/admin/jobs/${enc(l.job_id)}` }, shortId(l.job_id)) },
          { label: "Task", value: (l) => `#${l.task_index}` },
          { label: "State", value: (l) => badge(l.state) },
          { label: "Started", value: (l) => timeEl(l.created_at) },
          { label: "Deadline", value: (l) => timeEl(l.deadline) },
        ],
        rows,
        { caption: "Leases held now", empty: "This node holds no lease now." },
      ),
    );
    renderIfChanged(results, node.recent_results || [], (rows) =>
      table(
        [
          { label: "Job", value: (l) => h("a", { href: `#/admin/jobs/${enc(l.job_id)}` }, shortId(l.job_id)) },
          { label: "Task", value: (l) => `#${l.task_index}` },
          { label: "Outcome", value: (l) => badge(l.state) },
          { label: "Charged", value: (l) => cpt(l.charged_micro), numeric: true },
          { label: "Paid", value: (l) => cpt(l.paid_micro), numeric: true },
          { label: "Reported", value: (l) => timeEl(l.reported_at) },
          { label: "Note", value: (l) => l.reason || "" },
        ],
        rows,
        { caption: "Last finished leases, newest first", empty: "No finished work yet." },
      ),
    );
    renderIfChanged(history, node.history || [], (rows) => auditTable(rows, "Admin actions on this node"));
  }
  return poll(() => load().catch((error) => notice.show(error.message)), pollMs(3000));
}

// -- jobs ------------------------------------------------------------------------------------------------
export function jobsPage(container) {
  const notice = noticeArea();
  const list = filteredList({
    notice,
    filters: [
      select("State", "state", [["", "Any"], ...JOB_STATES.map((s) => [s, s])]),
      textFilter("Owner", "owner", "username"),
    ],
    fetch: async (params) => {
      const data = await get("/api/v1/admin/jobs", params);
      return { rows: data.jobs, total: data.total };
    },
    render: (rows) => table(jobColumns("#/admin/jobs", { owner: true }), rows, { caption: "All jobs, newest first", empty: "No job matches these filters." }),
  });
  container.append(...head("All jobs", "Every job on the platform. Open one to see its replicas, verification and charges, or to cancel or requeue it."), notice, list.el);
  return list.stop;
}

function verificationSections(job) {
  const tasks = job.tasks || [];
  const replicas = tasks.flatMap((t) => (t.leases || []).map((l) => ({ ...l, task_index: t.index, verification: t.verification })));
  return [
    h("section", { "aria-labelledby": "verify-title" },
      h("h2", { id: "verify-title" }, "Replicas and verification"),
      table(
        [
          { label: "Task", value: (t) => `#${t.index}` },
          { label: "Verification", value: (t) => badge(t.verification) },
          { label: "Quorum", value: (t) => `${t.quorum ?? "—"} of ${t.replicas_needed ?? "—"}` },
        ],
        tasks,
        { caption: "Verification per task", empty: "No tasks." },
      ),
      table(
        [
          { label: "Task", value: (l) => `#${l.task_index}` },
          { label: "Node", value: (l) => h("a", { href: `#/admin/nodes/${enc(l.node_id)}` }, l.node_hostname || shortId(l.node_id)) },
          { label: "Owner", value: (l) => l.node_owner || "—" },
          { label: "Outcome", value: (l) => badge(l.state) },
          { label: "Exit code", value: (l) => (l.exit_code ?? "—").toString(), numeric: true },
          { label: "Result", value: (l) => (l.result_hash ? h("code", {}, shortId(l.result_hash)) : "—") },
          { label: "Charged", value: (l) => cpt(l.charged_micro), numeric: true },
          { label: "Paid", value: (l) => cpt(l.paid_micro), numeric: true },
          { label: "Note", value: (l) => l.reason || "" },
        ],
        replicas,
        { caption: "Replicas (leases) of every task", empty: "No replica has run yet." },
      ),
    ),
    h("section", { "aria-labelledby": "charges-title" },
      h("h2", { id: "charges-title" }, "Charges"),
      table(
        [
          { label: "When", value: (c) => timeEl(c.created_at) },
          { label: "Kind", value: (c) => c.kind.replace(/_/g, " ") },
          { label: "Amount (escrow side)", value: (c) => cpt(c.amount_micro, { sign: true }), numeric: true },
          { label: "Memo", value: (c) => c.memo || "" },
        ],
        job.charges || [],
        { caption: "Movements of the job's escrow", empty: "No movement yet." },
      ),
      job.prices ? h("details", {}, h("summary", {}, "Prices this job is charged by"), anyValue(job.prices)) : null,
    ),
  ];
}

export function jobDetailPage(container, ctx, jobId) {
  return jobDetail(container, ctx, jobId, {
    base: "/api/v1/admin/jobs",
    back: ["#/admin/jobs", "All jobs"],
    extraSections: verificationSections,
    extraActions: (current, { notice, reload }) => {
      const requeue = actionButton({
        label: "Requeue",
        title: "Requeue this job?",
        text: "Its failed or cancelled tasks run again; the owner's wallet is charged a new escrow hold.",
        notice,
        run: async () => {
          const reply = await post(`/api/v1/admin/jobs/${enc(jobId)}/requeue`);
          await reload();
          return reply;
        },
        done: (r) => `${r.message ?? "Requeued."} Tasks: ${(r.requeued_tasks || []).map((i) => `#${i}`).join(", ") || "none"}.`,
      });
      requeue.update = (job) => {
        requeue.hidden = !["failed", "cancelled"].includes(job.state);
      };
      requeue.hidden = true;
      const owner = h("p", { class: "muted" });
      owner.update = (job) => {
        owner.textContent = `Owner: ${job.owner ?? job.owner_id}${job.requeues ? `, requeued ${job.requeues}×` : ""}`;
      };
      return [owner, requeue];
    },
  });
}

// -- users -----------------------------------------------------------------------------------------------
export function usersPage(container, ctx) {
  const notice = noticeArea();
  let list = null;
  const act = (user, verb, { danger = false, title, text } = {}) =>
    actionButton({
      label: verb[0].toUpperCase() + verb.slice(1),
      title: title || `${verb[0].toUpperCase() + verb.slice(1)} ${user.username}?`,
      text: text || "",
      danger,
      notice,
      kind: danger ? "danger-small" : "small",
      run: async () => {
        const reply = await post(`/api/v1/admin/users/${enc(user.username)}/${verb}`);
        await list.reload();
        return reply;
      },
      done: (u) => `${u.username} is now ${u.disabled ? "disabled" : "enabled"}, role ${u.role}.`,
    });
  list = filteredList({
    notice,
    filters: [
      textFilter("Search", "q", "part of a username or email"),
      select("Role", "role", [["", "Any"], ["user", "User"], ["admin", "Admin"]]),
      select("Access", "disabled", [["", "Any"], ["false", "Enabled"], ["true", "Disabled"]]),
    ],
    fetch: async (params) => {
      const data = await get("/api/v1/admin/users", params);
      return { rows: data.users, total: data.total };
    },
    render: (rows) =>
      table(
        [
          { label: "User", value: (u) => u.username },
          { label: "Email", value: (u) => u.email },
          { label: "Role", value: (u) => (u.role === "admin" ? h("span", { class: "badge badge-admin" }, "admin") : "user") },
          { label: "Access", value: (u) => badge(u.disabled ? "disabled" : "active") },
          { label: "Balance", value: (u) => cpt(u.balance_micro), numeric: true },
          { label: "Nodes", value: (u) => String(u.nodes ?? 0), numeric: true },
          { label: "Jobs", value: (u) => String(u.jobs ?? 0), numeric: true },
          { label: "Joined", value: (u) => timeEl(u.created_at) },
          {
            label: "Actions",
            value: (u) => {
              if (u.username === ctx.me.username) return h("span", { class: "muted" }, "This is you");
              const buttons = [
                u.disabled
                  ? act(u, "enable")
                  : act(u, "disable", { danger: true, text: "They cannot sign in, their tokens stop working and their nodes are refused. Their running jobs continue." }),
                u.role === "admin"
                  ? act(u, "demote", { text: "They lose access to the admin pages and API." })
                  : act(u, "promote", { text: "They can see and change everything on the platform." }),
              ];
              for (const b of buttons) b.setAttribute("aria-label", `${b.textContent} ${u.username}`);
              return h("div", { class: "row-actions" }, buttons);
            },
          },
        ],
        rows,
        { caption: "Users", empty: "No user matches these filters." },
      ),
    interval: 10000,
  });
  container.append(...head("Users", "Disable or enable accounts, and promote users to admins or demote them."), notice, list.el);
  return list.stop;
}

// -- ledger ----------------------------------------------------------------------------------------------
export function ledgerPage(container) {
  const notice = noticeArea();
  const accounts = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const grants = h("div", {});
  const auditResult = h("div", { "aria-live": "polite" });

  async function loadAccounts() {
    const data = await get("/api/v1/admin/ledger/accounts");
    renderIfChanged(accounts, data, (d) => [
      dl([
        ["Minted in total", cpt(d.total_minted_micro)],
        ["In user wallets", cpt(d.wallets_micro)],
        ["Held in job escrow", cpt(d.escrow_micro)],
        ["Platform fees", cpt(d.fees_micro)],
      ]),
      table(
        [
          { label: "Account", value: (a) => a.name },
          { label: "Kind", value: (a) => a.kind },
          { label: "Balance", value: (a) => cpt(a.balance_micro), numeric: true },
        ],
        d.accounts || [],
        { caption: "System accounts" },
      ),
    ]);
  }
  async function loadGrants() {
    const data = await get("/api/v1/admin/ledger/grants", { limit: 20 });
    renderIfChanged(grants, data.grants, (rows) =>
      table(
        [
          { label: "When", value: (g) => timeEl(g.created_at) },
          { label: "User", value: (g) => g.username },
          { label: "Amount", value: (g) => cpt(g.amount_micro), numeric: true },
          { label: "Kind", value: (g) => g.kind.replace(/_/g, " ") },
          { label: "By", value: (g) => g.initiator || "—" },
          { label: "Memo", value: (g) => g.memo || "" },
        ],
        rows,
        { caption: `Latest grants (${data.total} in all)`, empty: "No grants yet." },
      ),
    );
  }

  // Grant
  const grantNotice = noticeArea();
  const grantSubmit = h("button", { type: "submit", class: "button button-primary" }, "Review grant");
  const grantForm = h(
    "form",
    { class: "form form-grid", novalidate: true },
    grantNotice,
    field("Username", { name: "username", required: true, autocomplete: "off", autocapitalize: "none", spellcheck: "false" }),
    field("Amount (CPT)", { name: "amount", required: true, inputmode: "decimal", autocomplete: "off" }, "New CPT minted into their wallet; up to 6 decimal places."),
    field("Memo", { name: "memo", maxlength: "200", autocomplete: "off" }),
    h("div", { class: "actions" }, grantSubmit),
  );
  grantForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = grantForm.username.value.trim();
    let amount;
    try {
      if (!username) throw new AmountError("Enter the username to grant CPT to.");
      amount = parseCpt(grantForm.amount.value);
    } catch (error) {
      if (!(error instanceof AmountError)) throw error;
      grantNotice.show(error.message);
      return;
    }
    const memo = grantForm.memo.value.trim();
    const ok = await confirmAction({ title: "Grant CPT?", text: `Mint ${formatCpt(amount)} into ${username}'s wallet. This is written to the audit log.`, confirm: `Grant ${formatCpt(amount)}` });
    if (!ok) return;
    await busy(grantSubmit, async () => {
      try {
        const idempotency_key = grantKey.keyFor(`${username}\n${amount}\n${memo}`);
        const reply = await post("/api/v1/admin/ledger/grant", { username, amount_micro: amount, memo, idempotency_key });
        grantKey.settle();
        grantNotice.show(`Granted ${formatCpt(reply.amount_micro)} to ${reply.username}; their balance is now ${formatCpt(reply.new_balance_micro)}.`, "success");
        grantForm.reset();
        await Promise.all([loadAccounts(), loadGrants()]);
      } catch (error) {
        grantNotice.show(grantKey.settle(error) ? LOST_ANSWER : error.message);
      }
    });
  });

  // Statement of any user
  const statementNotice = noticeArea();
  const statementHead = h("p", { class: "muted", "aria-live": "polite" });
  const statementBody = h("div", {});
  const statementForm = h("form", { class: "toolbar", role: "search" }, field("Username", { name: "username", required: true, autocomplete: "off", autocapitalize: "none", spellcheck: "false" }), button("Show statement", null, { type: "submit" }));
  statementForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = statementForm.username.value.trim();
    if (!username) {
      statementNotice.show("Enter a username.");
      return;
    }
    statementNotice.clear();
    const statement = pagedStatement(async (token) => {
      const data = await get(`/api/v1/admin/ledger/statement/${enc(username)}`, { page_size: 20, page_token: token });
      statementHead.textContent = `${data.username}: balance ${formatCpt(data.balance_micro)}`;
      return { rows: data.transactions, next: data.next_page_token };
    }, `Statement of ${username}`, statementNotice);
    replace(statementBody, statement.el);
    try {
      await statement.reload();
    } catch (error) {
      replace(statementBody);
      statementHead.textContent = "";
      statementNotice.show(error.message);
    }
  });

  const runAudit = button("Run the audit", async () => {
    await busy(runAudit, async () => {
      try {
        const data = await get("/api/v1/admin/ledger/audit");
        replace(
          auditResult,
          data.status === "ok"
            ? h("p", { class: "notice notice-success", role: "status" }, "The books balance: every transaction sums to zero and every cached balance matches its entries.")
            : [h("p", { class: "notice notice-error", role: "alert" }, "The audit found discrepancies:"), h("ul", {}, data.discrepancies.map((d) => h("li", {}, d)))],
        );
      } catch (error) {
        notice.show(error.message);
      }
    });
  });

  container.append(
    ...head("Ledger", "System accounts, any user's statement, grants, and the audit of the books."),
    notice,
    h("div", { class: "two-col" },
      h("section", { class: "card", "aria-labelledby": "accounts-title" }, h("h2", { id: "accounts-title" }, "Accounts"), accounts),
      h("section", { class: "card", "aria-labelledby": "grant-title" }, h("h2", { id: "grant-title" }, "Grant CPT"), grantForm),
    ),
    h("section", { class: "card", "aria-labelledby": "audit-title" }, h("h2", { id: "audit-title" }, "Audit"), h("p", { class: "muted" }, "Checks that every transaction sums to zero and every balance matches its entries."), runAudit, auditResult),
    h("section", { "aria-labelledby": "grants-title" }, h("h2", { id: "grants-title" }, "Grants"), grants),
    h("section", { "aria-labelledby": "statement-title" }, h("h2", { id: "statement-title" }, "A user's statement"), statementNotice, statementForm, statementHead, statementBody),
  );
  return poll(() => Promise.all([loadAccounts(), loadGrants()]).catch((error) => notice.show(error.message)), pollMs(10000));
}

// -- pricing ---------------------------------------------------------------------------------------------
const PRICE_FIELDS = [
  { key: "cpu_micro_per_core_second", label: "CPU, per core-second", unit: "µCPT" },
  { key: "gpu_micro_per_gpu_second", label: "GPU, per GPU-second", unit: "µCPT" },
  { key: "memory_micro_per_gb_second", label: "Memory, per GB-second", unit: "µCPT" },
  { key: "min_task_charge_micro", label: "Least charge per task", unit: "µCPT" },
];

function feePercent(bps) {
  const whole = Math.trunc(bps / 100);
  const frac = String(bps % 100).padStart(2, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}%` : `${whole}%`;
}

export function pricingPage(container) {
  const notice = noticeArea();
  const current = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const formNotice = noticeArea();
  const save = h("button", { type: "submit", class: "button button-primary" }, "Review changes");
  const form = h(
    "form",
    { class: "form form-grid", novalidate: true },
    formNotice,
    PRICE_FIELDS.map((f) => field(`${f.label} (${f.unit})`, { name: f.key, inputmode: "numeric", required: true, autocomplete: "off" })),
    field("Platform fee (basis points)", { name: "platform_fee_bps", inputmode: "numeric", required: true, autocomplete: "off" }, "100 basis points = 1%. The fee is kept from each task's charge; the rest pays the volunteers."),
    h("div", { class: "actions" }, save),
  );
  let table_ = null;

  function fill(prices) {
    for (const f of PRICE_FIELDS) form[f.key].value = prices[f.key].toString();
    form.platform_fee_bps.value = String(prices.platform_fee_bps);
  }
  async function load() {
    table_ = await get("/api/v1/admin/pricing");
    replace(
      current,
      dl([
        ...PRICE_FIELDS.map((f) => [f.label, formatMicro(table_[f.key])]),
        ["Platform fee", `${feePercent(table_.platform_fee_bps)} (${table_.platform_fee_bps} basis points)`],
        ["Set by", table_.source === "admin" ? `${table_.updated_by ?? "an admin"}, ${table_.updated_at ? new Date(table_.updated_at).toLocaleString() : ""}` : "the coordinator's settings"],
      ]),
    );
    fill(table_);
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    const changes = [];
    try {
      for (const f of PRICE_FIELDS) {
        const value = parseMicroInteger(form[f.key].value, f.label);
        if (value !== table_[f.key]) {
          body[f.key] = value;
          changes.push([f.label, `${formatMicro(table_[f.key])} → ${formatMicro(value)}`]);
        }
      }
      const fee = form.platform_fee_bps.value.trim();
      if (!/^\d+$/.test(fee)) throw new AmountError("Platform fee must be a whole number of basis points (0 to 10000).");
      const bps = Number.parseInt(fee, 10);
      if (bps !== table_.platform_fee_bps) {
        body.platform_fee_bps = bps;
        changes.push(["Platform fee", `${feePercent(table_.platform_fee_bps)} → ${feePercent(bps)}`]);
      }
    } catch (error) {
      if (!(error instanceof AmountError)) throw error;
      formNotice.show(error.message);
      return;
    }
    if (!changes.length) {
      formNotice.show("Nothing changed.", "info");
      return;
    }
    const ok = await confirmAction({ title: "Change the prices?", text: "Jobs submitted from now on are charged by the new table; jobs already submitted keep theirs.", confirm: "Change prices", extra: dl(changes) });
    if (!ok) return;
    await busy(save, async () => {
      try {
        await put("/api/v1/admin/pricing", body);
        await load();
        formNotice.show("The new prices apply to jobs submitted from now on.", "success");
      } catch (error) {
        formNotice.show(error.message);
      }
    });
  });
  container.append(
    ...head("Pricing", "What jobs are charged per second of resources, and the platform's fee."),
    notice,
    h("div", { class: "two-col" },
      h("section", { class: "card", "aria-labelledby": "now-title" }, h("h2", { id: "now-title" }, "Current table"), current),
      h("section", { class: "card", "aria-labelledby": "edit-title" }, h("h2", { id: "edit-title" }, "Change"), form),
    ),
  );
  load().catch((error) => notice.show(error.message));
}

// -- audit log -------------------------------------------------------------------------------------------
function auditTable(rows, caption) {
  return table(
    [
      { label: "When", value: (e) => timeEl(e.at) },
      { label: "Admin", value: (e) => e.actor },
      { label: "Action", value: (e) => h("code", {}, e.action) },
      { label: "Target", value: (e) => e.target },
      { label: "What happened", value: (e) => e.summary || (e.detail ? anyValue(e.detail) : "") },
    ],
    rows,
    { caption, empty: "No admin action recorded yet." },
  );
}

export function auditPage(container) {
  const notice = noticeArea();
  const list = filteredList({
    notice,
    filters: [
      textFilter("Admin", "actor", "username"),
      select("Action", "action", [["", "Any"], ...["ledger.grant", "node.quarantine", "node.release", "node.revoke", "job.cancel", "job.requeue", "user.disable", "user.enable", "user.promote", "user.demote", "pricing.update"].map((a) => [a, a])]),
      textFilter("Target", "target", "e.g. user:bob or node:"),
    ],
    fetch: async (params) => {
      const data = await get("/api/v1/admin/audit-log", params);
      return { rows: data.entries, total: data.total };
    },
    render: (rows) => auditTable(rows, "Admin actions, newest first"),
  });
  container.append(...head("Audit log", "Every admin action: who did what, to what, and when."), notice, list.el);
  return list.stop;
}
