import { api, BASE } from "../api.js";
import { $, errorMessage, formToObject } from "../dom.js";

function nextPage() {
  const next = new URLSearchParams(window.location.search).get("next") || "";
  // Only a path inside the dashboard: never another origin.
  return next.startsWith(`${BASE}/`) && !next.startsWith("//") && !next.includes("\\") ? next : `${BASE}/overview`;
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#login-error");
  const { email, password } = formToObject(form);
  error.hidden = true;
  if (!email || !password) {
    error.textContent = "Enter your email and password.";
    error.hidden = false;
    return;
  }
  form.querySelector("button").disabled = true;
  try {
    await api("/auth/login", { method: "POST", json: { email, password } });
    window.location.assign(nextPage());
  } catch (failure) {
    error.textContent = failure.status === 401 ? "Wrong email or password." : errorMessage(failure);
    error.hidden = false;
    form.querySelector("button").disabled = false;
  }
});
document.body.dataset.ready = "yes";
