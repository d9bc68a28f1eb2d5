// DOM helpers. Data only ever reaches the page as text (textContent), never as HTML, and
// as what it is: characters that are invisible or change how text around them is shown
// (control and format characters: bidirectional overrides, zero-width, tags; line and
// paragraph separators; lone surrogates) are written as their escapes, as `tf` and Slack
// show them (agentfirewall/display.py), so `acme/\u202eipa` never reads as `acme/api`.
// Every text a page shows goes through `shown`: by `el` (its `text` and the attributes a
// person reads or hears, SHOWN_ATTRIBUTES), `append`, `setText` and `notify`; no other
// script sets textContent (tests/dashboard/test_hidden_characters.py checks it). A form
// field's value is the exception: it is what is saved back, so it stays as stored.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu;

function escapeOf(char) {
  if (char === "\n" || char === "\t") return char; // layout a page already shows as space
  const code = char.codePointAt(0);
  if (code < 0x100) return `\\x${code.toString(16).padStart(2, "0")}`;
  if (code < 0x10000) return `\\u${code.toString(16).padStart(4, "0")}`;
  return `\\U${code.toString(16).padStart(8, "0")}`;
}

export function shown(value) {
  return String(value).replace(HIDDEN, escapeOf);
}

// Attributes shown as a tooltip or read out by a screen reader, written as text is.
const SHOWN_ATTRIBUTES = new Set(["title", "aria-label", "placeholder", "alt", "label"]);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = shown(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (SHOWN_ATTRIBUTES.has(key)) node.setAttribute(key, shown(value));
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(shown(child)));
  }
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function setText(selector, value) {
  const node = typeof selector === "string" ? $(selector) : selector;
  if (node) node.textContent = value === undefined || value === null ? "" : shown(value);
}

export function show(node, visible) {
  const target = typeof node === "string" ? $(node) : node;
  if (target) target.hidden = !visible;
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function timeCell(iso) {
  return el("td", {}, el("time", { datetime: iso || "", text: formatTime(iso) }));
}

const OUTCOME_CLASS = {
  allow: "badge-allow", allowed: "badge-allow", approved: "badge-allow", active: "badge-allow",
  executed: "badge-allow", deny: "badge-deny", denied: "badge-deny", killed: "badge-deny", revoked: "badge-deny",
  require_approval: "badge-hold", pending_approval: "badge-hold", pending: "badge-hold",
  suspended: "badge-hold", expired: "badge-muted", enabled: "badge-allow", disabled: "badge-muted",
  online: "badge-allow", offline: "badge-deny", low: "badge-allow", medium: "badge-hold", high: "badge-deny",
};

export function badge(value) {
  const text = value === undefined || value === null ? "" : String(value);
  return el("span", { class: `badge ${OUTCOME_CLASS[text] || ""}`, text });
}

// A form's fields by name, trimmed; a person's password as typed: its spaces are part of
// it (trimmed, a password with one could never be set or used). A credential pasted in a
// password field (a token, a signing secret) is trimmed: none has spaces at its ends.
export function formToObject(form) {
  const data = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (typeof value !== "string") continue;
    data[key] = /^password\d*$/.test(key) ? value : value.trim();
  }
  return data;
}

let noticeTimer = null;

export function notify(message, kind = "info") {
  const box = $("#notice");
  if (!box) return;
  box.textContent = shown(message);
  box.className = `notice notice-${kind}`;
  box.hidden = false;
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 5000);
}

const ROLES = ["viewer", "member", "admin", "owner"];

// A refusal for a role names the roles once: the server's message usually does already.
export function errorMessage(error) {
  const data = (error && error.data) || {};
  const message = (error && error.message) || String(error);
  const unsaid = ROLES.includes(data.required_role) && !message.includes(`you are ${data.your_role}`);
  if (data.error === "forbidden" && unsaid) {
    return `${message} (needs ${data.required_role}, you are ${data.your_role})`;
  }
  return message;
}

export function fail(error) {
  notify(errorMessage(error), "error");
}
