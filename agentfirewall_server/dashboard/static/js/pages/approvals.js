import { api } from "../api.js";
import { $, badge, clear, el, fail, notify, setText, show, timeCell } from "../dom.js";
import { latestOnly, onEvent, throttled } from "../events.js";
import { GrantInputError, grantFrom, grantText, labelGrantFields } from "../grant-form.js";
import { maskInside, maskSecrets } from "../secrets.js";
import { can, session, startPage } from "../session.js";
import { showStuck } from "../stuck-executions.js";

const cards = new Map(); // approval id -> {card, node (countdown), expires}
// A card's buttons (data-decision) and the endpoint each calls: nothing else decides.
const DECISIONS = new Map([["approve", "approve"], ["grant", "approve"], ["deny", "deny"]]);

function countdown(expiresAt) {
  const left = Math.round((Date.parse(expiresAt) - Date.now()) / 1000);
  if (Number.isNaN(left)) return "no expiry";
  if (left <= 0) return "expired";
  const minutes = Math.floor(left / 60), seconds = left % 60;
  return `${minutes}:${String(seconds).padStart(2, "0")}`;
}

function riskLabel(score) {
  const n = Number(score) || 0;
  return n >= 70 ? ["high", "badge-deny"] : n >= 30 ? ["medium", "badge-hold"] : ["low", "badge-allow"];
}

// Resolves true when decided; a refusal is shown (in the grant fields when one was asked).
async function decide(approval, decision, note, grant, showError) {
  const json = { ...(note ? { note } : {}), ...(grant ? { grant } : {}) };
  try {
    const answer = await api(`/approvals/${encodeURIComponent(approval.id)}/${decision}`, { method: "POST", json });
    const verb = decision === "approve" ? "Approved" : "Denied";
    const extra = answer && answer.grant ? `, with ${grantText(answer.grant)}` : "";
    notify(`${verb} ${approval.action_spec.type} for ${approval.agent}${extra}`);
    return true;
  } catch (error) {
    if (grant && error.status === 422) showError(error.message);
    else fail(error);
    return false;
  } finally {
    await refresh().catch(fail);
  }
}

// What the approval binds: only this exact request (same headers that matter, same body,
// same digest) may pass on it.
function boundText(req) {
  if (!req || !req.digest) return req ? "method, host and path only" : "the action";
  const headers = (req.headers || []).map(([name, value]) => `${name}: ${value}`).join("; ");
  const type = `${headers ? `headers ${maskInside(headers)}, ` : ""}${req.content_type ? `${req.content_type}, ` : ""}`;
  return `${type}${req.body_size ?? 0} bytes, body sha256 ${String(req.body_sha256 || "").slice(0, 16)}…, request digest ${req.digest.slice(0, 16)}…`;
}

// An SDK action's resource: "SDK action on acme/api (github, account acme, production)".
function resourceText(spec) {
  const r = (spec && spec.resource) || {};
  const where = [r.provider, r.account && `account ${r.account}`, r.environment].filter(Boolean);
  return `SDK action on ${r.target || "-"}${where.length ? ` (${where.join(", ")})` : ""}`;
}

// Who may decide: a member or above whose role ranks at least as high as the lowest the
// approval names (the rule's `approver_roles`, default owner, admin, member: an owner
// decides what `[admin]` allows), exactly as the server checks it (roles.may_approve).
function mayDecide(approval) {
  const roles = approval.required_approver_roles || ["owner", "admin", "member"];
  return can("member") && roles.some((role) => can(role));
}

function orList(words) {
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}` : words.join("");
}

function card(approval) {
  const node = $("#approval-card").content.firstElementChild.cloneNode(true);
  node.dataset.approvalId = approval.id;
  setText(node.querySelector(".a-action"), approval.action_spec.type);
  const [label, cls] = riskLabel(approval.risk_score);
  const risk = node.querySelector(".a-risk");
  setText(risk, `risk ${approval.risk_score ?? 0} (${label})`);
  risk.classList.add(cls);
  setText(node.querySelector(".a-agent"), approval.agent);
  setText(node.querySelector(".a-source"), approval.source);
  const req = approval.request;
  // a credential in the path, the query or the body is masked as in the parameters
  setText(node.querySelector(".a-request"), req
    ? `${req.method} ${req.host}${maskInside(`${req.path}${req.query ? `?${req.query}` : ""}`)}` : resourceText(approval.action_spec));
  setText(node.querySelector(".a-bound"), boundText(req));
  if (req && req.body_preview) {
    const body = node.querySelector(".a-body");
    setText(body, maskInside(req.body_preview));
    body.hidden = false;
  }
  setText(node.querySelector(".a-reason"), approval.reason || "");
  setText(node.querySelector(".a-params"), JSON.stringify(maskSecrets(approval.action_spec.parameters || {}), null, 2));
  const noteId = `note-${approval.id}`;
  node.querySelector(".a-note-label").setAttribute("for", noteId);
  node.querySelector(".a-note").id = noteId;
  labelGrantFields(node, approval.id);
  const form = node.querySelector("form");
  if (!mayDecide(approval)) {
    form.remove();
    if (can("member")) { // a viewer has the page's note; a member or admin this card's
      const roles = node.querySelector(".a-roles");
      setText(roles, `Deciding this needs the role ${orList(approval.required_approver_roles || [])}; you are ${session.role}.`);
      roles.hidden = false;
    }
  }
  const grantError = node.querySelector(".g-error");
  const showError = (message) => { setText(grantError, message); grantError.hidden = !message; };
  // Only a decision's own button decides (clicked, or Enter / Space on it): its buttons are
  // type="button", so Enter in the note or a grant field (the browser's implicit
  // submission) has no button to press, and a submission without one decides nothing.
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("click", async (event) => {
    const choice = event.target.closest("button[data-decision]")?.dataset.decision;
    const verb = DECISIONS.get(choice);
    if (!verb) return;
    let grant = null;
    showError("");
    if (choice === "grant") {
      try { grant = grantFrom(form); } catch (error) {
        if (!(error instanceof GrantInputError)) throw error;
        return showError(error.message);
      }
    }
    const buttons = [...form.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    const decided = await decide(approval, verb, form.note.value.trim(), grant, showError);
    if (!decided) for (const button of buttons) button.disabled = false;
  });
  cards.set(approval.id, { card: node, node: node.querySelector(".a-countdown"), expires: approval.expires_at });
  return node;
}

function tick() {
  for (const { node, expires } of cards.values()) setText(node, countdown(expires));
}

const fetchApprovals = latestOnly(() => Promise.all([
  api("/approvals", { query: { status: "pending" } }), api("/approvals", { query: { status: "recent" } }),
]));

async function refresh() {
  await showStuck(refresh);
  const answer = await fetchApprovals();
  if (!answer) return;
  const [pending, recent] = answer;
  // Cards still pending stay as they are (a note being typed survives live updates);
  // decided ones leave, new ones are added in order.
  const list = $("#pending");
  const ids = new Set(pending.approvals.map((a) => a.id));
  for (const [id, entry] of cards) {
    if (!ids.has(id)) { entry.card.remove(); cards.delete(id); }
  }
  for (const approval of pending.approvals) {
    if (!cards.has(approval.id)) list.append(card(approval)); // never move a card: keeps focus
  }
  tick();
  setText("#pending-count", pending.approvals.length);
  show("#pending-empty", pending.approvals.length === 0);
  const body = clear($("#recent-table tbody"));
  for (const a of recent.approvals.filter((x) => x.status !== "pending")) {
    body.append(el("tr", { dataset: { approvalId: a.id } }, timeCell(a.decided_at || a.created_at), el("td", { text: a.agent }),
      el("td", {}, el("code", { text: a.action_spec.type })), el("td", {}, badge(a.status)),
      el("td", { text: a.decided_by || "" }), el("td", { class: "wrap", text: a.note || "" })));
  }
}

startPage(async () => {
  show("#viewer-note", !can("member"));
  await refresh().catch(fail);
  window.setInterval(tick, 1000);
  window.setInterval(() => showStuck(refresh).catch(() => {}), 30000); // no event announces them
  const again = throttled(() => refresh().catch(() => {}), 300);
  onEvent("approval.created", again);
  onEvent("approval.decided", again);
  onEvent("kill_switch", again);
});
