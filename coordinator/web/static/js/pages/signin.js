// Sign-in and account creation: the only pages shown to someone who is not signed in.

import { api, signIn } from "../api.js";
import { busy, field, h, noticeArea } from "../dom.js";

function card(container, title, intro, form, footer) {
  container.classList.add("page-narrow");
  container.append(
    h(
      "section",
      { class: "card auth-card", "aria-labelledby": "auth-title" },
      hexagon(),
      h("h1", { id: "auth-title" }, title),
      h("p", { class: "lead" }, intro),
      form,
      footer,
    ),
  );
}

function hexagon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 64 64");
  svg.setAttribute("class", "auth-mark");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const outer = document.createElementNS(ns, "path");
  outer.setAttribute("d", "M32 3 57 17.5v29L32 61 7 46.5v-29z");
  outer.setAttribute("fill", "#b45309");
  const inner = document.createElementNS(ns, "path");
  inner.setAttribute("d", "M32 14 47.6 23v18L32 50 16.4 41V23z");
  inner.setAttribute("fill", "none");
  inner.setAttribute("stroke", "#fef3c7");
  inner.setAttribute("stroke-width", "4");
  svg.append(outer, inner);
  return svg;
}

export function signInPage(container, ctx) {
  const notice = noticeArea();
  const submit = h("button", { type: "submit", class: "button button-primary button-wide" }, "Sign in");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    notice,
    field("Username", { name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" }),
    field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      notice.show("Enter your username and password.");
      (username ? form.password : form.username).focus();
      return;
    }
    await busy(submit, async () => {
      try {
        await signIn(username, password);
        ctx.navigate("/overview");
      } catch (error) {
        notice.show(error.message);
        form.password.select();
      }
    });
  });
  card(
    container,
    "Sign in to HiveMind",
    "Watch your nodes and jobs, and manage your CPT.",
    form,
    h("p", { class: "auth-footer" }, "New here? ", h("a", { href: "#/register" }, "Create an account")),
  );
  const prefill = sessionStorage.getItem("hivemind.prefill");
  if (prefill) {
    form.username.value = prefill;
    sessionStorage.removeItem("hivemind.prefill");
  }
  const welcome = sessionStorage.getItem("hivemind.notice");
  sessionStorage.removeItem("hivemind.notice");
  if (welcome || ctx.notice) notice.show(welcome || ctx.notice, welcome ? "success" : "info");
  (form.username.value ? form.password : form.username).focus();
}

export function registerPage(container, ctx) {
  const notice = noticeArea();
  const submit = h("button", { type: "submit", class: "button button-primary button-wide" }, "Create account");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    notice,
    field("Username", { name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" }, "3 to 32 characters: lowercase letters, digits, - and _."),
    field("Email", { name: "email", type: "email", autocomplete: "email", required: true }),
    field("Password", { name: "password", type: "password", autocomplete: "new-password", required: true }, "At least 10 characters."),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, async () => {
      try {
        const body = { username: form.username.value.trim(), email: form.email.value.trim(), password: form.password.value };
        const reply = await api("POST", "/api/v1/auth/register", { body, auth: false });
        sessionStorage.setItem("hivemind.prefill", reply.username);
        sessionStorage.setItem("hivemind.notice", reply.message);
        ctx.navigate("/signin");
      } catch (error) {
        notice.show(error.message);
      }
    });
  });
  card(
    container,
    "Create a HiveMind account",
    "Run jobs on volunteers' computers, or earn CPT by sharing yours.",
    form,
    h("p", { class: "auth-footer" }, "Already have an account? ", h("a", { href: "#/signin" }, "Sign in")),
  );
}
