// One row of the traffic table, shared by the traffic and agent pages.
import { agentUrl } from "./api.js";
import { badge, el, timeCell } from "./dom.js";
import { maskInside } from "./secrets.js";

export function trafficRow(record, { withAgent = true } = {}) {
  // an SDK action request (listed with Shadow: diverged) has no HTTP request: labelled "sdk"
  const request = record.source === "sdk" ? "sdk" : [record.method, record.host, record.path].filter(Boolean).join(" ");
  // the link opens the agent that made the request (by its id), not one that took its name later
  const agentCell = el("td", {}, el("a", { href: agentUrl(record.agent, record.agent_id), text: record.agent || "" }));
  return el("tr", {},
    timeCell(record.created_at),
    withAgent ? agentCell : null,
    withAgent ? el("td", { text: record.connector || "" }) : null,
    el("td", {}, el("code", { text: record.action || "" })),
    el("td", { class: "wrap", text: maskInside(request) }), // (a credential in a path is masked)
    el("td", {}, badge(record.decision), record.would_outcome ? el("span", { class: "muted small", text: ` would ${record.would_outcome}` }) : null,
      record.shadow_diverged ? el("span", { class: "shadow-marker small", title: `shadow configuration: ${record.shadow_decision} (${record.shadow_rule || ""})`, text: ` shadow: ${record.shadow_decision}` }) : null),
    el("td", { text: record.status_code ?? "" }),
    withAgent ? el("td", { text: record.latency_ms != null ? `${record.latency_ms} ms` : "" }) : null,
    withAgent ? el("td", { class: "wrap", text: record.reason || "" }) : null);
}
