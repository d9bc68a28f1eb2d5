// An approval card's "Grant more than this request": the `grant` of
// POST /api/v1/approvals/{id}/approve, as `tf approvals approve ID --for --max-uses --where`.
// Constraints are sent as typed (`amount<=10000`, `currency in [usd]`): the server parses
// and validates them with the CLI's grammar and answers 422 naming the problem.

const DURATION = /^(\d{1,7})\s*([smhd]?)$/;
const UNITS = { "": 1, s: 1, m: 60, h: 3600, d: 86400 };

export class GrantInputError extends Error {}

// "90", "90s", "30m", "1h", "2d" -> seconds (as the CLI's parse_duration).
export function parseDuration(text) {
  const found = DURATION.exec(text.trim().toLowerCase());
  if (!found || Number(found[1]) === 0) throw new GrantInputError(`invalid duration “${text}”: write e.g. 30m, 1h or 2d`);
  return Number(found[1]) * UNITS[found[2]];
}

// The grant the card's fields describe; GrantInputError for what can be said before sending.
export function grantFrom(form) {
  const forText = form.grant_for.value.trim();
  const usesText = form.grant_uses.value.trim();
  const where = form.grant_where.value.split("\n").map((line) => line.trim()).filter(Boolean);
  if (!forText && !usesText) throw new GrantInputError("a grant needs a duration and/or a number of uses");
  const grant = { where };
  if (forText) grant.for_seconds = parseDuration(forText);
  if (usesText) {
    const uses = Number(usesText);
    if (!Number.isInteger(uses) || uses < 1) throw new GrantInputError("max uses must be a whole number from 1");
    grant.max_uses = uses;
  }
  return grant;
}

export function grantText(grant) {
  const bounds = [grant.max_uses ? `${grant.max_uses} uses` : "", grant.expires_at ? `until ${new Date(grant.expires_at).toLocaleString()}` : ""];
  return `grant ${grant.id} (${bounds.filter(Boolean).join(", ")})`;
}

// Ids for the grant fields' labels, unique per card.
export function labelGrantFields(node, approvalId) {
  for (const part of ["for", "uses", "where"]) {
    const id = `grant-${part}-${approvalId}`;
    node.querySelector(`.g-${part}-label`).setAttribute("for", id);
    node.querySelector(`.g-${part}`).id = id;
  }
}
