// The budgets page's "Set a budget" form: PUT /api/v1/budgets/{name} with the fields of
// `tf budget set`. The server validates; its 422 message is shown and its field marked.
import { api } from "./api.js";
import { $, formToObject, notify, setText } from "./dom.js";

const FIELDS = ["name", "agents", "connector", "action", "measure", "parameter", "currency", "limit", "window", "timezone", "outcome"];

function body(form) {
  const data = formToObject(form);
  const out = {
    agents: (data.agents || "*").split(",").map((a) => a.trim()).filter(Boolean),
    connector: data.connector, action: data.action || "*", measure: data.measure,
    window: data.window, timezone: data.timezone || "UTC", outcome: data.outcome,
  };
  if (data.limit !== "") out.limit = Number(data.limit);
  if (data.parameter) out.parameter = data.parameter;
  if (data.currency) out.currency = data.currency.toLowerCase();
  // The form has no description field: replacing a budget keeps the one it had.
  if (form.dataset.editing === data.name && form.dataset.description) out.description = form.dataset.description;
  return out;
}

export function showBudgetError(form, message, field) {
  const box = $("#budget-error");
  setText(box, message || "");
  box.hidden = !message;
  const top = String(field || "").split(".")[0];
  for (const name of FIELDS) {
    const control = form.elements[name];
    if (control) control.setAttribute("aria-invalid", message && name === top ? "true" : "false");
  }
}

// Puts a budget's values in the form, to change it.
export function fillBudgetForm(form, budget) {
  for (const name of FIELDS) {
    const control = form.elements[name];
    const value = name === "agents" ? (budget.agents || []).join(", ") : budget[name];
    if (control) control.value = value === undefined || value === null ? "" : String(value);
  }
  form.dataset.editing = budget.name;
  form.dataset.description = budget.description || "";
  showBudgetError(form, "");
  form.elements.limit.focus();
}

// Resolves to the saved budget, or null when the server refused (the reason is shown).
export async function submitBudget(form) {
  const name = form.elements.name.value.trim();
  if (!name) {
    showBudgetError(form, "a budget needs a name (lowercase letters, digits, - and _)", "name");
    return null;
  }
  try {
    const saved = await api(`/budgets/${encodeURIComponent(name)}`, { method: "PUT", json: body(form) });
    showBudgetError(form, "");
    notify(`Budget ${saved.name} saved`);
    return saved;
  } catch (error) {
    showBudgetError(form, error.message, error.data && error.data.field);
    return null;
  }
}
