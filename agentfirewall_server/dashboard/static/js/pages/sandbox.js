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

// The request's URL is proxy mode's only (grants bound to its host): in SDK mode it is
// hidden and disabled, so never sent.
function showMode() {
  const proxy = $("#sb-mode").value === "proxy";
  show("#sb-url-field", proxy);
  $("#sb-url").disabled = !proxy;
}

// The server's refusal of the URL (422, `field: url`), next to it; "" clears it.
function showUrlError(message) {
  const box = $("#sb-url-error");
  setText(box, message);
  box.hidden = !message;
  $("#sb-url").setAttribute("aria-invalid", message ? "true" : "false");
}

$("#sb-mode").addEventListener("change", showMode);

$("#sandbox-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("#sb-error");
  error.hidden = true;
  showUrlError("");
  let spec;
  try {
    spec = JSON.parse($("#sb-spec").value);
  } catch (failure) {
    setText(error, `the action spec is not valid JSON: ${failure.message}`);
    error.hidden = false;
    return;
  }
  const body = { agent: $("#sb-agent").value, mode: $("#sb-mode").value, action_spec: spec };
  const url = $("#sb-url");
  if (!url.disabled && url.value.trim()) body.url = url.value.trim();
  try {
    showResult(await api("/sandbox/evaluate", { method: "POST", root: BASE, json: body }));
  } catch (failure) {
    if (failure.data && failure.data.field === "url") {
      showUrlError(errorMessage(failure));
      url.focus();
      return;
    }
    setText(error, errorMessage(failure));
    error.hidden = false;
  }
});

startPage(async () => {
  $("#sb-spec").value = JSON.stringify(EXAMPLE, null, 2);
  showMode(); // (a browser may restore the mode chosen before a reload)
  const { agents } = await api("/agents");
  const select = clear($("#sb-agent"));
  for (const agent of agents.filter((a) => a.status !== "revoked")) select.append(el("option", { value: agent.name, text: agent.name }));
  if (!agents.length) select.append(el("option", { value: "", text: "register an agent first" }));
});
