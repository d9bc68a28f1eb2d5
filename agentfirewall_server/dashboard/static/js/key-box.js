// The one-time API key box with its copy button.
import { $, notify } from "./dom.js";

export function showKey(key) {
  $("#new-key-value").textContent = key;
  $("#new-key").hidden = false;
}

async function copy() {
  const key = $("#new-key-value").textContent;
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
    $("#new-key-value").textContent = "";
    $("#new-key").hidden = true;
  });
}
