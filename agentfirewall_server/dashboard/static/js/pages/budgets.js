import { api } from "../api.js";
import { $, badge, clear, el, fail, notify, show, shown, timeCell } from "../dom.js";
import { fillBudgetForm, submitBudget } from "../budget-form.js";
import { can, startPage } from "../session.js";

const SVG = "http://www.w3.org/2000/svg";
const UNITS = { count: "requests", tokens: "tokens", cost: "usd" };

function unit(budget) {
  return budget.measure === "sum" ? (budget.currency || budget.parameter || "amount") : UNITS[budget.measure] || "";
}

function amount(value) {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
}

// The remaining amount over the window as a small line (limit at the top, zero at the bottom).
function burnDown(budget) {
  const width = 160, height = 36;
  const node = document.createElementNS(SVG, "svg");
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", String(width));
  node.setAttribute("height", String(height));
  node.setAttribute("role", "img");
  const points = budget.state.burn_down || [];
  node.setAttribute("aria-label", shown(`${budget.name}: ${amount(budget.state.remaining)} of ${amount(budget.limit)} remaining`));
  const start = Date.parse(budget.state.window_start);
  const end = budget.state.resets_at ? Date.parse(budget.state.resets_at) : Date.now();
  const x = (iso) => Math.max(0, Math.min(width, ((Date.parse(iso) - start) / Math.max(end - start, 1)) * width));
  const y = (remaining) => height - Math.max(0, Math.min(height, (remaining / budget.limit) * height));
  const coords = [`0,${y(budget.limit)}`, ...points.map((p) => `${x(p.at)},${y(p.remaining)}`)];
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coords.join(" "));
  line.setAttribute("class", budget.state.remaining > 0 ? "line-allow" : "line-deny");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  node.append(line);
  return node;
}

// Edit fills the form; Remove asks in the row itself, then DELETEs budget and usage.
function budgetActions(budget) {
  if (!can("admin")) return el("td", {});
  const cell = el("td", {});
  const buttons = () => [
    el("button", { type: "button", text: "Edit", "aria-label": `Edit ${budget.name}`, onclick: () => fillBudgetForm($("#budget-form"), budget) }),
    el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${budget.name}`, onclick: confirmRemove }),
  ];
  function confirmRemove() {
    cell.replaceChildren(el("span", { class: "small", text: `Remove ${budget.name} and its usage?` }), " ",
      el("button", { type: "button", class: "danger", text: "Confirm remove", onclick: remove }), " ",
      el("button", { type: "button", text: "Cancel", onclick: () => cell.replaceChildren(el("div", { class: "row-actions" }, buttons())) }));
  }
  async function remove() {
    try {
      await api(`/budgets/${encodeURIComponent(budget.name)}`, { method: "DELETE" });
      notify(`Budget ${budget.name} removed`);
    } catch (error) { fail(error); }
    await loadBudgets().catch(fail);
  }
  cell.append(el("div", { class: "row-actions" }, buttons()));
  return cell;
}

async function loadBudgets() {
  const data = await api("/budgets");
  const body = clear($("#budgets-table tbody"));
  for (const b of data.budgets) {
    const perAgent = Object.entries(b.state.by_agent || {}).map(([name, spent]) => `${name}: ${amount(spent)}`).join(", ");
    body.append(el("tr", { dataset: { budget: b.name } },
      el("td", {}, el("code", { text: b.name })),
      el("td", { class: "wrap", text: `${(b.agents || []).join(", ")} · ${b.connector} · ${b.action}` }),
      el("td", { text: `${amount(b.state.used)} / ${amount(b.limit)} ${unit(b)}` }),
      el("td", { class: b.state.remaining > 0 ? "" : "text-deny", text: amount(b.state.remaining) }),
      el("td", { text: b.window.replace("_", " ") + (b.window.startsWith("calendar") ? ` (${b.timezone})` : "") }),
      el("td", {}, badge(b.outcome)),
      el("td", { class: "wrap", text: perAgent || "—" }),
      el("td", {}, burnDown(b)), budgetActions(b)));
  }
  show("#budgets-empty", data.budgets.length === 0);
}

function where(grant) {
  return (grant.constraints || []).map((c) => `${c.field.split(".").pop()} ${c.operator} ${JSON.stringify(c.value)}`).join("; ") || "—";
}

async function loadGrants() {
  const data = await api("/grants");
  const body = clear($("#grants-table tbody"));
  for (const g of data.grants) {
    // members and above revoke; below, no button (the server refuses it anyway)
    const revoke = can("member") ? el("button", { type: "button", text: "Revoke", "aria-label": `Revoke ${g.id}`, onclick: () => {
      api(`/grants/${encodeURIComponent(g.id)}/revoke`, { method: "POST", json: {} })
        .then(() => { notify(`${g.id} revoked`); return loadGrants(); }).catch(fail);
    } }) : null;
    body.append(el("tr", {},
      el("td", {}, el("code", { text: g.id })), el("td", { text: g.agent }), el("td", {}, el("code", { text: g.action_type })),
      el("td", { class: "wrap", text: where(g) }), el("td", { text: `${g.uses} / ${g.max_uses ?? "∞"}` }),
      g.expires_at ? timeCell(g.expires_at) : el("td", { text: "—" }), el("td", {}, badge(g.status)), el("td", {}, revoke)));
  }
  show("#grants-empty", data.grants.length === 0);
}

$("#budget-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (await submitBudget(event.currentTarget)) await loadBudgets().catch(fail);
});

startPage(async () => {
  await Promise.all([loadBudgets(), loadGrants()]);
});
