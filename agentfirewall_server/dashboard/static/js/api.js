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

export function signInUrl() {
  const here = window.location.pathname + window.location.search;
  return `${BASE}/login?next=${encodeURIComponent(here)}`;
}

// `root` is the API by default; the sandbox's endpoint lives under the dashboard (BASE).
export async function api(path, { method = "GET", json, query, root = API } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(apiUrl(path, query, root), init);
  if (response.status === 401 && body.dataset.signedIn === "yes") {
    window.location.assign(signInUrl());
    throw new ApiError(401, { message: "your session has ended: sign in again" });
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : { message: await response.text() };
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
