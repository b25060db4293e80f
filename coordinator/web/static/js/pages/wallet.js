// My wallet: balance, history (newest first, paged) and a transfer that asks for confirmation first.

import { LOST_ANSWER, RetryKey, get, post } from "../api.js";
import { busy, button, confirmAction, cpt, dl, field, h, noticeArea, renderIfChanged, shortId, table, timeEl } from "../dom.js";
import { AmountError, formatCpt, parseCpt } from "../money.js";

const transferKey = new RetryKey();

/** "escrow:<job id>" is a job's escrow account: link to the job rather than show a bare id. */
function counterparty(row) {
  const escrow = /^escrow:(.+)$/.exec(row.counterparty || "");
  if (escrow) return h("a", { href: `#/jobs/${encodeURIComponent(escrow[1])}` }, `escrow of job ${shortId(escrow[1])}`);
  return row.counterparty || "—";
}

export function statementTable(rows, caption) {
  return table(
    [
      { label: "When", value: (r) => timeEl(r.timestamp ?? r.created_at) },
      { label: "Kind", value: (r) => r.kind.replace(/_/g, " ") },
      { label: "Counterparty", value: counterparty },
      { label: "Amount", value: (r) => h("span", { class: r.amount_micro < 0n ? "amount-out" : "amount-in" }, cpt(r.amount_micro, { sign: true })), numeric: true },
      { label: "Balance after", value: (r) => cpt(r.balance_after_micro), numeric: true },
      { label: "Memo", value: (r) => r.memo || "" },
    ],
    rows,
    { caption, empty: "No transactions yet." },
  );
}

/** A paged statement: first page, then "Show more" with the page token. fetchPage(token) -> {rows, next}. */
export function pagedStatement(fetchPage, caption, notice) {
  const body = h("div", {});
  const more = button("Show more", async () => {
    await busy(more, async () => {
      try {
        const page = await fetchPage(next);
        rows = rows.concat(page.rows);
        next = page.next;
        show();
      } catch (error) {
        notice.show(error.message);
      }
    });
  }, { kind: "quiet", hidden: true });
  let rows = [];
  let next = "";
  function show() {
    renderIfChanged(body, rows, (r) => statementTable(r, caption));
    more.hidden = !next;
  }
  async function reload() {
    const page = await fetchPage("");
    rows = page.rows;
    next = page.next;
    show();
  }
  return { el: h("div", {}, body, more), reload };
}

export function page(container, ctx) {
  const notice = noticeArea();
  const balance = h("p", { class: "balance", id: "wallet-balance", "aria-live": "polite" }, "…");
  const history = pagedStatement(async (token) => {
    const data = await get("/api/v1/wallet/transactions", { page_size: 20, page_token: token });
    return { rows: data.transactions, next: data.next_page_token };
  }, "Transactions, newest first", notice);

  async function refresh() {
    const data = await get("/api/v1/wallet/balance");
    balance.textContent = formatCpt(data.balance_micro);
    await history.reload();
  }

  const formNotice = noticeArea();
  const review = h("button", { type: "submit", class: "button button-primary" }, "Review transfer");
  const form = h(
    "form",
    { class: "form form-grid", novalidate: true, "aria-labelledby": "transfer-title" },
    formNotice,
    field("Recipient", { name: "recipient", required: true, autocomplete: "off", autocapitalize: "none", spellcheck: "false" }, "Their HiveMind username."),
    field("Amount (CPT)", { name: "amount", required: true, inputmode: "decimal", autocomplete: "off" }, "Up to 6 decimal places, e.g. 12.5 or 0.000001."),
    field("Memo (optional)", { name: "memo", maxlength: "200", autocomplete: "off" }),
    h("div", { class: "actions" }, review),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formNotice.clear();
    const recipient = form.recipient.value.trim();
    if (!recipient) {
      formNotice.show("Enter the recipient's username.");
      form.recipient.focus();
      return;
    }
    let amount;
    try {
      amount = parseCpt(form.amount.value);
    } catch (error) {
      if (!(error instanceof AmountError)) throw error;
      formNotice.show(error.message);
      form.amount.focus();
      return;
    }
    const memo = form.memo.value.trim();
    const ok = await confirmAction({
      title: "Send this transfer?",
      text: `Send ${formatCpt(amount)} to ${recipient}. A transfer cannot be undone.`,
      confirm: `Send ${formatCpt(amount)}`,
      extra: dl([["To", recipient], ["Amount", `${formatCpt(amount)} (${amount.toString()} µCPT)`], memo ? ["Memo", memo] : null]),
    });
    if (!ok) return;
    // The same key while this transfer is retried after a lost answer: the money never moves twice.
    const idempotency_key = transferKey.keyFor(`${recipient}\n${amount}\n${memo}`);
    const body = { recipient, amount_micro: amount, memo, idempotency_key };
    await busy(review, async () => {
      try {
        const reply = await post("/api/v1/wallet/transfer", body);
        transferKey.settle();
        formNotice.show(`Sent ${formatCpt(reply.amount_micro)} to ${reply.recipient}. Your balance is now ${formatCpt(reply.new_balance_micro)}.`, "success");
        form.reset();
        await refresh();
      } catch (error) {
        const unknown = transferKey.settle(error);
        formNotice.show(unknown ? LOST_ANSWER : error.message);
        if (unknown) await refresh().catch(() => {});
      }
    });
  });

  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "My wallet")),
    notice,
    h("div", { class: "wallet-grid" },
      h("section", { class: "card", "aria-labelledby": "balance-title" }, h("h2", { id: "balance-title" }, "Balance"), balance, h("p", { class: "muted" }, `Signed in as ${ctx.me.username}. 1 CPT = 1,000,000 µCPT.`)),
      h("section", { class: "card", "aria-labelledby": "transfer-title" }, h("h2", { id: "transfer-title" }, "Send CPT"), form),
    ),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "History"), history.el),
  );
  refresh().catch((error) => notice.show(error.message));
}
