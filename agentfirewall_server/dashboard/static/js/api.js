// The JSON API client: same-origin fetch with the session cookie, X-CSRF-Token on writes.
const body = document.body;
export const API = body.dataset.api;
export const BASE = body.dataset.base;

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, data) {
    super((data && data.message) || `request failed with status ${status}`);
    this.status = status;
    this.data = data || {};
  }
}

export function apiUrl(path, query, root = API) {
  const url = new URL(root + path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

// An agent's page. With its id, the page shows that agent: a revoked agent's name may be
// registered again, and a name alone stands for the agent not revoked (as in the API).
export function agentUrl(name, id) {
  const page = `${BASE}/agents/${encodeURIComponent(name || "")}`;
  return id ? `${page}?id=${encodeURIComponent(id)}` : page;
}

export function signInUrl() {
  const here = window.location.pathname + window.location.search;
  return `${BASE}/login?next=${encodeURIComponent(here)}`;
}

// The one way a signed-in page leaves for the sign-in page, once: when a session ends,
// every call in flight comes back 401 at about the same moment, and each navigation would
// cut the one before short (a sign-out adds its own). `replace`: Back must not return to
// the page that can no longer be shown, only to be sent away again.
let leaving = false;

export function leaveForSignIn({ comeBack = true } = {}) {
  if (leaving) return;
  leaving = true;
  window.location.replace(comeBack ? signInUrl() : `${BASE}/login`);
}

const sessionEnded = () => new ApiError(401, { message: "your session has ended: sign in again" });

// `root` is the API by default; the sandbox's endpoint lives under the dashboard (BASE).
// A 401 on a signed-in page leaves for the sign-in page, unless `leaveOn401` is false.
// `writes`: the call changes something, X-CSRF-Token is sent (every method but GET, and a
// GET that records what it does: the audit export). `file`: the answer is a file, a Blob.
export async function api(path, { method = "GET", json, query, root = API, leaveOn401 = true, writes = method !== "GET", file = false } = {}) {
  if (leaving) throw sessionEnded(); // the page is on its way out: ask nothing more
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (writes && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(apiUrl(path, query, root), init);
  if (response.status === 401 && body.dataset.signedIn === "yes" && leaveOn401) {
    leaveForSignIn();
    throw sessionEnded();
  }
  if (response.status === 204) return null;
  if (file && response.ok) return response.blob();
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : { message: await response.text() };
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
