// The REST client: bearer token from sessionStorage, one shared refresh when a call answers 401, errors
// turned into ApiError carrying the API's own sentence, and *_micro amounts parsed exactly as BigInt.

const SESSION_KEY = "hivemind.session";
const MONEY_KEY = /_micro(_|$)/;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- the signed-in session ---------------------------------------------------------------------------------
export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch {
      return null;
    }
  },
  set(pair) {
    const value = {
      access_token: pair.access_token,
      refresh_token: pair.refresh_token,
      username: pair.username,
      role: pair.role,
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
    return value;
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
  isAdmin() {
    return this.get()?.role === "admin";
  },
};

/** Fired on window when the session ends (refresh refused): detail is the sentence to show. */
export const SIGNED_OUT = "hivemind:signed-out";

// -- exact JSON ------------------------------------------------------------------------------------------
/** JSON.parse that reads every money field (name ending _micro) as a BigInt from its source digits. */
export function parseJson(text) {
  return JSON.parse(text, function (key, value, context) {
    if (typeof value === "number" && MONEY_KEY.test(key)) {
      if (context && typeof context.source === "string" && /^-?\d+$/.test(context.source)) {
        return BigInt(context.source);
      }
      if (Number.isSafeInteger(value)) return BigInt(value);
    }
    return value;
  });
}

/** JSON.stringify that writes BigInt amounts as plain JSON integers, digit for digit. */
export function toJson(value) {
  return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? JSON.rawJSON(v.toString()) : v));
}

// -- calls -----------------------------------------------------------------------------------------------
let refreshing = null;

async function refreshSession() {
  const current = session.get();
  if (!current?.refresh_token) return false;
  try {
    const response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refresh_token: current.refresh_token }),
    });
    if (!response.ok) return false;
    session.set(parseJson(await response.text()));
    return true;
  } catch {
    return false;
  }
}

/** One refresh at a time: refresh tokens are single use, and a second use revokes the whole sign-in. */
function refreshOnce() {
  if (!refreshing) refreshing = refreshSession().finally(() => (refreshing = null));
  return refreshing;
}

function query(params) {
  if (!params) return "";
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") search.set(k, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function errorFrom(response) {
  let body = null;
  try {
    body = parseJson(await response.text());
  } catch {
    /* not JSON: fall through to the status line */
  }
  const error = body?.error;
  if (error?.message) return new ApiError(response.status, error.code, error.message);
  if (typeof body?.detail === "string") return new ApiError(response.status, "", body.detail);
  return new ApiError(
    response.status,
    "",
    `The coordinator answered ${response.status} ${response.statusText || ""}`.trim() + ".",
  );
}

/**
 * Call the API. Returns the parsed JSON (or the Response itself with {raw: true}); throws ApiError with
 * the API's sentence. A 401 triggers one refresh and one retry; if that fails the session ends.
 */
export async function api(method, path, { body, params, raw = false, auth = true } = {}) {
  for (let attempt = 0; ; attempt++) {
    const token = session.get()?.access_token;
    const headers = { Accept: "application/json" };
    if (auth && token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path + query(params), {
        method,
        headers,
        body: body === undefined ? undefined : toJson(body),
      });
    } catch {
      throw new ApiError(0, "UNAVAILABLE", "Cannot reach the coordinator. Check that it is running, then try again.");
    }
    if (response.status === 401 && auth && attempt === 0 && session.get()) {
      // Another call may have refreshed while this one was in flight: then just retry with the new token.
      if (session.get()?.access_token !== token || (await refreshOnce())) continue;
      const error = await errorFrom(response);
      session.clear();
      window.dispatchEvent(new CustomEvent(SIGNED_OUT, { detail: "Your session has ended. Sign in again." }));
      throw error;
    }
    if (!response.ok) throw await errorFrom(response);
    if (raw) return response;
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? parseJson(text) : null;
  }
}

export const get = (path, params) => api("GET", path, { params });
export const post = (path, body) => api("POST", path, { body: body ?? {} });
export const put = (path, body) => api("PUT", path, { body });

export async function signIn(username, password) {
  const pair = await api("POST", "/api/v1/auth/login", { body: { username, password }, auth: false });
  return session.set(pair);
}

export function signOut() {
  session.clear();
}

/** Fetch a file with the bearer token and hand it to the browser as a download. */
export async function download(path, fallbackName) {
  const response = await api("GET", path, { raw: true });
  const disposition = response.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="([^"]+)"/i.exec(disposition);
  const name = star ? decodeURIComponent(star[1]) : plain ? plain[1] : fallbackName;
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, size: blob.size };
}

/**
 * The idempotency key of the request a person is making (a transfer, a grant, a job): the same while they
 * retry the same request after its answer was lost (the network, or a fault inside the coordinator), so
 * the coordinator answers with the first result instead of moving money twice; a new one for any other
 * request, and after a success or a refusal.
 */
export class RetryKey {
  #fingerprint = null;
  #key = "";

  keyFor(fingerprint) {
    if (!this.#key || fingerprint !== this.#fingerprint) {
      this.#fingerprint = fingerprint;
      this.#key = crypto.randomUUID();
    }
    return this.#key;
  }

  /** Record how the call ended; returns true when its outcome is unknown (the key is then kept). */
  settle(error = null) {
    const unknown = error !== null && (!(error instanceof ApiError) || error.status === 0 || error.status >= 500);
    if (!unknown) {
      this.#fingerprint = null;
      this.#key = "";
    }
    return unknown;
  }
}

export const LOST_ANSWER =
  "The answer did not arrive, so this may have gone through. Check before trying again; sending the same request again cannot do it twice.";
