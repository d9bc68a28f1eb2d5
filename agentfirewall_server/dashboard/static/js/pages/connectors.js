import { api } from "../api.js";
import { $, badge, clear, el, fail, formatTime, formToObject, notify, setText, show, shown } from "../dom.js";
import { onEvent, throttled } from "../events.js";
import { can, startPage } from "../session.js";
import { clearOptionErrors, editButton, open, optionFields, optionsEditor, optionsText, optionValues, showOptionError } from "../connector-options.js";

let catalogue = [];

function knownOptions(type) {
  const entry = catalogue.find((c) => c.type === type);
  return (entry && entry.options) || {};
}

function actionList(type) {
  const entry = catalogue.find((c) => c.type === type);
  const actions = (entry && entry.actions) || [];
  const list = el("ul", { class: "action-list" });
  for (const a of actions) {
    list.append(el("li", {}, el("code", { text: a.type }), " ", el("span", { class: "muted small", text: `${a.method || ""} ${a.path || ""}` }), " ", badge(a.risk)));
  }
  return el("details", {}, el("summary", { text: `${actions.length} actions` }), list);
}

async function remove(connector) {
  if (!window.confirm(shown(`Remove ${connector.id}? Its credential is deleted.`))) return;
  try { await api(`/connectors/${encodeURIComponent(connector.id)}`, { method: "DELETE" }); notify(`${connector.id} removed`); } catch (error) { fail(error); }
  await refresh().catch(fail);
}

function optionsPart(connector) {
  const known = knownOptions(connector.type);
  if (!can("admin") || Object.keys(known).length === 0) return [];
  const form = optionsEditor(connector, known, () => refresh());
  return [editButton(connector, form), form];
}

function connectorCard(connector, online) {
  const hasOptions = Object.keys(knownOptions(connector.type)).length > 0 || Object.keys(connector.options || {}).length > 0;
  const [toggle, editor] = optionsPart(connector);
  return el("article", { class: "card connector", dataset: { connector: connector.id } },
    el("header", {}, el("strong", { text: connector.name || connector.type }), " ",
      connector.name && connector.name !== connector.id ? el("code", { text: connector.id }) : null, " ",
      el("span", { class: `badge ${online ? "badge-allow" : "badge-muted"}`, text: online ? "Gateway online" : "Gateway offline" })),
    el("dl", { class: "facts" },
      el("dt", { text: "Type" }), el("dd", { text: connector.type }),
      el("dt", { text: "Domains" }), el("dd", { class: "wrap", text: (connector.domains || []).join(", ") }),
      el("dt", { text: "Credential" }), el("dd", { text: connector.has_credential ? "stored (hidden)" : "none" }),
      hasOptions ? [el("dt", { text: "Options" }), el("dd", { class: "wrap connector-options", text: optionsText(connector.options) })] : null,
      el("dt", { text: "Added" }), el("dd", { text: formatTime(connector.created_at) })),
    actionList(connector.type),
    can("admin") ? el("div", { class: "actions" }, toggle || null,
      el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${connector.id}`, onclick: () => remove(connector) })) : null,
    editor || null);
}

// Option editors open while the list refreshes stay open, with what was typed.
function openEditors() {
  const drafts = new Map();
  for (const form of document.querySelectorAll("#connectors form.options-editor:not([hidden])")) {
    drafts.set(form.closest("article").dataset.connector, optionValues(form, ""));
  }
  return drafts;
}

async function refresh() {
  const [{ connectors }, status] = await Promise.all([api("/connectors"), api("/status")]);
  const online = Boolean(status.gateway && status.gateway.online);
  const gateway = $("#gateway-badge");
  setText(gateway, online ? "Gateway online" : "Gateway offline");
  gateway.className = `badge ${online ? "badge-allow" : "badge-deny"}`;
  setText("#gateway-detail", status.gateway && status.gateway.last_heartbeat ? `last heartbeat ${formatTime(status.gateway.last_heartbeat)}` : "no heartbeat yet");
  const drafts = openEditors();
  const list = clear($("#connectors"));
  for (const connector of connectors) list.append(connectorCard(connector, online));
  for (const [id, values] of drafts) {
    const form = list.querySelector(`article[data-connector="${CSS.escape(id)}"] form.options-editor`);
    if (form) open(form, values);
  }
  show("#connectors-empty", connectors.length === 0);
}

async function loadCatalogue() {
  const data = await api("/connectors/catalogue");
  catalogue = data.connectors || [];
  const select = clear($("#c-type"));
  const box = clear($("#catalogue"));
  for (const entry of catalogue) {
    select.append(el("option", { value: entry.type, text: entry.type }));
    const options = Object.entries(entry.options || {});
    box.append(el("details", { class: "catalogue-entry" },
      el("summary", {}, el("strong", { text: entry.type }), " ", el("span", { class: "muted small", text: (entry.domains || []).join(", ") })),
      options.length ? el("p", { class: "small" }, "Options: ", options.flatMap(([key, what], i) => [i ? "; " : "", el("code", { text: key }), ` — ${what}`])) : null,
      actionList(entry.type).querySelector("ul")));
  }
  showAddOptions();
}

// The add form shows an input per option of the selected type.
function showAddOptions() {
  const box = clear($("#c-options"));
  box.append(...optionFields("c-opt", knownOptions($("#c-type").value)));
}

$("#c-type").addEventListener("change", showAddOptions);

$("#connector-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = formToObject(form);
  const body = { type: data.type };
  if (data.name) body.name = data.name;
  if (data.token) body.token = data.token;
  if (data.domains) body.domains = data.domains.split(",").map((d) => d.trim()).filter(Boolean);
  if (data.auth_type) body.auth_type = data.auth_type;
  if (data.auth_header) body.auth_header = data.auth_header;
  const options = optionValues($("#c-options"));
  if (Object.keys(options).length) body.options = options;
  clearOptionErrors(form);
  try {
    const created = await api("/connectors", { method: "POST", json: body });
    notify(`Added ${created.id}`);
    form.reset();
    showAddOptions();
  } catch (error) {
    showOptionError(form, error);
  } finally {
    form.token.value = "";
  }
  await refresh().catch(fail);
});

$("#connector-form fieldset").disabled = false; // (disabled until handled: see login.js)

startPage(async () => {
  await loadCatalogue();
  await refresh().catch(fail);
  onEvent("config", throttled(() => refresh().catch(() => {}), 500));
});
