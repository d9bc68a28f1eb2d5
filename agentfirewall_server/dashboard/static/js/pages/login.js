import { api, BASE } from "../api.js";
import { $, errorMessage, formToObject, setText } from "../dom.js";

function nextPage() {
  let next = new URLSearchParams(window.location.search).get("next") || "";
  const home = `${BASE}/overview`;
  // Only a page of the dashboard: never another origin, nor a path that leaves the
  // dashboard once the browser resolves it (`/dashboard/../api/...`). Never this page
  // again either: a `next` naming the sign-in page (an old link) is followed to its own.
  for (let depth = 0; depth < 4; depth += 1) {
    if (!next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return home;
    const target = new URL(next, window.location.origin);
    if (target.origin !== window.location.origin || !target.pathname.startsWith(`${BASE}/`)) return home;
    if (target.pathname !== `${BASE}/login`) return target.pathname + target.search + target.hash;
    next = target.searchParams.get("next") || "";
  }
  return home;
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#login-error");
  const { email, password } = formToObject(form);
  error.hidden = true;
  if (!email || !password) {
    setText(error, "Enter your email and password.");
    error.hidden = false;
    return;
  }
  form.querySelector("button").disabled = true;
  try {
    await api("/auth/login", { method: "POST", json: { email, password } });
    window.location.assign(nextPage());
  } catch (failure) {
    setText(error, failure.status === 401 ? "Wrong email or password." : errorMessage(failure));
    error.hidden = false;
    form.querySelector("button").disabled = false;
  }
});
// The form's fields are disabled until its handler is attached (and while the script loads,
// or if it fails): the browser itself would send them, the password in a URL.
$("#login-form fieldset").disabled = false;
document.body.dataset.ready = "yes";
