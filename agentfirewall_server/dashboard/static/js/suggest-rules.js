// The agent page's "Suggest rules from traffic": GET /api/v1/permissions/suggest proposes
// access rules from the agent's recorded calls; they are written (POST /api/v1/permissions,
// one upsert per rule, in the order proposed: the closing deny-all last) only on Apply.
import { api } from "./api.js";
import { $, badge, clear, el, fail, notify, setText, show } from "./dom.js";
import { WINDOWS } from "./replay-preview.js";
import { can } from "./session.js";

const KEYS = ["agent", "connector", "action_pattern", "decision"];
const SHOWN_ACTIONS = 4;
let proposed = null; // the rules on screen, until applied or discarded

function observedText(actions) {
  const shown = actions.slice(0, SHOWN_ACTIONS).join(", ");
  return actions.length > SHOWN_ACTIONS ? `${shown} …` : shown || "everything else";
}

function render(name, found, sinceSeconds) {
  const window = `last ${WINDOWS[sinceSeconds] || `${sinceSeconds} s`}`;
  const calls = Number(found.observed).toLocaleString("en-US");
  proposed = found.observed ? found.rules : null;
  setText("#suggest-summary", found.observed
    ? `${calls} recorded calls of ${name} in the ${window}: ${found.rules.length} rules proposed. Review them, then apply or discard.`
    : `No recorded calls of ${name} in the ${window}: there is nothing to learn rules from yet.`);
  const body = clear($("#suggest-table tbody"));
  for (const rule of proposed || []) {
    body.append(el("tr", { dataset: { pattern: rule.action_pattern } }, el("td", { text: rule.connector }),
      el("td", {}, el("code", { text: rule.action_pattern })), el("td", {}, badge(rule.decision)),
      el("td", { text: rule.calls }), el("td", { class: "wrap", text: observedText(rule.actions) })));
  }
  show("#suggest-list", Boolean(proposed));
  show("#suggest-actions", Boolean(proposed));
  show("#suggest-apply", Boolean(proposed) && can("admin"));
  show("#suggest-result", true);
}

function discard() {
  proposed = null;
  show("#suggest-result", false);
}

async function apply(done) {
  const rules = proposed;
  if (!rules) return;
  const button = $("#suggest-apply");
  button.disabled = true;
  let written = 0;
  try {
    for (const rule of rules) {
      await api("/permissions", { method: "POST", json: Object.fromEntries(KEYS.map((k) => [k, rule[k]])) });
      written += 1;
    }
    notify(`${written} rules applied`);
    discard();
  } catch (error) {
    fail(error);
    setText("#suggest-summary", `Applied ${written} of ${rules.length} rules, then: ${error.message}`);
  } finally {
    button.disabled = false;
    await done();
  }
}

// `name`: the agent's name; `done`: refreshes the page's rule list after applying.
export function wireSuggest(name, done) {
  $("#suggest-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const sinceSeconds = Number($("#suggest-since").value);
    try {
      render(name, await api("/permissions/suggest", { query: { agent: name, since_seconds: sinceSeconds } }), sinceSeconds);
    } catch (error) { fail(error); }
  });
  $("#suggest-apply").addEventListener("click", () => apply(done));
  $("#suggest-discard").addEventListener("click", discard);
}
