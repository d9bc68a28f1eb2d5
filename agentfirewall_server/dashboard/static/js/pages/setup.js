import { api, BASE, setCsrfToken } from "../api.js";
import { $, errorMessage, formToObject } from "../dom.js";

// Keep the one-time token out of the address bar, history and any Referer.
const setupToken = new URLSearchParams(window.location.search).get("token") || "";
window.history.replaceState(null, "", window.location.pathname);

function showError(message) {
  const error = $("#setup-error");
  error.textContent = message;
  error.hidden = false;
}

// The first-run offer: every built-in `<provider>-safe-defaults` pack (the SDK default stays allow).
async function installSafeDefaults(csrf) {
  setCsrfToken(csrf);
  const { packs } = await api("/policy-packs");
  for (const pack of packs.filter((p) => p.name.endsWith("-safe-defaults"))) {
    await api(`/policy-packs/${encodeURIComponent(pack.name)}/install`, { method: "POST" });
  }
}

if (!setupToken) showError("This page needs the one-time setup link the server printed when it started.");

$("#setup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const { email, password, password2 } = formToObject(form);
  $("#setup-error").hidden = true;
  if (!email || !password) return showError("Enter an email and a password.");
  if (password.length < 8) return showError("The password needs at least 8 characters.");
  if (password !== password2) return showError("The two passwords differ.");
  form.querySelector("button").disabled = true;
  try {
    await api("/auth/setup", { method: "POST", json: { setup_token: setupToken, email, password } });
    const session = await api("/auth/login", { method: "POST", json: { email, password } });
    if ($("#setup-safe-defaults").checked) await installSafeDefaults(session.csrf_token);
    window.location.assign(`${BASE}/overview`);
  } catch (failure) {
    showError(errorMessage(failure));
    form.querySelector("button").disabled = false;
  }
});
document.body.dataset.ready = "yes";
