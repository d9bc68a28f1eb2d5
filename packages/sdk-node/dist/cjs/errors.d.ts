/**
 * Every error the SDK throws, under one root (the same tree as the Python SDK):
 *
 * ```
 * AgentFirewallError
 * ├── ActionSpecError           the action passed to requestAction/dryRun is malformed (caller's fault)
 * ├── TokenError                a decision token refused by the client (code): execute() without one,
 * │                             or one verifyDecisionToken() does not accept
 * ├── ActionDeniedError         raiseForDenial(): the firewall said no (decision, actionRequestId)
 * ├── ApprovalError             raiseForDenial(): the action waits for a person (status, actionRequestId)
 * └── APIError                  the server answered with an error (statusCode, code, body, retryable)
 *     ├── AuthenticationError   401: missing, wrong, suspended or revoked key
 *     │   └── DecisionTokenRejectedError  401 `invalid_token` on execute (reason: the failed check)
 *     ├── PermissionDeniedError 403: role too low (requiredRole, yourRole)
 *     ├── NotFoundError         404
 *     ├── ConflictError         409: code `token_used` (replayed token) or `not_allowed`
 *     ├── ValidationError       400/413/422: the server's message says what is wrong (field)
 *     ├── RateLimitError        429: retryAfter seconds
 *     ├── ServerError           5xx, or an answer that is not what the API promises
 *     └── TransportError        the server could not be reached
 * ```
 *
 * Messages are lowercase, without a final period, user input in backticks. No error ever
 * carries the API key or a request header.
 */
import type { Decision } from "./types.js";
/** Root of every error thrown by @agentfirewall/sdk. */
export declare class AgentFirewallError extends Error {
    constructor(message: string, options?: {
        cause?: unknown;
    });
}
/** The action passed to requestAction or dryRun is malformed; nothing was sent. */
export declare class ActionSpecError extends AgentFirewallError {
    readonly field: string | undefined;
    constructor(message: string, field?: string);
}
/**
 * A decision token the client refused; `code` says why, with the Python SDK's names. From
 * execute(), before anything was sent: `missing_token` (`null`, as on a denied or held
 * result) or `malformed` (not a string). From verifyDecisionToken(): the check that failed
 * (`malformed`, `bad_algorithm`, `bad_signature`, `expired`, `not_yet_valid`,
 * `wrong_issuer`, `wrong_audience`, `wrong_action`, `wrong_agent`, `missing_claim`), or
 * `bad_key` when the server's JWKS holds no usable key or the token names one it cannot
 * load. A token the server refuses at
 * execute is a DecisionTokenRejectedError instead.
 */
export declare class TokenError extends AgentFirewallError {
    readonly code: string;
    constructor(message: string, options?: {
        code?: string;
        cause?: unknown;
    });
}
/** The firewall denied the action: `raiseForDenial()` on a denied result; `decision` says why. */
export declare class ActionDeniedError extends AgentFirewallError {
    readonly decision: Decision;
    readonly actionRequestId: string;
    constructor(decision: Decision, actionRequestId: string);
}
/**
 * The action may not go ahead yet: `raiseForDenial()` on a held result (`status` is
 * `pending_approval`). `waitForApproval(actionRequestId)` waits for the person's decision.
 */
export declare class ApprovalError extends AgentFirewallError {
    readonly status: string;
    readonly actionRequestId: string;
    constructor(message: string, details: {
        status: string;
        actionRequestId: string;
    });
}
/** Fields every APIError carries. */
export interface APIErrorDetails {
    statusCode: number;
    code?: string | undefined;
    body?: unknown;
    retryable?: boolean | undefined;
}
/** The server answered with an error status (or not at all, for TransportError). */
export declare class APIError extends AgentFirewallError {
    /** HTTP status, 0 when no answer came (TransportError). */
    readonly statusCode: number;
    /** The `error` code of the body, e.g. `unauthorized`, `token_used`, `rate_limited`. */
    readonly code: string | undefined;
    /** The decoded answer body (JSON value or text). */
    readonly body: unknown;
    /**
     * The server's word on sending the same request again, when its answer gives one: `true`
     * when nothing was done (an execute whose upstream was never reached: the same decision
     * token may be used again), `false` when it must not be repeated (an execute that may have
     * reached the upstream), `undefined` when the answer does not say.
     */
    readonly retryable: boolean | undefined;
    constructor(message: string, details: APIErrorDetails, options?: {
        cause?: unknown;
    });
}
/** 401: the API key is missing, wrong, suspended or revoked, or a decision token is invalid. */
export declare class AuthenticationError extends APIError {
}
/**
 * 401 `invalid_token` from execute: the server refused the decision token (the API key was
 * accepted). `code` stays `invalid_token`, as for any 401 of this kind; `reason` is the check
 * that failed, the server's `reason` and the Python SDK's `DecisionTokenRejected.code`:
 * `malformed`, `bad_algorithm`, `bad_signature`, `expired`, `not_yet_valid`, `wrong_issuer`,
 * `wrong_audience`, `wrong_action`, `wrong_agent` or `missing_claim` (`invalid_token` when the
 * answer names none). The message ends with what to do next.
 */
export declare class DecisionTokenRejectedError extends AuthenticationError {
    readonly reason: string;
    constructor(message: string, details: APIErrorDetails & {
        reason: string;
    });
}
/** 403: the caller's role is too low. */
export declare class PermissionDeniedError extends APIError {
    readonly requiredRole: string | undefined;
    readonly yourRole: string | undefined;
    constructor(message: string, details: APIErrorDetails & {
        requiredRole?: string;
        yourRole?: string;
    });
}
/** 404: no such action (an agent only sees its own actions). */
export declare class NotFoundError extends APIError {
}
/** 409: e.g. a decision token already used (`token_used`) or an action not allowed. */
export declare class ConflictError extends APIError {
}
/** 400/413/422: the request was refused as invalid; `field` names the culprit when known. */
export declare class ValidationError extends APIError {
    readonly field: string | undefined;
    constructor(message: string, details: APIErrorDetails & {
        field?: string;
    });
}
/** 429: over the agent's rate limit; `retryAfter` is the server's wait in seconds. */
export declare class RateLimitError extends APIError {
    readonly retryAfter: number | undefined;
    constructor(message: string, details: APIErrorDetails & {
        retryAfter?: number | undefined;
    });
}
/** 5xx, or a 2xx answer that does not match the API contract. */
export declare class ServerError extends APIError {
}
/** The server could not be reached, or the connection failed before an answer. */
export declare class TransportError extends APIError {
    /** True when the request certainly never reached the server (connection refused...). */
    readonly unsent: boolean;
    constructor(message: string, options: {
        unsent: boolean;
        cause?: unknown;
    });
}
