import { agentUrl, api } from "../api.js";
import { drawChart, fromHourly, SERIES } from "../chart.js";
import { $, badge, clear, el, formatTime, setText } from "../dom.js";
import { latestOnly, onEvent, throttled } from "../events.js";
import { keyPrefix } from "../key-box.js";
import { killSwitchName } from "../kill-switch.js";
import { startPage } from "../session.js";

function showStatus(status) {
  const gateway = status.gateway || {};
  $("#gateway-state").replaceChildren(badge(gateway.online ? "online" : "offline"));
  setText("#gateway-detail", gateway.last_heartbeat ? `Last heartbeat ${formatTime(gateway.last_heartbeat)}` : "No heartbeat yet");
  setText("#agents-count", status.agents.total);
  setText("#agents-detail", `${status.agents.active} active`);
  setText("#approvals-count", status.approvals_pending);
  const kills = status.kill_switches || [];
  setText("#kill-state", kills.length ? "ACTIVE" : "off");
  $("#kill-state").className = kills.length ? "big text-deny" : "big";
  setText("#kill-detail", kills.map((k) => `scope: ${killSwitchName(k)}`).join(", "));
  // a credential that does not decrypt fails its own connector only: name it and the fix
  const unreadable = (status.vault || {}).unreadable || [];
  $("#vault-problems").hidden = !unreadable.length;
  clear($("#vault-problem-list")).append(...unreadable.map((u) => el("li", {},
    el("code", { text: u.connector }), ` (key id ${u.key_id}): ${u.fix}`)));
  // `decisions` adds both sources up: each line counts its own
  const bySource = status.decisions_by_source || {};
  const sdk = bySource.sdk || {};
  const proxy = bySource.proxy || {};
  setText("#decision-totals", `SDK actions, all time: ${sdk.allow || 0} allowed · ${sdk.require_approval || 0} held for approval · ${sdk.deny || 0} denied`
    + ` — proxy requests, all time: ${proxy.allow || 0} allowed · ${proxy.require_approval || 0} held · ${(proxy.deny || 0) + (proxy.killed || 0)} denied`);
}

function showAgents(agents) {
  const body = clear($("#agents-table tbody"));
  for (const agent of agents) {
    body.append(el("tr", {},
      el("td", {}, el("a", { href: agentUrl(agent.name, agent.id), text: agent.name })),
      el("td", {}, badge(agent.status)), el("td", { text: agent.enforcement_level }),
      el("td", {}, keyPrefix(agent))));
  }
}

// the last 24 hours, counted by the server (proxy requests and SDK actions alike)
const fetchAll = latestOnly(() => Promise.all([
  api("/status"), api("/agents"), api("/stats/hourly", { query: { hours: 24 } }),
]));

async function refresh() {
  const answer = await fetchAll();
  if (!answer) return;
  const [status, agents, hourly] = answer;
  showStatus(status);
  showAgents(agents.agents);
  drawChart($("#chart"), fromHourly(hourly.hours));
}

const legend = $("#chart-legend");
for (const series of SERIES) legend.append(el("li", {}, el("span", { class: `swatch ${series.cls}` }), series.label));

startPage(async () => {
  await refresh();
  const again = throttled(() => refresh().catch(() => {}), 1000);
  for (const type of ["traffic", "approval.created", "approval.decided", "kill_switch", "config"]) onEvent(type, again);
});
