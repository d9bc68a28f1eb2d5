// A line diff (longest common subsequence) for policy versions.
import { el } from "./dom.js";

export function diffLines(before, after) {
  const a = before.split("\n"), b = after.split("\n");
  const n = a.length, m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: " ", line: a[i] }); i += 1; j += 1; }
    else if (table[i + 1][j] >= table[i][j + 1]) { out.push({ op: "-", line: a[i] }); i += 1; }
    else { out.push({ op: "+", line: b[j] }); j += 1; }
  }
  while (i < n) { out.push({ op: "-", line: a[i] }); i += 1; }
  while (j < m) { out.push({ op: "+", line: b[j] }); j += 1; }
  return out;
}

export function renderDiff(pre, before, after) {
  pre.replaceChildren();
  for (const { op, line } of diffLines(before, after)) {
    const cls = op === "+" ? "diff-add" : op === "-" ? "diff-del" : "diff-same";
    pre.append(el("span", { class: cls, text: `${op} ${line}\n` }));
  }
}
