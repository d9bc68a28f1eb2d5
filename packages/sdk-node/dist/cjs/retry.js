"use strict";
/**
 * Retry arithmetic: which failures are retried and how long to wait first. Pure functions;
 * the same rules as the Python SDK (agentfirewall/client/_retry.py):
 *
 * - 429 is always retried (the server refused before doing anything), after the
 *   `Retry-After` it asked for; a wait longer than `maxRetryWaitSeconds` is not worth it and
 *   the RateLimitError is thrown at once.
 * - A connection that never opened (refused, unknown host, connect timeout) is retried:
 *   the request never reached the server.
 * - 502/503/504, timeouts and dropped connections may have reached the server, so they are
 *   retried only for calls safe to replay: reads, and `requestAction`, whose
 *   `Idempotency-Key` the server de-duplicates on. `execute` is never replayed once it
 *   may have been sent.
 * - An answer that says not to retry (`retryable: false`: an execute that may have reached
 *   the upstream, an answer larger than the SDK reads) is not retried.
 * - At most `maxRetries` retries; the backoff doubles from `backoffSeconds` up to
 *   `maxBackoffSeconds`.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.isUnsent = isUnsent;
exports.shouldRetry = shouldRetry;
exports.retryDelaySeconds = retryDelaySeconds;
const errors_js_1 = require("./errors.js");
const RETRY_STATUSES = new Set([502, 503, 504]);
/** Error codes of a connection that never opened (undici / Node's net). */
const UNSENT_CODES = new Set([
    "ECONNREFUSED",
    "ENOTFOUND",
    "EAI_AGAIN",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "UND_ERR_CONNECT_TIMEOUT",
]);
/** True when a fetch failure shows the request never left this process. */
function isUnsent(cause) {
    for (let error = cause, depth = 0; error instanceof Error && depth < 5; depth += 1) {
        const code = error.code;
        if (typeof code === "string" && UNSENT_CODES.has(code))
            return true;
        error = error.cause;
    }
    return false;
}
/** Whether to try again after `error`. */
function shouldRetry(error, replaySafe, policy) {
    if (error instanceof errors_js_1.RateLimitError) {
        return error.retryAfter === undefined || error.retryAfter <= policy.maxWaitSeconds;
    }
    if (error instanceof errors_js_1.TransportError)
        return replaySafe || error.unsent;
    if (error instanceof errors_js_1.ServerError) {
        return replaySafe && RETRY_STATUSES.has(error.statusCode) && error.retryable !== false;
    }
    return false;
}
/** Seconds to sleep after failed attempt number `attempt` (1-based). */
function retryDelaySeconds(error, attempt, policy) {
    if (error instanceof errors_js_1.RateLimitError && error.retryAfter !== undefined) {
        return Math.min(error.retryAfter, policy.maxWaitSeconds);
    }
    return Math.min(policy.backoffSeconds * 2 ** (attempt - 1), policy.maxBackoffSeconds);
}
