/**
 * The wire, both ways: decoded answers into results, error answers into exceptions.
 * Pure functions over status codes, headers and bodies; no I/O. Error bodies are
 * docs/api.md's `{"error": "<code>", "message": "...", ...}`.
 */
import { APIError } from "./errors.js";
import { ActionResult } from "./result.js";
import type { ActionState, DryRunResult, ExecutionResult, WaitOutcome } from "./types.js";
/** `POST /v1/actions` answer. */
export declare function parseActionResult(body: unknown, replayed: boolean): ActionResult;
/** `POST /v1/actions/dry-run` answer. */
export declare function parseDryRun(body: unknown): DryRunResult;
/** `GET /v1/actions/{id}` (and `/wait`) answer. */
export declare function parseActionState(body: unknown): ActionState;
/** `/wait` answer: the outcome, or null while the action is still pending. */
export declare function parseWait(body: unknown): WaitOutcome | null;
/** `POST /v1/actions/{id}/execute` answer. */
export declare function parseExecution(body: unknown): ExecutionResult;
/** Seconds from `Retry-After` (delta-seconds or HTTP date), else the body's `retry_after`. */
export declare function parseRetryAfter(header: string | null, body: unknown, now?: number): number | undefined;
/** The error for an error answer; its message is the server's own (a refused decision
 * token's says what to do next). */
export declare function errorForResponse(statusCode: number, body: unknown, retryAfter: string | null): APIError;
