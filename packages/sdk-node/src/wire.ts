/**
 * The wire, both ways: decoded answers into results, error answers into exceptions.
 * Pure functions over status codes, headers and bodies; no I/O. Error bodies are
 * docs/api.md's `{"error": "<code>", "message": "...", ...}`.
 */

import {
  APIError,
  type APIErrorDetails,
  AuthenticationError,
  ConflictError,
  DecisionTokenRejectedError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ValidationError,
} from "./errors.js";
import { ActionResult } from "./result.js";
import type {
  ActionState,
  ActionStateStatus,
  ActionStatus,
  ApprovalInfo,
  Decision,
  DryRunResult,
  ExecutionResult,
  ExecutionState,
  ExplanationStep,
  JsonObject,
  JsonValue,
  WaitOutcome,
} from "./types.js";

const STATUSES: readonly ActionStatus[] = ["allowed", "denied", "pending_approval"];
const STATE_STATUSES: readonly ActionStateStatus[] = [...STATUSES, "expired", "executed"];
const OUTCOMES: readonly string[] = ["allow", "deny", "require_approval"];
const EXECUTION_STATES: readonly ExecutionState[] = ["executing", "executed", "failed"];

type APIErrorClass = new (message: string, details: APIErrorDetails) => APIError;

const BY_STATUS: ReadonlyMap<number, APIErrorClass> = new Map<number, APIErrorClass>([
  [401, AuthenticationError],
  [404, NotFoundError],
  [409, ConflictError],
]);

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function malformed(what: string, detail: string): ServerError {
  return new ServerError(`unexpected answer from the server: ${what}: ${detail}`, { statusCode: 200 });
}

function object(body: unknown, what: string): JsonObject {
  if (!isObject(body)) throw malformed(what, "not a JSON object");
  return body;
}

function requiredString(data: JsonObject, key: string, what: string): string {
  const value = data[key];
  if (typeof value !== "string" || value === "") throw malformed(what, `\`${key}\` is missing`);
  return value;
}

function status<T extends string>(data: JsonObject, allowed: readonly T[], what: string): T {
  const value = data["status"];
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw malformed(what, `unknown status \`${String(value)}\``);
  }
  return value as T;
}

function decision(data: JsonObject, what: string): Decision {
  const raw = data["decision"];
  if (!isObject(raw)) throw malformed(what, "`decision` is missing");
  if (typeof raw["outcome"] !== "string" || !OUTCOMES.includes(raw["outcome"])) {
    throw malformed(what, "`decision.outcome` is invalid");
  }
  if (typeof raw["reason"] !== "string") throw malformed(what, "`decision.reason` is missing");
  const matched = raw["matched_policies"];
  return {
    ...(raw as unknown as Decision),
    risk_score: typeof raw["risk_score"] === "number" ? raw["risk_score"] : 0,
    matched_policies: Array.isArray(matched) ? matched.map(String) : [],
  };
}

function token(data: JsonObject): string | null {
  const value = data["decision_token"];
  return typeof value === "string" && value !== "" ? value : null;
}

function approval(raw: JsonValue | undefined): ApprovalInfo | null {
  if (!isObject(raw) || typeof raw["id"] !== "string") return null;
  const roles = raw["required_approver_roles"];
  return {
    ...(raw as unknown as ApprovalInfo),
    required_approver_roles: Array.isArray(roles) ? roles.map(String) : [],
  };
}

function objectOrNull(value: JsonValue | undefined): JsonObject | null {
  return isObject(value) ? value : null;
}

/** `POST /v1/actions` answer. */
export function parseActionResult(body: unknown, replayed: boolean): ActionResult {
  const what = "requestAction";
  const data = object(body, what);
  return new ActionResult({
    action_request_id: requiredString(data, "action_request_id", what),
    status: status(data, STATUSES, what),
    decision: decision(data, what),
    decision_token: token(data),
    approval: approval(data["approval"]),
    replayed,
  });
}

/** `POST /v1/actions/dry-run` answer. */
export function parseDryRun(body: unknown): DryRunResult {
  const what = "dryRun";
  const data = object(body, what);
  const steps = Array.isArray(data["explanation"]) ? data["explanation"] : [];
  const explanation: ExplanationStep[] = steps.filter(isObject).map((s) => ({
    step: String(s["step"] ?? ""),
    result: String(s["result"] ?? ""),
    detail: String(s["detail"] ?? ""),
  }));
  return { status: status(data, STATUSES, what), decision: decision(data, what), explanation };
}

/** `GET /v1/actions/{id}` (and `/wait`) answer. */
export function parseActionState(body: unknown): ActionState {
  const what = "getAction";
  const data = object(body, what);
  return {
    action_request_id: requiredString(data, "action_request_id", what),
    status: status(data, STATE_STATUSES, what),
    decision: decision(data, what),
    action_spec: objectOrNull(data["action_spec"]) ?? {},
    agent: data["agent"] ?? null,
    created_at: optionalString(data["created_at"]) ?? null,
    approval: objectOrNull(data["approval"]),
    executed: data["executed"] === true,
    execution: objectOrNull(data["execution"]),
    execution_state: EXECUTION_STATES.find((known) => known === data["execution_state"]) ?? null,
    decision_token: token(data),
  };
}

/** `/wait` answer: the outcome, or null while the action is still pending. */
export function parseWait(body: unknown): WaitOutcome | null {
  const state = parseActionState(body);
  if (state.status === "pending_approval") return null;
  const base = { action_request_id: state.action_request_id, decision: state.decision };
  if (state.status === "allowed" && state.decision_token !== null) {
    return { ...base, approved: true, status: "allowed", decision_token: state.decision_token };
  }
  // allowed without a token: its token was already spent on an execution
  const why = state.status === "allowed" ? "executed" : state.status;
  return { ...base, approved: false, status: why, reason: whyNotApproved(state) };
}

/** A person's denial (who, and their note), an execution that took the token, or an
 * expiry; else the decision's reason (which, for a held action, is only why it was held). */
function whyNotApproved(state: ActionState): string {
  const approval = state.approval ?? {};
  if (state.status === "denied" && approval["status"] === "denied") {
    const by = optionalString(approval["decided_by"]) || "an approver";
    const note = optionalString(approval["note"]);
    return note ? `denied by ${by}: ${note}` : `denied by ${by}`;
  }
  if (state.status === "executed" || state.status === "allowed") {
    // allowed without a fresh token: an execution already took it
    const where = state.execution_state === "executing" ? "is being executed" : "was already executed";
    return `the action ${where}: its decision token was used; request the action again to act again`;
  }
  if (state.status === "expired") {
    const expiry = optionalString(approval["expires_at"]);
    return expiry ? `no decision before the approval expired at ${expiry}` : "no decision before the approval expired";
  }
  return state.decision.reason;
}

/** `POST /v1/actions/{id}/execute` answer. */
export function parseExecution(body: unknown): ExecutionResult {
  const what = "execute";
  const data = object(body, what);
  const result = objectOrNull(data["result"]) ?? {};
  const headers = objectOrNull(result["headers"]) ?? {};
  const code = result["status_code"];
  return {
    action_request_id: requiredString(data, "action_request_id", what),
    status: optionalString(data["status"]) ?? "executed",
    result: {
      status_code: typeof code === "number" ? code : 0,
      headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, String(v)])),
      body: result["body"] ?? null,
    },
  };
}

/** Seconds from `Retry-After` (delta-seconds or HTTP date), else the body's `retry_after`. */
export function parseRetryAfter(header: string | null, body: unknown, now: number = Date.now()): number | undefined {
  if (header !== null && header.trim() !== "") {
    const text = header.trim();
    if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
    const when = Date.parse(text);
    if (!Number.isNaN(when)) return Math.max(0, (when - now) / 1000);
  }
  if (isObject(body) && typeof body["retry_after"] === "number") return Math.max(0, body["retry_after"]);
  return undefined;
}

/** What to do next when `execute` is refused its decision token (401 `invalid_token`), by
 * the check that failed (the body's `reason`, as agentfirewall.tokens names it); any other
 * check (`bad_algorithm`, `wrong_issuer`, `missing_claim`...) gets the default. */
const TOKEN_HINTS: Readonly<Record<string, string>> = {
  expired: "request the action again for a fresh token",
  not_yet_valid: "check this machine's clock, then request the action again",
  wrong_action: "pass the token that came with this action's own result or approval",
  wrong_agent: "a token is good only for the agent it was issued to: use that agent's key",
  bad_signature: "pass the token exactly as the server gave it (it was altered, or another server signed it)",
  malformed: "pass the token exactly as the server gave it (`result.decision_token`)",
};

/** The error for an error answer; its message is the server's own (a refused decision
 * token's says what to do next). */
export function errorForResponse(statusCode: number, body: unknown, retryAfter: string | null): APIError {
  const data = isObject(body) ? body : {};
  const code = optionalString(data["error"]);
  const message = optionalString(data["message"]);
  const text = message ?? (typeof body === "string" && body !== "" ? body : `HTTP ${statusCode}`);
  const full = code !== undefined ? `${code}: ${text}` : text;
  const said = data["retryable"];
  const details = { statusCode, code, body, retryable: typeof said === "boolean" ? said : undefined };
  if (statusCode === 401 && code === "invalid_token") {
    const reason = optionalString(data["reason"]) ?? "invalid_token";
    const hint = TOKEN_HINTS[reason] ?? "request the action again for a fresh token";
    return new DecisionTokenRejectedError(`${full}: ${hint}`, { ...details, reason });
  }
  if (statusCode === 429) {
    return new RateLimitError(full, { ...details, retryAfter: parseRetryAfter(retryAfter, body) });
  }
  if (statusCode === 403) {
    const requiredRole = optionalString(data["required_role"]);
    const yourRole = optionalString(data["your_role"]);
    return new PermissionDeniedError(full, {
      ...details,
      ...(requiredRole !== undefined && { requiredRole }),
      ...(yourRole !== undefined && { yourRole }),
    });
  }
  if (statusCode === 400 || statusCode === 413 || statusCode === 422) {
    const field = optionalString(data["field"]);
    return new ValidationError(full, { ...details, ...(field !== undefined && { field }) });
  }
  const cls = BY_STATUS.get(statusCode) ?? (statusCode >= 500 ? ServerError : APIError);
  return new cls(full, details);
}
