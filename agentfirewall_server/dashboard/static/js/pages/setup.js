import { api, BASE } from "../api.js";
import { $, errorMessage, formToObject } from "../dom.js";

// Keep the one-time token out of the address bar, history and any Referer.
const setupToken = new URLSearchParams(window.location.search).get("token") || "";
window.history.replaceState(null, "", window.location.pathname);

function showError(message) {
  const error = $("#setup-error");
  error.textContent = message;
  error.hidden = false;
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
    await api("/auth/login", { method: "POST", json: { email, password } });
    window.location.assign(`${BASE}/overview`);
  } catch (failure) {
    showError(errorMessage(failure));
    form.querySelector("button").disabled = false;
  }
});
document.body.dataset.ready = "yes";
