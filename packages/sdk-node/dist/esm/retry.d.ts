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
export interface RetryPolicy {
    maxRetries: number;
    backoffSeconds: number;
    maxBackoffSeconds: number;
    maxWaitSeconds: number;
}
/** True when a fetch failure shows the request never left this process. */
export declare function isUnsent(cause: unknown): boolean;
/** Whether to try again after `error`. */
export declare function shouldRetry(error: unknown, replaySafe: boolean, policy: RetryPolicy): boolean;
/** Seconds to sleep after failed attempt number `attempt` (1-based). */
export declare function retryDelaySeconds(error: unknown, attempt: number, policy: RetryPolicy): number;
