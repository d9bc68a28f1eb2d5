import { api, BASE } from "../api.js";
import { $, badge, clear, el, errorMessage, setText, show } from "../dom.js";
import { startPage } from "../session.js";

const EXAMPLE = {
  type: "github.pr.merge",
  resource: { provider: "github", account: "acme", target: "acme/api", environment: "production" },
  parameters: { base: "main", pr_number: 42 },
  risk_hints: { is_destructive: false, production_target: true },
};

function showResult(result) {
  const d = result.decision;
  const outcome = $("#sb-outcome");
  outcome.replaceWith(Object.assign(badge(d.outcome), { id: "sb-outcome" }));
  setText("#sb-reason", d.reason || "");
  setText("#sb-risk", d.risk_score ?? 0);
  setText("#sb-policies", (d.matched_policies || []).join(", ") || "none");
  setText("#sb-enforcement", `${d.enforcement_level}${d.would_outcome ? ` (would ${d.would_outcome})` : ""}`);
  const steps = clear($("#sb-steps"));
  for (const step of result.explanation || []) {
    steps.append(el("li", { dataset: { step: step.step } }, el("strong", { text: step.step }), " ", badge(step.result), el("div", { class: "muted small wrap", text: step.detail || "" })));
  }
  show("#sb-empty", false);
  show("#sb-result", true);
}

$("#sandbox-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("#sb-error");
  error.hidden = true;
  let spec;
  try {
    spec = JSON.parse($("#sb-spec").value);
  } catch (failure) {
    setText(error, `the action spec is not valid JSON: ${failure.message}`);
    error.hidden = false;
    return;
  }
  try {
    const result = await api("/sandbox/evaluate", { method: "POST", root: BASE, json: { agent: $("#sb-agent").value, mode: $("#sb-mode").value, action_spec: spec } });
    showResult(result);
  } catch (failure) {
    setText(error, errorMessage(failure));
    error.hidden = false;
  }
});

startPage(async () => {
  $("#sb-spec").value = JSON.stringify(EXAMPLE, null, 2);
  const { agents } = await api("/agents");
  const select = clear($("#sb-agent"));
  for (const agent of agents.filter((a) => a.status !== "revoked")) select.append(el("option", { value: agent.name, text: agent.name }));
  if (!agents.length) select.append(el("option", { value: "", text: "register an agent first" }));
});
