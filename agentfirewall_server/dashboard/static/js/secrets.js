// Masks what looks like a secret before parameters are shown to an approver. On display
// only: the API returns parameters as the agent sent them.
//
// The rules follow the server's content scanning (agentfirewall/content/), and
// tests/dashboard/test_secret_masking.py keeps them in step with it:
// - a name that says secret (`secretName`, the server's judgement of a name: shown.py
//   `_secret_name`): every value under it is masked, nested ones included
//   (`{"password": {"new": "..."}}`, `{"secrets": {"db": "..."}}`); not a true/false,
//   which is never a secret and may be what the approver decides on (`private: false`);
// - a name that hints at one (SECRET_HINT: the scanner's names, locate.py `_CONTEXT_RE`):
//   a value under it that looks generated is masked (locate.py `_generic`: at least 16
//   characters, letters and digits mixed, 3.5 bits a character, no run of six);
// - inside any string, the part that is a credential is masked, the rest stays: the token
//   formats of the scanner's detectors (detectors.py `SECRETS`) and TameFlare's own keys,
//   a credential after `Bearer`, `Basic` or `token`, a value after a secret name
//   (`?api_key=...`, `"password": "..."`) and the password of a URL (`https://u:p@host`).
export const MASK = "••••••";

// A name says secret by its words (`access_token`, `X-Auth`, `sessionId`: one of
// SECRET_WORDS) or by a part of it (`dbPassword`, `apikey`: one of SECRET_PARTS), never by
// a few letters inside a word: `max_tokens`, `bypass_review`, `private_repo` are shown.
export const SECRET_WORDS = ["auth", "authorization", "cookie", "credential", "credentials",
  "pass", "pwd", "session", "signature", "token"];
export const SECRET_PARTS = ["accesskey", "apikey", "passphrase", "passwd", "password",
  "privatekey", "secret", "accesstoken", "authtoken", "refreshtoken"];
const WORDS = /[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g;
const MARKER = /\[REDACTED:[a-z0-9_]*\]/g; // (a marker's name, `github_token`, says nothing of a value)

export function secretName(name) {
  const plain = name.replace(MARKER, " ");
  const compact = plain.toLowerCase().replace(/[^a-z0-9]/g, "");
  return (plain.match(WORDS) || []).some((word) => SECRET_WORDS.includes(word.toLowerCase()))
    || SECRET_PARTS.some((part) => compact.includes(part));
}

export const SECRET_HINT = /key|secret|token|passw|credential|auth|private|session|cookie/i;

const START = "(?<![A-Za-z0-9_-])"; // as the detectors: a token does not start inside a word
const TOKEN = new RegExp([
  "(?:AKIA|ASIA)[A-Z0-9]{12,}", // AWS access key ids
  "gh[pousr]_[A-Za-z0-9_]+", "github_pat_[A-Za-z0-9_]+", // GitHub
  "[sr]k_(?:live|test)_[A-Za-z0-9]+", // Stripe
  "(?:xox[abposre]|xapp)-[A-Za-z0-9-]+", // Slack
  "sk-[A-Za-z0-9_-]{8,}", // OpenAI, Anthropic
  "eyJ[A-Za-z0-9_-]+\\.eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*", // JWT
  "aaf_(?:live|test)_[A-Za-z0-9]+", "tf[ag]_[A-Za-z0-9]+", // TameFlare agent keys, tokens
  "whsec_[A-Za-z0-9+/=_-]+", // webhook signing secrets
].map((p) => START + p).concat([
  "https://hooks\\.slack\\.com/(?:services|workflows)/[A-Za-z0-9_/]+",
  "-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\\s\\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)",
]).join("|"), "g");
// `Authorization: Bearer <b64token>` and its kin (RFC 6750's token characters)
const SCHEME = /(?<![A-Za-z0-9_-])(bearer|basic|token)[ \t]+([A-Za-z0-9._~+/-]+=*)/dgi;
// `name = value`, `name: value`, `"name": "value"`, `?name=value&`: the value (to the end
// of the text for a quote never closed, as in a text cut short), when the name says secret
const ASSIGNED = /(?<![A-Za-z0-9_-])([A-Za-z][A-Za-z0-9_-]*)["']?[ \t]{0,3}(?:=>|[:=])[ \t]{0,3}(?:(?:bearer|basic|token)[ \t]+)?(?:"([^"]*)"?|'([^']*)'?|([^\s"'&#;,<>]+))/dgi;
// the value the scanner's `generic_secret` judges after a hinting name (detectors.py)
const GENERATED = /^[A-Za-z0-9+/_.=~-]{16,256}/;
const URL_PASSWORD = /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s/?#@:]*:([^\s/?#@]+)@/dg;

function entropy(text) {
  const counts = new Map();
  const chars = Array.from(text);
  for (const char of chars) counts.set(char, (counts.get(char) || 0) + 1);
  let sum = 0;
  for (const n of counts.values()) sum += (n / chars.length) * Math.log2(n / chars.length);
  return chars.length ? -sum : 0;
}

// detectors.py `_generic`: long, random and not a path.
export function looksGenerated(text) {
  const part = text.trim();
  return Array.from(part).length >= 16 && part.split("/").length <= 3 && /\p{Nd}/u.test(part)
    && /\p{L}/u.test(part) && entropy(part) >= 3.5 && !/(.)\1{5}/u.test(part);
}

function basicCredential(token) {
  try { return atob(token).includes(":"); } catch { return false; }
}

// Where in `text` a credential is: [start, end) spans, unsorted, maybe overlapping.
function secretSpans(text) {
  const spans = [];
  for (const m of text.matchAll(TOKEN)) spans.push([m.index, m.index + m[0].length]);
  for (const m of text.matchAll(SCHEME)) {
    const scheme = m[1].toLowerCase(), credential = m[2];
    // (in prose, "the bearer of" is no credential: a word alone is one only at the start)
    const bearer = () => !text.slice(0, m.index).trim() || credential.length >= 16 || /[^A-Za-z]/.test(credential);
    const masked = scheme === "bearer" ? bearer() : scheme === "basic" ? basicCredential(credential) : looksGenerated(credential);
    if (masked) spans.push(m.indices[2]);
  }
  // (each match takes only a name and its value: `https://host/?api_key=...` is matched
  // at `https:` and again at `api_key=`, since a value is not looked into twice)
  ASSIGNED.lastIndex = 0;
  for (let m = ASSIGNED.exec(text); m; m = ASSIGNED.exec(text)) {
    const group = m[2] !== undefined ? 2 : m[3] !== undefined ? 3 : 4;
    const value = m[group];
    const generated = () => { const part = GENERATED.exec(value); return part !== null && looksGenerated(part[0]); };
    if (secretName(m[1]) ? value !== "" : SECRET_HINT.test(m[1]) && generated()) spans.push(m.indices[group]);
    ASSIGNED.lastIndex = m.indices[group][0]; // the value may hold a `name=value` of its own
  }
  for (const m of text.matchAll(URL_PASSWORD)) spans.push(m.indices[1]);
  return spans;
}

// `text` with each credential in it replaced by MASK; MASK alone when nothing else is left
// but an authorization scheme (`Bearer ••••••` is MASK). For text shown whole: a request's
// path, query and body preview.
export function maskInside(text) {
  const spans = [];
  for (const [start, end] of secretSpans(text).sort((a, b) => a[0] - b[0])) {
    const last = spans[spans.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else spans.push([start, end]);
  }
  if (!spans.length) return text;
  let out = "", at = 0;
  for (const [start, end] of spans) {
    out += text.slice(at, start) + MASK;
    at = end;
  }
  out += text.slice(at);
  const rest = out.split(MASK).join("").replace(/\b(bearer|basic|token)\b/gi, "").trim();
  return rest ? out : MASK;
}

const PLAIN = 0, HINTED = 1, SECRET = 2;

function levelOf(name, parent) {
  return Math.max(parent, secretName(name) ? SECRET : SECRET_HINT.test(name) ? HINTED : PLAIN);
}

function mask(value, level) {
  if (Array.isArray(value)) return value.map((item) => mask(item, level));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, mask(item, levelOf(name, level))]));
  }
  if (value === null || value === undefined || typeof value === "boolean") return value;
  if (level === SECRET) return MASK;
  if (typeof value !== "string") return value;
  if (level === HINTED && looksGenerated(value)) return MASK;
  return maskInside(value);
}

export function maskSecrets(value) {
  return mask(value, PLAIN);
}
