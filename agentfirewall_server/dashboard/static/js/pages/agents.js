import { agentUrl, api } from "../api.js";
import { $, badge, clear, el, fail, formToObject, notify, setText, show, shown, timeCell } from "../dom.js";
import { onEvent, throttled } from "../events.js";
import { keyPrefix, showKey, wireKeyBox } from "../key-box.js";
import { can, startPage } from "../session.js";

async function act(agent, verb) {
  if (verb === "revoke" && !window.confirm(shown(`Revoke ${agent.name}? Its key stops working for good.`))) return;
  try {
    const data = await api(`/agents/${encodeURIComponent(agent.id)}/${verb}`, { method: "POST" });
    if (verb === "rotate") {
      setText("#new-key-agent", agent.name);
      showKey(data.api_key);
    }
    notify(`${agent.name} ${{ suspend: "suspended", activate: "activated", rotate: "has a new key", revoke: "revoked" }[verb]}`);
  } catch (error) {
    fail(error);
  }
  await refresh().catch(fail);
}

function actions(agent) {
  if (!can("admin") || agent.status === "revoked") return el("td");
  const button = (verb, label, cls) => el("button", { type: "button", class: cls, text: label, "aria-label": `${label} ${agent.name}`, onclick: () => act(agent, verb) });
  return el("td", { class: "row-actions" },
    agent.status === "active" ? button("suspend", "Suspend") : button("activate", "Activate"),
    button("rotate", "Rotate key"), button("revoke", "Revoke", "danger"));
}

async function refresh() {
  const { agents } = await api("/agents");
  const body = clear($("#agents-table tbody"));
  for (const agent of agents) {
    body.append(el("tr", { dataset: { agent: agent.name } },
      el("td", {}, el("a", { href: agentUrl(agent.name, agent.id), text: agent.name })),
      el("td", {}, badge(agent.status)), el("td", { text: agent.environment }),
      el("td", { text: agent.enforcement_level }), el("td", {}, keyPrefix(agent)),
      timeCell(agent.created_at), actions(agent)));
  }
  show("#agents-empty", agents.length === 0);
}

$("#register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = formToObject(form);
  if (!data.name) return notify("Give the agent a name.", "error");
  if (!data.enforcement_level) delete data.enforcement_level;
  try {
    const answer = await api("/agents", { method: "POST", json: data });
    setText("#new-key-agent", answer.agent.name);
    showKey(answer.api_key);
    form.reset();
  } catch (error) {
    fail(error);
  }
  await refresh().catch(fail);
});
wireKeyBox();

startPage(async () => {
  await refresh().catch(fail);
  onEvent("config", throttled(() => refresh().catch(() => {}), 500));
});
