// Masks what looks like a secret before parameters are shown to an approver.
const SECRET_KEY = /(pass(word)?|secret|token|api[_-]?key|authori[sz]ation|cookie|credential|private|signature|session)/i;
const SECRET_VALUE = /^(bearer\s+\S+|aaf_(live|test)_\S+|tf[ag]_\S+|sk_(live|test)_\S+|sk-\S{8,}|gh[pousr]_\S+|github_pat_\S+|xox[abpr]-\S+|whsec_\S+|AKIA[0-9A-Z]{12,})$/i;
export const MASK = "••••••";

export function maskSecrets(value, key = "") {
  if (Array.isArray(value)) return value.map((item) => maskSecrets(item, key));
  if (value && typeof value === "object") {
    const out = {};
    for (const [name, item] of Object.entries(value)) out[name] = maskSecrets(item, name);
    return out;
  }
  if (value === null || value === undefined) return value;
  if (SECRET_KEY.test(key)) return MASK;
  if (typeof value === "string" && SECRET_VALUE.test(value.trim())) return MASK;
  return value;
}
