// Live updates: one EventSource on GET /api/v1/events, handlers per event type.
import { API, api } from "./api.js";

const handlers = new Map();
let source = null;

function connect() {
  if (source || typeof EventSource === "undefined") return;
  source = new EventSource(`${API}/events`, { withCredentials: true });
  source.addEventListener("error", closed);
  for (const type of handlers.keys()) listen(type);
}

// The server ends a stream with its session (signed out, expired, a role or password
// changed): the browser's reconnection is refused and the stream closes for good. Asking
// who is signed in then takes the page to the sign-in page (a 401: api.js, once); a stream
// refused for another reason (a restart) is opened again a little later.
function closed() {
  if (!source || source.readyState !== EventSource.CLOSED) return; // (reconnecting by itself)
  source = null;
  api("/auth/me").then(() => true, (error) => error.status !== 401)
    .then((again) => { if (again) window.setTimeout(connect, 5000); });
}

function listen(type) {
  source.addEventListener(type, (event) => {
    let data = null;
    try { data = JSON.parse(event.data); } catch { data = event.data; }
    for (const handler of handlers.get(type) || []) handler(data);
  });
}

export function onEvent(type, handler) {
  const first = !handlers.has(type);
  if (first) handlers.set(type, []);
  handlers.get(type).push(handler);
  if (source && first) listen(type);
  connect();
}

// Calls `refresh` at most once per `wait` ms however many events arrive.
export function throttled(refresh, wait = 500) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = window.setTimeout(() => { timer = null; refresh(); }, wait);
  };
}

window.addEventListener("pagehide", () => { if (source) source.close(); });

// Wraps a loader so only the answer of the latest call is used: an older request that
// finishes last must not paint stale data over newer data. Superseded calls give null.
export function latestOnly(load) {
  let seq = 0;
  return async (...args) => {
    const mine = ++seq;
    const data = await load(...args);
    return mine === seq ? data : null;
  };
}
