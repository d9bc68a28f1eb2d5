import { api, BASE, setCsrfToken } from "../api.js";
import { $, el, errorMessage, formToObject, setText } from "../dom.js";

// Keep the one-time token out of the address bar, history and any Referer.
const setupToken = new URLSearchParams(window.location.search).get("token") || "";
window.history.replaceState(null, "", window.location.pathname);

function showError(message, signIn = false) {
  const error = $("#setup-error");
  setText(error, message);
  if (signIn) error.append(" ", el("a", { href: `${BASE}/login`, text: "Sign in" }));
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
  let created = false;
  try {
    await api("/auth/setup", { method: "POST", json: { setup_token: setupToken, email, password } });
    created = true;
    const session = await api("/auth/login", { method: "POST", json: { email, password } });
    if ($("#setup-safe-defaults").checked) await installSafeDefaults(session.csrf_token);
    window.location.assign(`${BASE}/overview`);
  } catch (failure) {
    // A wrong or used link (403), an owner made meanwhile (409): the way on is to sign in.
    const used = !created && (failure.status === 403 || (failure.status === 409 && !failure.data.field));
    if (used) showError("This setup link is wrong or was already used: once the owner account exists, sign in instead.", true);
    else showError(errorMessage(failure), created);
    form.querySelector("button").disabled = false;
  }
});
$("#setup-form fieldset").disabled = false; // (disabled until handled: see login.js)
document.body.dataset.ready = "yes";
