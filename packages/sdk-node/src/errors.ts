/**
 * Every error the SDK throws, under one root (the same tree as the Python SDK):
 *
 * ```
 * AgentFirewallError
 * ├── ActionSpecError           the action passed to requestAction/dryRun is malformed (caller's fault)
 * ├── TokenError                execute() was called without a decision token
 * └── APIError                  the server answered with an error (statusCode, code, body, retryable)
 *     ├── AuthenticationError   401: missing, wrong, suspended or revoked key; code `invalid_token` on execute
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

/** Root of every error thrown by @agentfirewall/sdk. */
export class AgentFirewallError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The action passed to requestAction or dryRun is malformed; nothing was sent. */
export class ActionSpecError extends AgentFirewallError {
  readonly field: string | undefined;

  constructor(message: string, field?: string) {
    super(message);
    this.field = field;
  }
}

/** execute() needs the decision token of an allowed (or approved) action. */
export class TokenError extends AgentFirewallError {}

/** Fields every APIError carries. */
export interface APIErrorDetails {
  statusCode: number;
  code?: string | undefined;
  body?: unknown;
  retryable?: boolean | undefined;
}

/** The server answered with an error status (or not at all, for TransportError). */
export class APIError extends AgentFirewallError {
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

  constructor(message: string, details: APIErrorDetails, options?: { cause?: unknown }) {
    super(message, options);
    this.statusCode = details.statusCode;
    this.code = details.code;
    this.body = details.body;
    this.retryable = details.retryable;
  }
}

/** 401: the API key is missing, wrong, suspended or revoked, or a decision token is invalid. */
export class AuthenticationError extends APIError {}

/** 403: the caller's role is too low. */
export class PermissionDeniedError extends APIError {
  readonly requiredRole: string | undefined;
  readonly yourRole: string | undefined;

  constructor(message: string, details: APIErrorDetails & { requiredRole?: string; yourRole?: string }) {
    super(message, details);
    this.requiredRole = details.requiredRole;
    this.yourRole = details.yourRole;
  }
}

/** 404: no such action (an agent only sees its own actions). */
export class NotFoundError extends APIError {}

/** 409: e.g. a decision token already used (`token_used`) or an action not allowed. */
export class ConflictError extends APIError {}

/** 400/413/422: the request was refused as invalid; `field` names the culprit when known. */
export class ValidationError extends APIError {
  readonly field: string | undefined;

  constructor(message: string, details: APIErrorDetails & { field?: string }) {
    super(message, details);
    this.field = details.field;
  }
}

/** 429: over the agent's rate limit; `retryAfter` is the server's wait in seconds. */
export class RateLimitError extends APIError {
  readonly retryAfter: number | undefined;

  constructor(message: string, details: APIErrorDetails & { retryAfter?: number | undefined }) {
    super(message, details);
    this.retryAfter = details.retryAfter;
  }
}

/** 5xx, or a 2xx answer that does not match the API contract. */
export class ServerError extends APIError {}

/** The server could not be reached, or the connection failed before an answer. */
export class TransportError extends APIError {
  /** True when the request certainly never reached the server (connection refused...). */
  readonly unsent: boolean;

  constructor(message: string, options: { unsent: boolean; cause?: unknown }) {
    super(message, { statusCode: 0 }, options.cause === undefined ? undefined : { cause: options.cause });
    this.unsent = options.unsent;
  }
}
