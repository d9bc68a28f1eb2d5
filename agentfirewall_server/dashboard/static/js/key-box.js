// The one-time API key box with its copy button, and how a stored key is shown.
import { $, el, notify, setText } from "./dom.js";

// An agent's key by its prefix only; a revoked agent has none left.
export function keyPrefix(agent) {
  return el("code", { text: agent.key_prefix ? `${agent.key_prefix}…` : "—" });
}

let shownKey = "";

export function showKey(key) {
  shownKey = key;
  setText("#new-key-value", key);
  $("#new-key").hidden = false;
}

async function copy() {
  const key = shownKey;
  try {
    await navigator.clipboard.writeText(key);
    notify("API key copied to the clipboard.");
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("#new-key-value"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    notify("Select-all done: press Ctrl+C (or ⌘C) to copy the key.");
  }
}

export function wireKeyBox() {
  $("#copy-key").addEventListener("click", copy);
  const dismiss = $("#dismiss-key");
  if (dismiss) dismiss.addEventListener("click", () => {
    shownKey = "";
    setText("#new-key-value", "");
    $("#new-key").hidden = true;
  });
}
