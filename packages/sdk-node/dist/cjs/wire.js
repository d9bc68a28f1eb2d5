"use strict";
/**
 * The wire, both ways: decoded answers into results, error answers into exceptions.
 * Pure functions over status codes, headers and bodies; no I/O. Error bodies are
 * docs/api.md's `{"error": "<code>", "message": "...", ...}`.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.parseActionResult = parseActionResult;
exports.parseDryRun = parseDryRun;
exports.parseActionState = parseActionState;
exports.parseWait = parseWait;
exports.parseExecution = parseExecution;
exports.parseRetryAfter = parseRetryAfter;
exports.errorForResponse = errorForResponse;
const errors_js_1 = require("./errors.js");
const result_js_1 = require("./result.js");
const STATUSES = ["allowed", "denied", "pending_approval"];
const STATE_STATUSES = [...STATUSES, "expired", "executed"];
const OUTCOMES = ["allow", "deny", "require_approval"];
const EXECUTION_STATES = ["executing", "executed", "failed"];
const BY_STATUS = new Map([
    [401, errors_js_1.AuthenticationError],
    [404, errors_js_1.NotFoundError],
    [409, errors_js_1.ConflictError],
]);
function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
function optionalString(value) {
    return typeof value === "string" ? value : undefined;
}
function malformed(what, detail) {
    return new errors_js_1.ServerError(`unexpected answer from the server: ${what}: ${detail}`, { statusCode: 200 });
}
function object(body, what) {
    if (!isObject(body))
        throw malformed(what, "not a JSON object");
    return body;
}
function requiredString(data, key, what) {
    const value = data[key];
    if (typeof value !== "string" || value === "")
        throw malformed(what, `\`${key}\` is missing`);
    return value;
}
function status(data, allowed, what) {
    const value = data["status"];
    if (typeof value !== "string" || !allowed.includes(value)) {
        throw malformed(what, `unknown status \`${String(value)}\``);
    }
    return value;
}
function decision(data, what) {
    const raw = data["decision"];
    if (!isObject(raw))
        throw malformed(what, "`decision` is missing");
    if (typeof raw["outcome"] !== "string" || !OUTCOMES.includes(raw["outcome"])) {
        throw malformed(what, "`decision.outcome` is invalid");
    }
    if (typeof raw["reason"] !== "string")
        throw malformed(what, "`decision.reason` is missing");
    const matched = raw["matched_policies"];
    return {
        ...raw,
        risk_score: typeof raw["risk_score"] === "number" ? raw["risk_score"] : 0,
        matched_policies: Array.isArray(matched) ? matched.map(String) : [],
    };
}
function token(data) {
    const value = data["decision_token"];
    return typeof value === "string" && value !== "" ? value : null;
}
function approval(raw) {
    if (!isObject(raw) || typeof raw["id"] !== "string")
        return null;
    const roles = raw["required_approver_roles"];
    return {
        ...raw,
        required_approver_roles: Array.isArray(roles) ? roles.map(String) : [],
    };
}
function objectOrNull(value) {
    return isObject(value) ? value : null;
}
/** `POST /v1/actions` answer. */
function parseActionResult(body, replayed) {
    const what = "requestAction";
    const data = object(body, what);
    return new result_js_1.ActionResult({
        action_request_id: requiredString(data, "action_request_id", what),
        status: status(data, STATUSES, what),
        decision: decision(data, what),
        decision_token: token(data),
        approval: approval(data["approval"]),
        replayed,
    });
}
/** `POST /v1/actions/dry-run` answer. */
function parseDryRun(body) {
    const what = "dryRun";
    const data = object(body, what);
    const steps = Array.isArray(data["explanation"]) ? data["explanation"] : [];
    const explanation = steps.filter(isObject).map((s) => ({
        step: String(s["step"] ?? ""),
        result: String(s["result"] ?? ""),
        detail: String(s["detail"] ?? ""),
    }));
    return { status: status(data, STATUSES, what), decision: decision(data, what), explanation };
}
/** `GET /v1/actions/{id}` (and `/wait`) answer. */
function parseActionState(body) {
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
function parseWait(body) {
    const state = parseActionState(body);
    if (state.status === "pending_approval")
        return null;
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
function whyNotApproved(state) {
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
function parseExecution(body) {
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
function parseRetryAfter(header, body, now = Date.now()) {
    if (header !== null && header.trim() !== "") {
        const text = header.trim();
        if (/^\d+(\.\d+)?$/.test(text))
            return Number(text);
        const when = Date.parse(text);
        if (!Number.isNaN(when))
            return Math.max(0, (when - now) / 1000);
    }
    if (isObject(body) && typeof body["retry_after"] === "number")
        return Math.max(0, body["retry_after"]);
    return undefined;
}
/** What to do next when `execute` is refused its decision token (401 `invalid_token`), by
 * the check that failed (the body's `reason`, as agentfirewall.tokens names it); any other
 * check (`bad_algorithm`, `wrong_issuer`, `missing_claim`...) gets the default. */
const TOKEN_HINTS = {
    expired: "request the action again for a fresh token",
    not_yet_valid: "check this machine's clock, then request the action again",
    wrong_action: "pass the token that came with this action's own result or approval",
    wrong_agent: "a token is good only for the agent it was issued to: use that agent's key",
    bad_signature: "pass the token exactly as the server gave it (it was altered, or another server signed it)",
    malformed: "pass the token exactly as the server gave it (`result.decision_token`)",
};
/** The error for an error answer; its message is the server's own (a refused decision
 * token's says what to do next). */
function errorForResponse(statusCode, body, retryAfter) {
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
        return new errors_js_1.DecisionTokenRejectedError(`${full}: ${hint}`, { ...details, reason });
    }
    if (statusCode === 429) {
        return new errors_js_1.RateLimitError(full, { ...details, retryAfter: parseRetryAfter(retryAfter, body) });
    }
    if (statusCode === 403) {
        const requiredRole = optionalString(data["required_role"]);
        const yourRole = optionalString(data["your_role"]);
        return new errors_js_1.PermissionDeniedError(full, {
            ...details,
            ...(requiredRole !== undefined && { requiredRole }),
            ...(yourRole !== undefined && { yourRole }),
        });
    }
    if (statusCode === 400 || statusCode === 413 || statusCode === 422) {
        const field = optionalString(data["field"]);
        return new errors_js_1.ValidationError(full, { ...details, ...(field !== undefined && { field }) });
    }
    const cls = BY_STATUS.get(statusCode) ?? (statusCode >= 500 ? errors_js_1.ServerError : errors_js_1.APIError);
    return new cls(full, details);
}
