import { api } from "../api.js";
import { $, badge, clear, el, fail, formatTime, formToObject, notify, setText, show, shown } from "../dom.js";
import { latestOnly, onEvent, throttled } from "../events.js";
import { keyPrefix, showKey, wireKeyBox } from "../key-box.js";
import { can, startPage } from "../session.js";
import { wireSuggest } from "../suggest-rules.js";
import { trafficRow } from "../traffic-row.js";

const wantedId = new URLSearchParams(window.location.search).get("id");
let name = document.body.dataset.agent; // the name of the agent found, once found
let path = null; // `/agents/<id>`: names may hold characters a path cannot (`/`)
let agentId = null; // its traffic is listed by id: a revoked agent's name may be taken again

// The agent a name stands for, as the server resolves it (snapshot.py `_by_name`): the one
// not revoked, else the newest revoked one (the list is oldest first). A revoked agent's
// name may be registered again; a link with `?id=` shows that very agent.
function byName(agents) {
  let found = null;
  for (const agent of agents.filter((a) => a.name === name)) {
    if (!found || agent.status !== "revoked" || found.status === "revoked") found = agent;
  }
  return found;
}

// False (and the page says so, with no control left) when no agent has this id or name.
// The heading names the agent found, never the address: a link must not put its own words
// on the page ("/agents/Session expired - sign in again at ..."). Every control acts on
// the agent found, by its id (`path`), as its traffic does; access rules and suggestions
// are by name.
async function findAgent() {
  const { agents } = await api("/agents");
  const agent = wantedId ? agents.find((a) => a.id === wantedId) : byName(agents);
  if (agent) {
    path = `/agents/${encodeURIComponent(agent.id)}`;
    agentId = agent.id;
    name = agent.name;
    setText("#agent-h", agent.name);
    return true;
  }
  setText("#agent-h", "No such agent");
  setText("#agent-missing", `No agent has the ${wantedId ? "id" : "name"} this link gives: pick one from the list of agents.`);
  show("#agent-missing", true);
  for (const node of document.querySelectorAll("[data-agent-only]")) node.hidden = true;
  return false;
}

// The form shows saved values on load and after a save, never under the user's hands.
function fillEnforcement(agent) {
  $("#enf-level").value = agent.enforcement_level;
  $("#enf-default").value = agent.sdk_default;
  $("#enf-rate").value = agent.rate_limit_per_minute ?? "";
}

// An agent no access rule and no policy applies to is allowed everything in SDK mode.
function rulesFact(rules) {
  if (!rules) return "—";
  if (!rules.none) return `${rules.permissions} access rules, ${rules.policies} policies`;
  return el("span", { id: "agent-no-rules" }, el("span", { class: "badge badge-hold", text: "no rules" }),
    " in SDK mode this agent may do anything no rule denies: add access rules below, or install the safe-default packs on the Policies page");
}

function showAgent(agent) {
  const facts = clear($("#agent-facts"));
  const rows = [["Status", badge(agent.status)], ["Rules", rulesFact(agent.rules)], ["Environment", agent.environment],
    ["Key", keyPrefix(agent)], ["Proxy port", agent.proxy_port ?? "—"],
    ["Created", formatTime(agent.created_at)], ["Id", el("code", { text: agent.id })]];
  for (const [label, value] of rows) facts.append(el("dt", { text: label }), el("dd", {}, value));
  $("#suspend").hidden = agent.status !== "active";
  $("#activate").hidden = agent.status !== "suspended";
  for (const id of ["#rotate", "#revoke"]) $(id).hidden = agent.status === "revoked";
  if (agent.status === "revoked") showRevoked();
}

// A revoked agent is for good: nothing of it changes. Its access rules went with it; those
// under its name now (and suggestions) are for an agent that registered the name again.
function showRevoked() {
  for (const control of $("#enforcement-form").elements) control.disabled = true;
  $("#enforcement-form button[type=submit]").hidden = true;
  for (const node of document.querySelectorAll("[data-live-only]")) node.hidden = true;
  show("#agent-revoked", true);
}

function showPermissions(permissions) {
  const body = clear($("#perm-table tbody"));
  for (const rule of permissions) {
    const remove = can("admin") ? el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove rule ${rule.action_pattern}`, onclick: () => removeRule(rule) }) : null;
    body.append(el("tr", {}, el("td", { text: rule.connector }), el("td", {}, el("code", { text: rule.action_pattern })),
      el("td", {}, badge(rule.decision)), el("td", {}, remove)));
  }
  show("#perm-empty", permissions.length === 0);
}

async function removeRule(rule) {
  try { await api(`/permissions/${encodeURIComponent(rule.id)}`, { method: "DELETE" }); } catch (error) { fail(error); }
  await refresh().catch(fail);
}

const fetchAgent = latestOnly(() => Promise.all([
  api(path), api("/permissions", { query: { agent: name } }), api("/traffic", { query: { agent: agentId, limit: 20 } }),
]));

async function refresh(fill = false) {
  const answer = await fetchAgent();
  if (!answer) return;
  const [agent, perms, traffic] = answer;
  showAgent(agent);
  if (fill) fillEnforcement(agent);
  showPermissions(perms.permissions);
  const body = clear($("#agent-traffic tbody"));
  for (const record of traffic.traffic) body.append(trafficRow(record, { withAgent: false }));
  show("#agent-traffic-empty", traffic.traffic.length === 0);
}

async function loadConnectorTypes() {
  const [{ connectors }, catalogue] = await Promise.all([api("/connectors"), api("/connectors/catalogue")]);
  // Connectors this server has come first; every other known type after them.
  const configured = [...new Set(connectors.map((c) => c.type))].sort();
  const others = (catalogue.connectors || []).map((c) => c.type).filter((t) => !configured.includes(t)).sort();
  for (const select of [$("#preset-connector"), $("#rule-connector")]) {
    clear(select);
    if (configured.length) select.append(el("optgroup", { label: "Configured" }, configured.map((t) => el("option", { value: t, text: t }))));
    select.append(el("optgroup", { label: "Other types" }, others.map((t) => el("option", { value: t, text: t }))));
  }
}

const DONE = { suspend: "suspended", activate: "activated", rotate: "has a new key", revoke: "revoked" };

async function post(url, json, done) {
  try { const data = await api(url, { method: "POST", json }); notify(done); return data; } catch (error) { fail(error); return null; }
}

$("#enforcement-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = formToObject(event.currentTarget);
  // empty: the server's default (null resets a limit set before)
  data.rate_limit_per_minute = data.rate_limit_per_minute ? Number(data.rate_limit_per_minute) : null;
  try { await api(path, { method: "PATCH", json: data }); notify("Saved."); } catch (error) { fail(error); }
  await refresh(true).catch(fail);
});
$("#preset-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await post("/permissions/preset", { agent: name, ...formToObject(event.currentTarget) }, "Preset applied.");
  await refresh().catch(fail);
});
$("#rule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  if (await post("/permissions", { agent: name, ...formToObject(form) }, "Rule saved.")) form.action_pattern.value = "";
  await refresh().catch(fail);
});
for (const verb of ["suspend", "activate", "rotate", "revoke"]) {
  $(`#${verb}`).addEventListener("click", async () => {
    if (verb === "revoke" && !window.confirm(shown(`Revoke ${name}? Its key stops working for good.`))) return;
    const data = await post(`${path}/${verb}`, undefined, `${name} ${DONE[verb]}`);
    if (data && data.api_key) showKey(data.api_key);
    await refresh().catch(fail);
  });
}
wireKeyBox();

startPage(async () => {
  if (!(await findAgent())) return;
  wireSuggest(name, () => refresh().catch(fail));
  await Promise.all([refresh(true), loadConnectorTypes()]);
  onEvent("traffic", throttled(() => refresh().catch(() => {}), 1000));
  onEvent("config", throttled(() => refresh().catch(() => {}), 500));
});
