// Every signed-in page starts here: who am I, my role, the header, role gating.
import { api, leaveForSignIn, setCsrfToken } from "./api.js";
import { $, fail, setText, shown } from "./dom.js";
import { onEvent } from "./events.js";
import { killSwitchName } from "./kill-switch.js";

export const ROLE_RANK = { viewer: 1, member: 2, admin: 3, owner: 4 };

export const session = { user: null, role: "viewer" };

export function can(role) {
  return (ROLE_RANK[session.role] || 0) >= (ROLE_RANK[role] || 99);
}

// Hides what the role may not use; the server refuses it anyway.
export function applyRoles(root = document) {
  for (const node of root.querySelectorAll("[data-min-role]")) {
    const allowed = can(node.dataset.minRole);
    node.hidden = !allowed;
    for (const control of node.querySelectorAll("button, input, select, textarea")) {
      if (!allowed) control.disabled = true;
    }
  }
  // Forms that also show current values: read-only below the role, not hidden.
  for (const node of root.querySelectorAll("[data-lock-role]")) {
    if (can(node.dataset.lockRole)) continue;
    for (const control of node.querySelectorAll("input, select, textarea")) control.disabled = true;
    for (const button of node.querySelectorAll("button")) button.hidden = true;
  }
}

async function showKillSwitch() {
  const data = await api("/kill-switch");
  const active = data.active || [];
  const badge = $("#kill-indicator");
  badge.hidden = active.length === 0;
  setText(badge, active.length ? `Kill switch: ${active.map(killSwitchName).join(", ")}` : "");
  // a stored policy or budget this version cannot read: the reason says which, and the way out
  badge.title = shown(active.filter((k) => k.unreadable).map((k) => k.reason).join("\n"));
  return active;
}

async function logout() {
  try {
    await api("/auth/logout", { method: "POST", leaveOn401: false });
  } catch (error) {
    if (error.status !== 401) fail(error); // 401: the session had already ended
  }
  leaveForSignIn({ comeBack: false });
}

export async function startPage(main) {
  let me;
  try {
    me = await api("/auth/me");
  } catch {
    leaveForSignIn(); // (after a 401 the page is already leaving)
    return;
  }
  session.user = me.user;
  session.role = me.user.role;
  setCsrfToken(me.csrf_token);
  setText("#who", `${me.user.email} · ${me.user.role}`);
  $("#logout").addEventListener("click", logout);
  applyRoles();
  onEvent("kill_switch", () => showKillSwitch().catch(fail));
  try {
    await Promise.all([showKillSwitch(), main()]);
  } catch (error) {
    fail(error);
  }
  document.body.dataset.ready = "yes";
}
