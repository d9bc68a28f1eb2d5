// A kill switch as the API lists it (GET /api/v1/kill-switch): its `scope` (all, connector
// or agent) and `target`. It is always named and addressed with its kind: a bare name is
// ambiguous (the API reads `all` as every request, and refuses a connector type's name
// that an agent bears too).

// The `scope` POST /api/v1/kill-switch takes for it: `all`, `connector:TYPE`, `agent:NAME`.
export function killSwitchScope(k) {
  return k.scope === "all" ? "all" : `${k.scope}:${k.target}`;
}

// What a page calls it: `all`, `connector github`, `agent Deploy Bot`.
export function killSwitchName(k) {
  if (k.unreadable) return "all (unreadable configuration)";
  return k.scope === "all" ? "all" : `${k.scope} ${k.target}`;
}
