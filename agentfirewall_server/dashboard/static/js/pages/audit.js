import { api, apiUrl } from "../api.js";
import { $, clear, el, fail, formToObject, setText, show, timeCell } from "../dom.js";
import { startPage } from "../session.js";

const PAGE_SIZE = 100;
const state = { filters: {}, before: null, pages: [] };

function toIso(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function summary(data) {
  if (data === null || data === undefined) return "";
  const text = typeof data === "string" ? data : JSON.stringify(data);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

async function load() {
  const data = await api("/audit", { query: { ...state.filters, limit: PAGE_SIZE, before: state.before } });
  const body = clear($("#audit-table tbody"));
  for (const event of data.events) {
    body.append(el("tr", {}, el("td", { text: event.id }), timeCell(event.created_at), el("td", {}, el("code", { text: event.event_type })),
      el("td", { text: event.actor || "" }), el("td", { text: event.agent || "" }), el("td", { class: "wrap", text: event.subject || "" }),
      el("td", { class: "wrap", title: typeof event.data === "string" ? event.data : JSON.stringify(event.data), text: summary(event.data) })));
  }
  show("#audit-empty", data.events.length === 0);
  const last = data.events[data.events.length - 1];
  state.next = data.events.length === PAGE_SIZE && last ? last.id : null;
  $("#older").disabled = !state.next;
  $("#newest").disabled = !state.before;
}

async function verify() {
  const result = await api("/audit/verify");
  const box = $("#verify-result");
  box.className = result.ok ? "text-allow" : "text-deny";
  setText(box, result.ok
    ? `✓ Chain intact: ${result.events_checked} events checked.`
    : `✗ Chain broken at event ${result.first_bad_event}: ${result.problem} (${result.events_checked} events checked).`);
}

const EXPORTS = { csv: "#export-csv", jsonl: "#export-jsonl" };

// (each link names what a script with a token fetches)
function updateExports() {
  for (const [format, link] of Object.entries(EXPORTS)) {
    $(link).href = apiUrl("/audit/export", { format, ...state.filters }).toString();
  }
}

// The export records an event and signs a checkpoint: it is fetched with the CSRF token
// (a link is followed from any site, the server refuses a session's export without it)
// and saved as the file it is.
async function download(format) {
  const file = await api("/audit/export", { query: { format, ...state.filters }, writes: true, file: true });
  const href = URL.createObjectURL(file);
  el("a", { href, download: `audit.${format}` }).click();
  window.setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

$("#audit-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = formToObject(event.currentTarget);
  state.filters = { event_type: data.event_type, agent: data.agent, since: toIso(data.since), until: toIso(data.until) };
  state.before = null;
  updateExports();
  load().catch(fail);
});
$("#older").addEventListener("click", () => { state.before = state.next; load().catch(fail); });
$("#newest").addEventListener("click", () => { state.before = null; load().catch(fail); });
$("#verify").addEventListener("click", () => verify().catch(fail));
for (const [format, link] of Object.entries(EXPORTS)) {
  $(link).addEventListener("click", (event) => { event.preventDefault(); download(format).catch(fail); });
}

startPage(async () => {
  updateExports();
  await Promise.all([load(), verify()]);
});
