import { api } from "../api.js";
import { $, clear, el, fail, formatTime, formToObject, notify, setText, show, timeCell } from "../dom.js";
import { onEvent, throttled } from "../events.js";
import { killSwitchName, killSwitchScope } from "../kill-switch.js";
import { can, session, startPage } from "../session.js";

function confirmDialog(text) {
  const dialog = $("#confirm");
  setText("#confirm-text", text);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

async function setKillSwitch(body, question) {
  if (!(await confirmDialog(question))) return;
  try {
    await api("/kill-switch", { method: "POST", json: body });
    notify(body.active ? "Kill switch activated." : "Kill switch deactivated.");
    if (body.active) $("#kill-form").reset();
  } catch (error) { fail(error); }
  await loadKillSwitch().catch(fail);
}

async function loadKillSwitch() {
  const { active } = await api("/kill-switch");
  const body = clear($("#kill-table tbody"));
  for (const k of active) {
    const scope = killSwitchScope(k), name = killSwitchName(k);
    // (an unreadable configuration is no switch: its reason says how it ends)
    const off = can("owner") && !k.unreadable ? el("button", { type: "button", text: "Deactivate", "aria-label": `Deactivate kill switch ${name}`,
      onclick: () => setKillSwitch({ active: false, scope }, `Deactivate the kill switch for ${name}? Matching traffic flows again.`) }) : null;
    body.append(el("tr", { dataset: { scope } }, el("td", { text: k.scope }), el("td", { text: k.target || "all" }), el("td", { class: "wrap", text: k.reason || "" }),
      el("td", { text: k.activated_by || "" }), timeCell(k.activated_at), el("td", {}, off)));
  }
  show("#kill-table", active.length > 0);
  show("#kill-none", active.length === 0);
  if (can("owner")) show("#kill-clear", active.length > 0);
}

async function loadScopes() {
  const [{ connectors }, { agents }] = await Promise.all([api("/connectors"), api("/agents")]);
  const select = clear($("#kill-scope"));
  select.append(el("option", { value: "all", text: "All traffic" }));
  // each scope with its kind: a bare name is read as `all` or a connector type first
  const option = (scope, target) => el("option", { value: killSwitchScope({ scope, target }), text: target });
  const types = [...new Set(connectors.map((c) => c.type))].sort();
  if (types.length) select.append(el("optgroup", { label: "Connector" }, types.map((t) => option("connector", t))));
  const names = [...new Set(agents.filter((a) => a.status !== "revoked").map((a) => a.name))];
  if (names.length) select.append(el("optgroup", { label: "Agent" }, names.map((n) => option("agent", n))));
}

// The Gateway URL is what people are told (nothing reads it); where the gateways run is
// known from their own heartbeats (`gateways_online`).
function gatewayNote(settings) {
  const live = settings.gateways_online || [];
  if (!live.length) return "No gateway has reported in the last 30 seconds: start one (tf up, or python -m agentfirewall_proxy).";
  const told = live.includes(settings.gateway_url) ? "" : " The Gateway URL above is only what people are told (nothing reads it): set it to the address agents should use.";
  return `Gateway${live.length > 1 ? "s" : ""} running now: ${live.join(", ")}.${told}`;
}

async function loadSettings() {
  const settings = await api("/settings");
  $("#s-level").value = settings.default_enforcement_level;
  $("#s-timeout").value = settings.approval_timeout_seconds;
  $("#s-slack-channel").value = (settings.slack && settings.slack.channel) || "";
  const approvers = (settings.slack && settings.slack.approvers) || {};
  $("#s-slack-approvers").value = Object.entries(approvers).map(([member, email]) => `${member} ${email}`).join("\n");
  $("#s-gateway").value = settings.gateway_url || "";
  setText("#s-gateway-live", gatewayNote(settings));
  setText("#slack-state", settings.slack && settings.slack.configured ? "Slack is configured: bot token and signing secret are stored (hidden). Leave the fields empty to keep them." : "Slack is not configured.");
}

async function loadUsers() {
  const { users } = await api("/users");
  const body = clear($("#users-table tbody"));
  for (const user of users) {
    const select = el("select", { "aria-label": `Role of ${user.email}`, disabled: user.id === session.user.id,
      onchange: async (event) => {
        try { await api(`/users/${encodeURIComponent(user.id)}`, { method: "PATCH", json: { role: event.target.value } }); notify(`${user.email} is now ${event.target.value}`); } catch (error) { fail(error); }
        await loadUsers().catch(fail);
      } }, ["viewer", "member", "admin", "owner"].map((r) => el("option", { value: r, text: r, selected: r === user.role })));
    body.append(el("tr", {}, el("td", { text: user.email }), el("td", {}, select), el("td", { text: formatTime(user.created_at) })));
  }
}

$("#kill-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const { scope, reason } = formToObject(form);
  const picked = form.scope.selectedOptions[0];
  const label = scope === "all" ? "ALL traffic" : `${picked.parentElement.label.toLowerCase()} “${picked.text}”`;
  setKillSwitch({ active: true, scope, ...(reason ? { reason } : {}) }, `Activate the kill switch for ${label}? Matching requests are denied at once and matching pending approvals are denied.`);
});
$("#kill-clear").addEventListener("click", () => setKillSwitch({ active: false }, "Deactivate every kill switch?"));

async function patchSettings(body, done) {
  try { await api("/settings", { method: "PATCH", json: body }); notify(done); } catch (error) { fail(error); }
  await loadSettings().catch(fail);
}

$("#defaults-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = formToObject(event.currentTarget);
  patchSettings({ default_enforcement_level: data.default_enforcement_level, approval_timeout_seconds: Number(data.approval_timeout_seconds) }, "Enforcement defaults saved.");
});
// "U012AB3CD alice@example.com" per line (or "U012AB3CD = alice@example.com") -> {member: email}
function slackApprovers(text) {
  const found = {};
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const parts = line.split(/[\s=,]+/).filter(Boolean);
    if (parts.length !== 2) throw new Error(`Slack approvers, line ${n + 1}: expected a member ID and an email, like "U012AB3CD alice@example.com"`);
    found[parts[0]] = parts[1];
  }
  return found;
}

$("#integrations-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = formToObject(form);
  let approvers;
  try { approvers = slackApprovers(data.slack_approvers || ""); } catch (error) { fail(error); return; }
  const body = { slack_channel: data.slack_channel, gateway_url: data.gateway_url, slack_approvers: approvers };
  if (data.slack_bot_token) body.slack_bot_token = data.slack_bot_token;
  if (data.slack_signing_secret) body.slack_signing_secret = data.slack_signing_secret;
  form.slack_bot_token.value = "";
  form.slack_signing_secret.value = "";
  patchSettings(body, "Integrations saved.");
});
$("#user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  try { const user = await api("/users", { method: "POST", json: formToObject(form) }); notify(`Added ${user.email || "user"}`); form.reset(); } catch (error) { fail(error); }
  await loadUsers().catch(fail);
});

// (the forms with credentials are disabled until handled: see login.js)
for (const form of ["#integrations-form", "#user-form"]) $(`${form} fieldset`).disabled = false;

startPage(async () => {
  const work = [loadKillSwitch(), loadScopes(), loadSettings()];
  if (can("owner")) work.push(loadUsers());
  await Promise.all(work);
  onEvent("kill_switch", throttled(() => loadKillSwitch().catch(() => {}), 300));
});
