// Stuck executions (Approvals page): SDK executions a server crash cut short, their outcome
// unknown. An admin checks the upstream and settles each (POST /actions/{id}/resolve).
import { api } from "./api.js";
import { $, el, fail, notify, setText, show, timeCell } from "./dom.js";
import { can } from "./session.js";

const rows = new Map(); // action id -> row (never rebuilt: a note being typed survives)

const OUTCOMES = [
  ["retry", "Not done: let the agent retry"],
  ["failed", "Not done: never retry"],
  ["executed", "It took effect"],
];

// What was found is chosen, never a default ("retry" when it took effect runs it twice),
// and only the Settle button sends it: Enter in the note (the browser's implicit
// submission) has no button to press, and a submission without one settles nothing.
function settleForm(action, refresh) {
  const label = `${action.action_type} for ${action.agent}`;
  const outcome = el("select", { name: "outcome", required: true, "aria-label": `Outcome of ${label}` },
    el("option", { value: "", text: "What happened upstream?", disabled: true, selected: true }),
    OUTCOMES.map(([value, text]) => el("option", { value, text })));
  const note = el("input", { name: "note", maxlength: "2000", placeholder: "What you found upstream",
    "aria-label": `Note on ${label}` });
  const button = el("button", { type: "button", class: "primary", text: "Settle" });
  const form = el("form", { class: "settle", onsubmit: (event) => event.preventDefault() }, outcome, note, button);
  button.addEventListener("click", async () => {
    if (!form.reportValidity()) return;
    button.disabled = true;
    const json = { outcome: outcome.value, ...(note.value.trim() ? { note: note.value.trim() } : {}) };
    try {
      await api(`/actions/${encodeURIComponent(action.action_request_id)}/resolve`, { method: "POST", json });
      notify(`Settled ${label}: ${outcome.selectedOptions[0].textContent}`);
    } catch (error) {
      fail(error);
      button.disabled = false;
    }
    await refresh().catch(fail);
  });
  return form;
}

function row(action, refresh) {
  return el("tr", { dataset: { actionId: action.action_request_id } },
    timeCell(action.executing_since), el("td", { text: action.agent }),
    el("td", {}, el("code", { text: action.action_type })),
    el("td", {}, can("admin") ? settleForm(action, refresh) : el("span", { class: "muted", text: "an admin settles it" })));
}

export async function showStuck(refresh) {
  const answer = await api("/actions/stuck");
  const body = $("#stuck-table tbody");
  const ids = new Set(answer.actions.map((a) => a.action_request_id));
  for (const [id, node] of rows) {
    if (!ids.has(id)) { node.remove(); rows.delete(id); }
  }
  for (const action of answer.actions) {
    if (!rows.has(action.action_request_id)) {
      const node = row(action, refresh);
      rows.set(action.action_request_id, node);
      body.append(node);
    }
  }
  setText("#stuck-count", answer.actions.length);
  show("#stuck", answer.actions.length > 0);
}
