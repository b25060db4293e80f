// My nodes: the computers this account has registered as workers, and one node in detail.

import { get, post } from "../api.js";
import { badge, busy, button, confirmAction, dl, h, noticeArea, pollMs, poll, renderIfChanged, table, timeEl } from "../dom.js";

export function nodeState(node) {
  if (node.revoked) return "revoked";
  if (node.quarantined) return "quarantined";
  if (node.online === false) return "offline";
  return node.status;
}

export function gpuText(node) {
  return node.gpu_name ? `${node.gpu_name}${node.gpu_memory_gb ? ` (${node.gpu_memory_gb} GB)` : ""}` : "none";
}

export function nodeColumns(base) {
  return [
    { label: "Node", value: (n) => h("a", { href: `${base}/${encodeURIComponent(n.id)}` }, n.hostname || n.id) },
    { label: "State", value: (n) => badge(nodeState(n)) },
    { label: "CPU cores", value: (n) => String(n.cpu_cores ?? "—"), numeric: true },
    { label: "Memory", value: (n) => (n.memory_gb !== undefined ? `${n.memory_gb} GB` : "—"), numeric: true },
    { label: "GPU", value: gpuText },
    { label: "Last seen", value: (n) => timeEl(n.last_seen_at) },
  ];
}

export function listPage(container, ctx) {
  const notice = noticeArea();
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "My nodes"), ctx.isAdmin ? h("a", { class: "button button-quiet", href: "#/admin/nodes" }, "All nodes (admin)") : null),
    h("p", { class: "lead" }, "Computers you share through the HiveMind desktop app. Install the app and sign in on a computer to add it."),
    notice,
    body,
  );
  return poll(async () => {
    try {
      const data = await get("/api/v1/nodes");
      notice.clear();
      renderIfChanged(body, data.nodes, (nodes) =>
        table(nodeColumns("#/nodes"), nodes, { caption: "Your nodes", empty: "You have no nodes yet. Install the HiveMind app on a computer and sign in there to share it." }),
      );
    } catch (error) {
      notice.show(error.message);
    }
  }, pollMs(5000));
}

export function nodeFacts(node) {
  return dl([
    ["State", badge(nodeState(node))],
    ["Reported status", node.status_message ? `${node.status} — ${node.status_message}` : node.status],
    ["Hostname", node.hostname],
    ["Node id", h("code", {}, node.id)],
    ["Location", node.location || "—"],
    ["CPU", `${node.cpu_cores} cores, benchmark score ${node.cpu_score}`],
    ["Memory", `${node.memory_gb} GB`],
    ["GPU", node.gpu_name ? `${gpuText(node)}, benchmark score ${node.gpu_score}` : "none"],
    ["Docker", node.docker_status ? "available" : "not available"],
    ["Usage", `CPU ${node.cpu_usage_percent ?? 0}%, memory ${node.memory_usage_percent ?? 0}%, GPU ${node.gpu_usage_percent ?? 0}%`],
    ["Registered", timeEl(node.registered_at)],
    ["Last seen", timeEl(node.last_seen_at)],
    node.revoked ? ["Credential revoked", timeEl(node.revoked_at)] : null,
  ]);
}

export function detailPage(container, ctx, nodeId) {
  const notice = noticeArea();
  const facts = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const title = h("h1", {}, "Node");
  let node = null;
  const path = `/api/v1/nodes/${encodeURIComponent(nodeId)}`;
  const revoke = button("Revoke credential", async () => {
    const ok = await confirmAction({
      title: `Revoke ${node.hostname}?`,
      text: "The node's credential stops working at once: it gets no more work and must be registered again to rejoin.",
      confirm: "Revoke",
      danger: true,
    });
    if (!ok) return;
    await busy(revoke, async () => {
      try {
        await post(`${path}/revoke`);
        notice.show(`${node.hostname} is revoked.`, "success");
        await load();
      } catch (error) {
        notice.show(error.message);
      }
    });
  }, { kind: "danger", disabled: true });
  container.append(
    h("p", { class: "breadcrumb" }, h("a", { href: "#/nodes" }, "My nodes")),
    h(
      "div",
      { class: "page-head" },
      title,
      h("div", { class: "actions" }, ctx.isAdmin ? h("a", { class: "button button-quiet", href: `#/admin/nodes/${encodeURIComponent(nodeId)}` }, "Admin view") : null, revoke),
    ),
    notice,
    h("section", { class: "card", "aria-label": "Node details" }, facts),
  );
  async function load() {
    node = await get(path);
    title.textContent = `Node ${node.hostname}`;
    renderIfChanged(facts, node, nodeFacts);
    revoke.disabled = Boolean(node.revoked);
  }
  return poll(async () => {
    try {
      await load();
    } catch (error) {
      notice.show(error.message);
    }
  }, pollMs(5000));
}
