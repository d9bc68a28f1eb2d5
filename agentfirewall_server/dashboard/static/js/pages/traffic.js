import { api } from "../api.js";
import { $, clear, fail, formToObject, show } from "../dom.js";
import { latestOnly, onEvent, throttled } from "../events.js";
import { startPage } from "../session.js";
import { trafficRow } from "../traffic-row.js";

const PAGE_SIZE = 50;
const state = { filters: {}, before: null, next: null };

const fetchTraffic = latestOnly((query) => api("/traffic", { query }));

async function load() {
  const data = await fetchTraffic({ ...state.filters, limit: PAGE_SIZE, before: state.before });
  if (!data) return;
  const body = clear($("#traffic-table tbody"));
  for (const record of data.traffic) body.append(trafficRow(record));
  show("#traffic-empty", data.traffic.length === 0);
  state.next = data.next_before || null;
  $("#older").disabled = !state.next;
  $("#newest").disabled = !state.before;
}

function readFiltersFromUrl() {
  const params = new URLSearchParams(window.location.search);
  for (const name of ["agent", "connector", "action", "decision", "shadow", "status"]) {
    const value = params.get(name);
    if (value) { state.filters[name] = value; $(`#f-${name}`).value = value; }
  }
}

$("#traffic-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.filters = formToObject(event.currentTarget);
  state.before = null;
  const url = new URL(window.location.href);
  url.search = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v)).toString();
  window.history.replaceState(null, "", url);
  load().catch(fail);
});
$("#older").addEventListener("click", () => { state.before = state.next; load().catch(fail); });
$("#newest").addEventListener("click", () => { state.before = null; load().catch(fail); });

startPage(async () => {
  readFiltersFromUrl();
  await load();
  // Live: new records appear while looking at the newest page.
  onEvent("traffic", throttled(() => {
    if ($("#live").checked && !state.before) load().catch(() => {});
  }, 700));
});
