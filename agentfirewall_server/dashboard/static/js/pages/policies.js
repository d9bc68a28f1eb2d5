import { api } from "../api.js";
import { $, badge, clear, el, fail, formatTime, notify, setText, show, shown } from "../dom.js";
import { renderDiff } from "../diff.js";
import { onEvent, throttled } from "../events.js";
import { hidePreview, previewReplay } from "../replay-preview.js";
import { can, startPage } from "../session.js";

const TEMPLATE = `name: my-policy
description: what this policy is for
scope: {action_types: ["github.*"], environments: [production], agents: ["*"]}
priority: 100
enabled: true
rules:
  - name: block-repo-delete
    conditions:
      all:
        - {field: action_spec.type, operator: equals, value: github.repo.delete}
    decision: deny
    reason: repositories are never deleted by agents
    risk_score: 95
`;
// `base`: the version of `editing` the editor was loaded with, sent on save (`base_version`):
// if someone saved the policy since, the save is refused and the page offers the new one.
const state = { editing: null, base: null, timer: null, seq: 0, policies: [], reviewed: null };

export function documentText(document) {
  return typeof document === "string" ? document : JSON.stringify(document, null, 2);
}

function showValidation(result) {
  const box = clear($("#validation"));
  const area = $("#policy-doc");
  area.setAttribute("aria-invalid", result.valid ? "false" : "true");
  box.className = `validation ${result.valid ? "valid" : "invalid"}`;
  if (result.valid) return box.append(el("span", { text: "✓ Valid policy" }));
  const list = el("ul", {});
  for (const error of result.errors || []) {
    const where = [error.line ? `line ${error.line}` : "", error.field ? `field ${error.field}` : ""].filter(Boolean).join(", ");
    list.append(el("li", { text: where ? `${where}: ${error.message}` : error.message }));
  }
  box.append(el("span", { text: "✗ Not valid" }), list);
}

// The editor holds the document as stored, since it is saved back as it is: each line with
// a character that is invisible or changes how text reads is named below it, as escapes.
function showHiddenLines(document) {
  const lines = document.split(/\r?\n/).map((line, i) => [i + 1, line]).filter(([, line]) => shown(line) !== line);
  const box = clear($("#policy-hidden"));
  box.hidden = lines.length === 0;
  if (!lines.length) return;
  box.append(el("span", { text: "Characters that are invisible or change how text reads:" }),
    el("ul", {}, lines.map(([n, line]) => el("li", { text: `line ${n}: ${line}` }))));
}

async function validateNow() {
  const seq = ++state.seq;
  const document = $("#policy-doc").value;
  showHiddenLines(document);
  if (!document.trim()) return clear($("#validation"));
  try {
    const result = await api("/policies/validate", { method: "POST", json: { document } });
    if (seq === state.seq) showValidation(result);
  } catch (error) {
    fail(error);
  }
}

function edit(policy) {
  state.editing = policy;
  state.base = policy ? policy.version : null;
  state.reviewed = null;
  hidePreview();
  show("#policy-stale", false);
  $("#policy-doc").value = policy ? documentText(policy.document) : TEMPLATE;
  setText("#editing", policy ? `— ${policy.name} v${policy.version}` : "— new policy");
  validateNow();
  if (policy) loadVersions(policy).catch(fail);
  else { clear($("#versions")); show("#history-empty", true); show("#diff-wrap", false); }
}

async function loadVersions(policy) {
  const { versions } = await api(`/policies/${encodeURIComponent(policy.id)}/versions`);
  const list = clear($("#versions"));
  const sorted = [...versions].sort((a, b) => b.version - a.version);
  sorted.forEach((version, i) => {
    const previous = sorted[i + 1];
    const button = el("button", { type: "button", class: "link-button", text: previous ? `diff with v${previous.version}` : "show",
      onclick: () => {
        setText("#diff-title", previous ? `${policy.name}: v${previous.version} → v${version.version}` : `${policy.name}: v${version.version}`);
        renderDiff($("#diff"), previous ? documentText(previous.document) : "", documentText(version.document));
        show("#diff-wrap", true);
      } });
    list.append(el("li", {}, el("strong", { text: `v${version.version}` }), " ", formatTime(version.created_at), " ",
      el("span", { class: "muted", text: version.created_by ? `by ${version.created_by}` : "" }), " ", button));
  });
  show("#history-empty", versions.length === 0);
}

async function toggle(policy) {
  try {
    await api(`/policies/${encodeURIComponent(policy.id)}/${policy.enabled ? "disable" : "enable"}`, { method: "POST" });
    notify(`${policy.name} ${policy.enabled ? "disabled" : "enabled"}`);
  } catch (error) { fail(error); }
  await refresh().catch(fail);
}

async function refresh() {
  const { policies } = await api("/policies");
  const body = clear($("#policies-table tbody"));
  for (const policy of policies) {
    const toggleButton = can("admin") ? el("button", { type: "button", text: policy.enabled ? "Disable" : "Enable", "aria-label": `${policy.enabled ? "Disable" : "Enable"} ${policy.name}`, onclick: () => toggle(policy) }) : null;
    body.append(el("tr", { dataset: { policy: policy.name } },
      el("td", {}, el("button", { type: "button", class: "link-button", text: policy.name, onclick: () => edit(policy) })),
      el("td", { text: policy.priority }), el("td", { text: `v${policy.version}` }),
      el("td", {}, badge(policy.enabled ? "enabled" : "disabled")), el("td", {}, toggleButton)));
    if (state.editing && state.editing.id === policy.id) state.editing = policy;
  }
  show("#policies-empty", policies.length === 0);
  state.policies = policies;
  if (state.editing && state.editing.version !== state.base) showStale(`${state.editing.name} was saved as v${state.editing.version} by someone else while you had v${state.base} open.`);
  return policies;
}

// The open policy has a newer version than the editor's: saving would be refused (409
// `version_conflict`); Reload shows the newest, leaving the edits here behind.
function showStale(message) {
  setText("#policy-stale-text", `${message} Reload it to edit v${state.editing.version}: your changes here are not kept (copy them first).`);
  setText("#policy-reload", `Reload v${state.editing.version}`);
  show("#policy-stale", true);
}

function showSaveError(error) {
  if (error.status === 422) showValidation({ valid: false, errors: [{ message: error.message, line: error.data.line, field: error.data.field }] });
  else fail(error);
}

// The candidate: every enabled policy as it is, the edited document in place of its policy.
function candidate(document) {
  const others = state.policies.filter((p) => p.enabled && !(state.editing && p.id === state.editing.id));
  return [...others.map((p) => documentText(p.document)), document];
}

// Submit first replays the change on recorded traffic; Save in the preview writes it.
async function review(event) {
  event.preventDefault();
  const document = $("#policy-doc").value;
  state.reviewed = null;
  try {
    await previewReplay(candidate(document), Number($("#replay-since").value));
    state.reviewed = document;
  } catch (error) {
    hidePreview();
    if (error.status === 422) error.message = error.message.replace(/^invalid policy \d+: /, "invalid policy: ");
    showSaveError(error);
  }
}

async function save() {
  const document = state.reviewed;
  if (document === null) return;
  try {
    const policy = state.editing
      ? await api(`/policies/${encodeURIComponent(state.editing.id)}`, { method: "PUT", json: { document, base_version: state.base } })
      : await api("/policies", { method: "POST", json: { document } });
    notify(`Saved ${policy.name} v${policy.version}`);
    edit(policy); // (first: the list's new version is this one, not someone else's)
    await refresh().catch(fail);
  } catch (error) {
    hidePreview();
    if ((error.data || {}).error === "version_conflict") {
      await refresh().catch(fail); // (shows the newest version's number)
      fail(error);
      showStale("Not saved: someone else saved this policy while you had it open.");
    } else showSaveError(error);
  }
}

async function loadPacks() {
  const { packs } = await api("/policy-packs");
  const select = clear($("#pack"));
  for (const pack of packs) select.append(el("option", { value: pack.name, text: pack.name }));
  const describe = () => setText("#pack-description", (packs.find((p) => p.name === select.value) || {}).description || "");
  select.addEventListener("change", describe);
  describe();
}

$("#policy-doc").addEventListener("input", () => {
  state.reviewed = null; // a preview is of the text it was made for
  hidePreview();
  window.clearTimeout(state.timer);
  state.timer = window.setTimeout(validateNow, 300);
});
$("#policy-form").addEventListener("submit", review);
$("#replay-save").addEventListener("click", save);
$("#replay-cancel").addEventListener("click", () => { state.reviewed = null; hidePreview(); $("#policy-doc").focus(); });
$("#new-policy").addEventListener("click", () => edit(null));
$("#policy-reload").addEventListener("click", () => edit(state.editing));
$("#pack-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const policy = await api(`/policy-packs/${encodeURIComponent($("#pack").value)}/install`, { method: "POST" });
    notify(`Installed ${policy.name}`);
  } catch (error) { fail(error); }
  await refresh().catch(fail);
});

startPage(async () => {
  if (!can("admin")) $("#policy-doc").readOnly = true;
  const [policies] = await Promise.all([refresh(), loadPacks()]);
  // Admins start on a template for a new policy; others read the first policy.
  if (can("admin") || !policies.length) edit(null);
  else edit(policies[0]);
  onEvent("config", throttled(() => refresh().catch(() => {}), 500));
});
