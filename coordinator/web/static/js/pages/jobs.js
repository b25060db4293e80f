// My jobs: the list (filter by state, page on), one job in detail with its tasks, live logs, result
// downloads and cancel; and a small form to submit a job.

import { LOST_ANSWER, RetryKey, download, get, post } from "../api.js";
import {
  badge, busy, button, confirmAction, cpt, dl, field, h, noticeArea, poll, pollMs, renderIfChanged,
  replace, select, shortId, table, timeEl,
} from "../dom.js";
import { AmountError, parseCpt } from "../money.js";

const submitKey = new RetryKey();

export const JOB_STATES = ["waiting", "queued", "running", "completed", "failed", "cancelled"];
const JOB_FINAL = new Set(["completed", "failed", "cancelled"]);
const TASK_FINAL = new Set(["accepted", "failed", "cancelled"]);

export function jobColumns(base, { owner = false } = {}) {
  return [
    { label: "Job", value: (j) => h("a", { href: `${base}/${encodeURIComponent(j.job_id)}` }, j.name || shortId(j.job_id)) },
    owner ? { label: "Owner", value: (j) => j.owner ?? j.owner_username ?? String(j.owner_id ?? "—") } : null,
    { label: "State", value: (j) => badge(j.state) },
    { label: "Tasks done", value: (j) => `${j.tasks_done ?? 0} / ${j.task_count ?? "?"}`, numeric: true },
    { label: "Charged", value: (j) => cpt(j.charged_micro), numeric: true },
    { label: "Submitted", value: (j) => timeEl(j.created_at) },
  ].filter(Boolean);
}

export function listPage(container, ctx) {
  const notice = noticeArea();
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const filter = select("Show", "state", [["", "All jobs"], ...JOB_STATES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])]);
  const more = button("Show more", () => loadMore(), { kind: "quiet", hidden: true });
  let jobs = [];
  let nextToken = "";
  const state = () => filter.querySelector("select").value;

  async function firstPage() {
    const data = await get("/api/v1/jobs", { state: state(), page_size: 25 });
    notice.clear();
    if (jobs.length <= data.jobs.length) {
      jobs = data.jobs;
      nextToken = data.next_page_token;
    } else {
      // Keep the pages already shown; refresh the rows that are on the first page.
      const fresh = new Map(data.jobs.map((j) => [j.job_id, j]));
      jobs = jobs.map((j) => fresh.get(j.job_id) || j);
      for (const j of data.jobs.reverse()) if (!jobs.some((x) => x.job_id === j.job_id)) jobs.unshift(j);
    }
    show();
  }
  async function loadMore() {
    await busy(more, async () => {
      try {
        const data = await get("/api/v1/jobs", { state: state(), page_size: 25, page_token: nextToken });
        jobs = jobs.concat(data.jobs);
        nextToken = data.next_page_token;
        show();
      } catch (error) {
        notice.show(error.message);
      }
    });
  }
  function show() {
    renderIfChanged(body, jobs, (rows) => table(jobColumns("#/jobs"), rows, { caption: "Your jobs", empty: "No jobs here yet." }));
    more.hidden = !nextToken;
  }
  filter.querySelector("select").addEventListener("change", () => {
    jobs = [];
    nextToken = "";
    firstPage().catch((error) => notice.show(error.message));
  });

  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "My jobs"), ctx.isAdmin ? h("a", { class: "button button-quiet", href: "#/admin/jobs" }, "All jobs (admin)") : null),
    notice,
    h("div", { class: "toolbar" }, filter),
    body,
    more,
    submitForm(ctx),
  );
  return poll(() => firstPage().catch((error) => notice.show(error.message)), pollMs(4000));
}

// -- submitting -----------------------------------------------------------------------------------------
function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

function submitForm(ctx) {
  const notice = noticeArea();
  const submit = h("button", { type: "submit", class: "button button-primary" }, "Submit job");
  const form = h(
    "form",
    { class: "form form-grid", novalidate: true },
    notice,
    field("Name", { name: "name", maxlength: "200" }),
    field("Image", { name: "image", value: "hivemind/busybox:latest", required: true, spellcheck: "false" }, "A Docker image, e.g. hivemind/python:3.11-minimal."),
    field("Command", { tag: "textarea", name: "command", rows: "3", required: true, spellcheck: "false" }, "One argument per line, e.g. sh, -c, echo hello > out.txt."),
    field("Output files", { tag: "textarea", name: "outputs", rows: "2", spellcheck: "false" }, "Paths inside the work directory to keep, one per line."),
    field("Budget (CPT)", { name: "budget", inputmode: "decimal", value: "1", required: true }, "The most the job may cost; held in escrow, the rest is refunded."),
    field("Replicas", { name: "replicas", type: "number", min: "1", max: "10", value: "1" }, "How many volunteers run each task; 2 or more are compared."),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let budget;
    try {
      budget = parseCpt(form.budget.value);
    } catch (error) {
      if (!(error instanceof AmountError)) throw error;
      notice.show(`Budget: ${error.message}`);
      form.budget.focus();
      return;
    }
    const spec = {
      name: form.name.value.trim(),
      image: form.image.value.trim(),
      command: lines(form.command.value),
      output_paths: lines(form.outputs.value),
      max_budget_micro: budget,
      replicas: Number.parseInt(form.replicas.value || "1", 10),
    };
    // The same key while this job is retried after a lost answer: never submitted (or paid for) twice.
    spec.idempotency_key = submitKey.keyFor(JSON.stringify(spec, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
    await busy(submit, async () => {
      try {
        const reply = await post("/api/v1/jobs", spec);
        submitKey.settle();
        ctx.navigate(`/jobs/${encodeURIComponent(reply.job_id)}`);
      } catch (error) {
        notice.show(submitKey.settle(error) ? LOST_ANSWER : error.message);
      }
    });
  });
  return h("details", { class: "card submit-card" }, h("summary", {}, "Submit a job"), form);
}

// -- one job --------------------------------------------------------------------------------------------
/** argv as a person would type it in a shell: arguments with spaces or quotes are single-quoted. */
export function shellWords(argv) {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

export function jobFacts(job) {
  const spec = job.spec || {};
  return dl([
    ["State", badge(job.state)],
    job.failure_reason ? ["Why", job.failure_reason] : null,
    ["Job id", h("code", {}, job.job_id)],
    ["Tasks", `${job.tasks_done} done, ${job.tasks_failed} failed, of ${job.task_count}`],
    ["Image", h("code", {}, spec.image || "—")],
    ["Command", h("code", {}, shellWords(spec.command || []) || "—")],
    ["Held in escrow", cpt(job.escrow_micro)],
    ["Charged", cpt(job.charged_micro)],
    ["Refunded", cpt(job.refunded_micro)],
    ["Submitted", timeEl(job.created_at)],
    ["Finished", timeEl(job.finished_at)],
  ]);
}

function bytes(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function downloadsFor(jobId, task, notice) {
  const files = [...(task.outputs || []).map((o) => ({ path: o.path, label: o.path, size: o.size }))];
  if (task.stdout_sha256) files.push({ path: "@stdout", label: "stdout" });
  if (!files.length) return "—";
  return h(
    "ul",
    { class: "inline-list" },
    files.map((f) => {
      const b = button(["Download ", f.label], async () => {
        await busy(b, async () => {
          try {
            const got = await download(`/api/v1/jobs/${encodeURIComponent(jobId)}/tasks/${task.index}/outputs/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.label);
            notice.show(`Downloaded ${got.name} (${bytes(got.size)}).`, "success");
          } catch (error) {
            notice.show(error.message);
          }
        });
      }, { kind: "small", "aria-label": `Download ${f.label} of task ${task.index}${f.size !== undefined ? `, ${bytes(f.size)}` : ""}` });
      return h("li", {}, b);
    }),
  );
}

export function taskTable(jobId, tasks, notice) {
  return table(
    [
      { label: "Task", value: (t) => `#${t.index}` },
      { label: "State", value: (t) => badge(t.state) },
      { label: "Exit code", value: (t) => (t.exit_code ?? "—").toString(), numeric: true },
      { label: "Attempts", value: (t) => String(t.attempts ?? 0), numeric: true },
      { label: "Charged", value: (t) => cpt(t.charged_micro), numeric: true },
      { label: "Results", value: (t) => downloadsFor(jobId, t, notice) },
      { label: "Note", value: (t) => t.failure_reason || "" },
    ],
    tasks,
    { caption: "Tasks", empty: "This job has no tasks." },
  );
}

/** The live log of one task: asks for lines after the last one seen until the task has ended. */
export function logViewer(jobId, tasksRef) {
  const picker = select("Task", "task", []);
  const pickerSelect = picker.querySelector("select");
  const output = h("pre", { class: "log-lines" });
  const status = h("p", { class: "muted log-status", role: "status" }, "");
  const region = h("div", { class: "log", role: "log", tabindex: "0", "aria-label": "Task log" }, output);
  let index = 0;
  let afterSeq = 0;
  let finished = false;

  function setOptions(tasks) {
    const wanted = tasks.map((t) => String(t.index)).join(",");
    if (pickerSelect.dataset.indexes === wanted) return;
    pickerSelect.dataset.indexes = wanted;
    replace(pickerSelect, tasks.map((t) => h("option", { value: String(t.index), selected: t.index === index }, `Task #${t.index}`)));
    picker.hidden = tasks.length < 2;
  }
  pickerSelect.addEventListener("change", () => {
    index = Number(pickerSelect.value);
    afterSeq = 0;
    finished = false;
    replace(output);
    region.setAttribute("aria-label", `Log of task ${index}`);
  });

  async function tick() {
    const tasks = tasksRef();
    if (!tasks) return;
    setOptions(tasks);
    if (finished) return;
    const task = tasks.find((t) => t.index === index);
    const ended = task && TASK_FINAL.has(task.state);
    const rows = await get(`/api/v1/jobs/${encodeURIComponent(jobId)}/tasks/${index}/logs`, { after_seq: afterSeq, limit: 500 });
    if (rows.length) {
      const atBottom = region.scrollHeight - region.scrollTop - region.clientHeight < 40;
      for (const line of rows) {
        output.append(h("span", { class: `log-line log-${line.stream}` }, line.text, "\n"));
        afterSeq = line.seq;
      }
      if (atBottom) region.scrollTop = region.scrollHeight;
    }
    if (ended && !rows.length) {
      finished = true;
      status.textContent = output.childElementCount ? `Task #${index} has ended (${task.state}).` : `Task #${index} has ended (${task.state}) and wrote no log.`;
    } else {
      status.textContent = output.childElementCount ? "Following the log…" : "Waiting for the first lines…";
    }
  }
  const el = h("section", { class: "card", "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Logs"), picker, region, status);
  return { el, tick };
}

export function detailPage(container, ctx, jobId) {
  return jobDetail(container, ctx, jobId, { base: "/api/v1/jobs", back: ["#/jobs", "My jobs"] });
}

/** Shared by the owner's and the admin's job page; the admin one adds its own sections and actions. */
export function jobDetail(container, ctx, jobId, { base, back, extraActions = () => [], extraSections = () => [] }) {
  const notice = noticeArea();
  const title = h("h1", {}, "Job");
  const facts = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const tasksEl = h("div", {});
  const extra = h("div", {});
  const actions = h("div", { class: "actions" });
  let job = null;
  const logs = logViewer(jobId, () => job?.tasks);

  const cancel = button("Cancel job", async () => {
    const ok = await confirmAction({
      title: `Cancel ${job.name || "this job"}?`,
      text: "Its running tasks are stopped and what was not spent is refunded to the owner.",
      confirm: "Cancel job",
      danger: true,
    });
    if (!ok) return;
    await busy(cancel, async () => {
      try {
        const reply = await post(`${base}/${encodeURIComponent(jobId)}/cancel`);
        notice.show(`${reply.message ?? "Cancelled."} Refunded ${cpt(reply.refunded_micro ?? 0n)}.`, "success");
        await load();
      } catch (error) {
        notice.show(error.message);
      }
    });
  }, { kind: "danger", hidden: true });

  container.append(
    h("p", { class: "breadcrumb" }, h("a", { href: back[0] }, back[1])),
    h("div", { class: "page-head" }, title, actions),
    notice,
    h("section", { class: "card", "aria-label": "Job summary" }, facts),
    h("section", { "aria-labelledby": "tasks-title" }, h("h2", { id: "tasks-title" }, "Tasks"), tasksEl),
    extra,
    logs.el,
  );
  // Built once, so a poll never takes focus away from a button; each may have update(job).
  const extras = extraActions(() => job, { notice, reload: () => load() });
  replace(actions, ...extras, cancel);

  async function load() {
    job = await get(`${base}/${encodeURIComponent(jobId)}`);
    title.textContent = job.name ? `Job ${job.name}` : `Job ${shortId(job.job_id)}`;
    renderIfChanged(facts, job, jobFacts);
    renderIfChanged(tasksEl, job.tasks || [], (tasks) => taskTable(jobId, tasks, notice));
    renderIfChanged(extra, job, (j) => extraSections(j));
    cancel.hidden = JOB_FINAL.has(job.state);
    for (const el of extras) el.update?.(job);
  }
  return poll(async () => {
    try {
      await load();
      await logs.tick();
    } catch (error) {
      notice.show(error.message);
    }
  }, pollMs(2000));
}
