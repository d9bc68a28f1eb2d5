// The policy editor's replay preview: what a candidate configuration would have decided on
// recorded traffic (POST /api/v1/policies/replay), summarised and listed before saving.
import { api } from "./api.js";
import { $, badge, clear, el, setText, show, timeCell } from "./dom.js";

export const WINDOWS = { 86400: "day", 604800: "7 days", 2592000: "30 days" };
const EXAMPLES = 25; // per kind of change (allow->deny, ...), the API's `examples`

function count(n) {
  return Number(n).toLocaleString("en-US");
}

function sumInto(changes, after) {
  return Object.entries(changes || {}).filter(([key]) => key.endsWith(`->${after}`)).reduce((s, [, n]) => s + n, 0);
}

// "This change would have denied 12 and held 3 of the last 4,210 calls (last 7 days)."
export function replaySummary(report, sinceSeconds) {
  const window = `last ${WINDOWS[sinceSeconds] || `${count(sinceSeconds)} s`}`;
  if (!report.total) {
    return `No recorded traffic in the ${window}: there is nothing to replay this change against. Saving applies it to new calls only.`;
  }
  if (!report.changed) return `This change would not have changed any of the last ${count(report.total)} calls (${window}).`;
  const parts = [["denied", sumInto(report.changes, "deny")], ["held", sumInto(report.changes, "require_approval")],
    ["allowed", sumInto(report.changes, "allow")]].filter(([, n]) => n > 0).map(([verb, n]) => `${verb} ${count(n)}`);
  const listed = parts.length > 1 ? `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}` : parts[0];
  return `This change would have ${listed} of the last ${count(report.total)} calls (${window}).`;
}

export function changedCalls(report) {
  return Object.values(report.examples || {}).flat().sort((a, b) => String(b.time).localeCompare(String(a.time)));
}

function renderReport(report, sinceSeconds) {
  setText("#replay-summary", replaySummary(report, sinceSeconds));
  const calls = changedCalls(report);
  const body = clear($("#replay-table tbody"));
  for (const call of calls) {
    body.append(el("tr", { dataset: { change: `${call.before}->${call.after}` } }, timeCell(call.time),
      el("td", { text: call.agent }), el("td", {}, el("code", { text: call.action })),
      el("td", {}, badge(call.before), " → ", badge(call.after)), el("td", { text: call.rule })));
  }
  show("#replay-list", calls.length > 0);
  const notes = [];
  if (calls.length < report.changed) notes.push(`Showing ${count(calls.length)} of ${count(report.changed)} changed calls.`);
  if (report.partial) notes.push(`${count(report.partial)} of the calls were recorded with parameters withheld (bodies, secrets): a rule reading one may replay differently.`);
  if (report.drifted) notes.push(`${count(report.drifted)} calls replay differently under the live configuration than they were decided: it has changed since.`);
  setText("#replay-more", notes.join(" "));
}

// Replays `policies` (every enabled policy's document, the edited one in place) and shows
// the preview. Resolves to the report; rejects with the API's error (e.g. 422) untouched.
export async function previewReplay(policies, sinceSeconds) {
  const report = await api("/policies/replay", {
    method: "POST", json: { policies, since_seconds: sinceSeconds, examples: EXAMPLES },
  });
  renderReport(report, sinceSeconds);
  show("#replay-preview", true);
  return report;
}

export function hidePreview() {
  show("#replay-preview", false);
  clear($("#replay-table tbody"));
}
