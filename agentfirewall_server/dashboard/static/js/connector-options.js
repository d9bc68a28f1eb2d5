// Connector options: the non-secret settings of a connector (e.g. sendgrid's `from`), listed
// by the catalogue per type. Shown on a connector's card and edited in place by admins with
// PATCH /connectors/{id}. Credentials never appear here: they are write-only.
import { api } from "./api.js";
import { el, errorMessage, notify, setText } from "./dom.js";

export function optionsText(options) {
  const entries = Object.entries(options || {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([key, value]) => `${key} = ${value}`).join("; ") : "none";
}

// One labelled input per option of `known` ({key: what it is}), prefilled from `values`.
export function optionFields(prefix, known, values = {}) {
  return Object.entries(known || {}).map(([key, what]) => {
    const id = `${prefix}-${key}`;
    return el("div", { class: "option-field" },
      el("label", { for: id, text: `Option ${key}` }),
      el("input", { id, name: key, value: values[key] || "", autocomplete: "off", spellcheck: "false", maxlength: "320", "aria-describedby": `${id}-help ${id}-error`, dataset: { option: key } }),
      el("p", { id: `${id}-help`, class: "muted small hint", text: what }),
      el("p", { id: `${id}-error`, class: "error small hint", hidden: true }));
  });
}

// The values of the option inputs under `root`: {key: "value"}, blanks as `blank`.
export function optionValues(root, blank) {
  const out = {};
  for (const input of root.querySelectorAll("input[data-option]")) {
    const value = input.value.trim();
    if (value) out[input.dataset.option] = value;
    else if (blank !== undefined) out[input.dataset.option] = blank;
  }
  return out;
}

export function clearOptionErrors(root) {
  for (const input of root.querySelectorAll("input[data-option]")) input.removeAttribute("aria-invalid");
  for (const message of root.querySelectorAll("p.error.hint")) { message.hidden = true; setText(message, ""); }
}

// A server refusal (422 with `field: "options.<key>"`) marked on its input; always notified.
export function showOptionError(root, error) {
  notify(errorMessage(error), "error");
  const field = (error && error.data && error.data.field) || "";
  if (!field.startsWith("options.")) return;
  const input = root.querySelector(`input[data-option="${CSS.escape(field.slice(8))}"]`);
  if (!input) return;
  input.setAttribute("aria-invalid", "true");
  const message = root.querySelector(`#${CSS.escape(input.id)}-error`);
  if (message) { setText(message, error.message); message.hidden = false; }
  input.focus();
}

// The in-place editor of a connector's options (hidden until its toggle opens it).
export function optionsEditor(connector, known, onSaved) {
  const prefix = `opt-${connector.id}`;
  const form = el("form", { class: "options-editor", "aria-label": `Options of ${connector.id}`, autocomplete: "off", hidden: true },
    optionFields(prefix, known, connector.options),
    el("p", { class: "muted small", text: "Leave a field empty to remove the option. The credential is not changed here." }),
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary", text: "Save options" }),
      el("button", { type: "button", text: "Cancel", onclick: () => close(form) })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearOptionErrors(form);
    const path = `/connectors/${encodeURIComponent(connector.id)}`;
    try {
      const changed = await api(path, { method: "PATCH", json: { options: optionValues(form, null) } });
      notify(`Options of ${changed.id} saved`);
      close(form);
      await onSaved();
    } catch (error) {
      showOptionError(form, error);
    }
  });
  return form;
}

export function editButton(connector, form) {
  const button = el("button", { type: "button", text: "Edit options", "aria-expanded": "false", "aria-label": `Edit options of ${connector.id}` });
  button.addEventListener("click", () => (form.hidden ? open(form) : close(form)));
  form.toggle = button;
  return button;
}

export function open(form, values) {
  form.hidden = false;
  if (form.toggle) form.toggle.setAttribute("aria-expanded", "true");
  for (const [key, value] of Object.entries(values || {})) {
    const input = form.querySelector(`input[data-option="${CSS.escape(key)}"]`);
    if (input) input.value = value;
  }
  const first = form.querySelector("input");
  if (first && !values) first.focus();
}

function close(form) {
  form.hidden = true;
  form.reset();
  clearOptionErrors(form);
  if (form.toggle) form.toggle.setAttribute("aria-expanded", "false");
}
