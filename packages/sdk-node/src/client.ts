/**
 * `AgentFirewall`: the agent's side of TameFlare's SDK mode (docs/sdk-node.md).
 *
 * Every method is the same three steps: check and build the call, send it through the
 * Transport (retries included), parse the answer in ./wire.ts.
 */

import { randomUUID } from "node:crypto";

import { AuthenticationError, TokenError } from "./errors.js";
import type { RetryPolicy } from "./retry.js";
import { buildActionSpec } from "./spec.js";
import { sleep, Transport, type Call } from "./transport.js";
import type {
  ActionInput,
  ActionResult,
  ActionState,
  ApprovedResult,
  DryRunResult,
  ExecutionResult,
  RequestActionOptions,
  WaitOptions,
  WaitOutcome,
} from "./types.js";
import { VERSION } from "./version.js";
import { parseActionResult, parseActionState, parseDryRun, parseExecution, parseWait } from "./wire.js";

export const DEFAULT_BASE_URL = "http://localhost:3000/api";
/** The server caps one long-poll at 60 s (docs/api.md). */
const MAX_POLL_SECONDS = 60;
/** Seconds to pause before polling again when a server answers a long-poll early. */
const MIN_POLL_INTERVAL_SECONDS = 1;
const DEFAULT_APPROVAL_TIMEOUT_SECONDS = 300;

export interface AgentFirewallOptions {
  /** The agent's key (`aaf_live_…` / `aaf_test_…`); default `process.env.AAF_API_KEY`. */
  apiKey?: string | undefined;
  /** The API root; default `process.env.AAF_BASE_URL`, else `http://localhost:3000/api`. */
  baseUrl?: string | undefined;
  /** Seconds one HTTP attempt may take (long-polls get their wait on top); default 30. */
  timeoutSeconds?: number;
  /** Retries after the first attempt (429, 502/503/504, connection errors); default 3. */
  maxRetries?: number;
  /** First backoff in seconds, doubled each retry up to 8; default 0.5. */
  retryBackoffSeconds?: number;
  /** A 429 asking to wait longer than this is thrown at once; default 60. */
  maxRetryWaitSeconds?: number;
  /** The fetch to use; default the global one (Node 18+). */
  fetch?: typeof globalThis.fetch;
}

function pathId(actionRequestId: string): string {
  return encodeURIComponent(actionRequestId);
}

function monotonicSeconds(): number {
  return performance.now() / 1000;
}

/** `value` when it is a finite number >= `min` (absent: `fallback`), else a RangeError. */
function nonNegative(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    // a string "5" must not read as 5 in the message
    const shown = typeof value === "string" ? `the string \`"${value}"\`` : `\`${String(value)}\``;
    throw new RangeError(`\`${name}\` must be a finite number >= ${min}, not ${shown}`);
  }
  return value;
}

/** The API root: an absolute http(s) URL without credentials, query or fragment. */
function apiRoot(value: unknown): string {
  const shown = typeof value === "string" ? value.slice(0, 200) : String(value);
  let url: URL | undefined;
  try {
    url = typeof value === "string" ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new TypeError(
      `\`baseUrl\` (or AAF_BASE_URL) must be an http:// or https:// URL like \`${DEFAULT_BASE_URL}\`, not \`${shown}\``,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    const what = url.username || url.password ? "credentials" : "a query or fragment";
    throw new TypeError(`\`baseUrl\` (or AAF_BASE_URL) must not hold ${what}: the API key is sent as a header`);
  }
  return (value as string).replace(/\/+$/, "");
}

/** `Idempotency-Key` as the server takes it (1 to 200 characters) and as a header can carry
 * it unchanged: printable ASCII, no space at either end. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?$/;

export class AgentFirewall {
  /** The API root every path is appended to, without a trailing slash. */
  readonly baseUrl: string;
  readonly #transport: Transport;

  constructor(options: AgentFirewallOptions = {}) {
    const apiKey: unknown = options.apiKey || process.env["AAF_API_KEY"];
    if (!apiKey) {
      throw new AuthenticationError("no API key: pass `apiKey` or set AAF_API_KEY", { statusCode: 0 });
    }
    if (typeof apiKey !== "string") throw new TypeError(`\`apiKey\` must be a string, not a ${typeof apiKey}`);
    if (options.fetch !== undefined && typeof options.fetch !== "function") {
      throw new TypeError(`\`fetch\` must be a function, not a ${typeof options.fetch}`);
    }
    this.baseUrl = apiRoot(options.baseUrl || process.env["AAF_BASE_URL"] || DEFAULT_BASE_URL);
    const maxRetries = nonNegative("maxRetries", options.maxRetries, 3);
    if (!Number.isInteger(maxRetries)) throw new RangeError(`\`maxRetries\` must be an integer, not \`${maxRetries}\``);
    const retry: RetryPolicy = {
      maxRetries,
      backoffSeconds: nonNegative("retryBackoffSeconds", options.retryBackoffSeconds, 0.5),
      maxBackoffSeconds: 8,
      maxWaitSeconds: nonNegative("maxRetryWaitSeconds", options.maxRetryWaitSeconds, 60),
    };
    this.#transport = new Transport({
      baseUrl: this.baseUrl,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        Accept: "application/json",
        "User-Agent": `agentfirewall-node/${VERSION}`,
      },
      timeoutSeconds: nonNegative("timeoutSeconds", options.timeoutSeconds, 30, 0.001),
      retry,
      fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
    });
  }

  /** Ask whether the agent may perform `action`; the answer says allowed, denied or pending_approval. */
  async requestAction(action: ActionInput, options: RequestActionOptions = {}): Promise<ActionResult> {
    const json = { action_spec: buildActionSpec(action) };
    const key: unknown = options.idempotencyKey ?? randomUUID();
    if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) {
      const shown = typeof key === "string" ? `\`${key.slice(0, 40)}\`` : `a ${typeof key}`;
      throw new RangeError(
        `\`idempotencyKey\` must be 1 to 200 printable ASCII characters without a space at either end, not ${shown}`,
      );
    }
    const call: Call = {
      method: "POST",
      path: "/v1/actions",
      json,
      headers: { "Idempotency-Key": key },
      replaySafe: true,
    };
    const answer = await this.#transport.send(call);
    return parseActionResult(answer.body, answer.headers.get("Idempotent-Replayed") === "true");
  }

  /** Evaluate `action` and explain the decision; nothing is recorded. */
  async dryRun(action: ActionInput): Promise<DryRunResult> {
    const json = { action_spec: buildActionSpec(action) };
    const answer = await this.#transport.send({ method: "POST", path: "/v1/actions/dry-run", json, replaySafe: true });
    return parseDryRun(answer.body);
  }

  /** The current state of one of this agent's actions. */
  async getAction(actionRequestId: string): Promise<ActionState> {
    const path = `/v1/actions/${pathId(actionRequestId)}`;
    const answer = await this.#transport.send({ method: "GET", path, replaySafe: true });
    return parseActionState(answer.body);
  }

  /**
   * Mode A: the server performs the allowed action with its vaulted credential.
   * `decisionToken` is the allowed result's or the approval's; a missing token throws
   * TokenError without a request. A used token is refused (ConflictError, code `token_used`).
   */
  async execute(actionRequestId: string, decisionToken: string | null | undefined): Promise<ExecutionResult> {
    if (!decisionToken) {
      throw new TokenError("no decision token: execute needs the token of an allowed or approved action");
    }
    const call: Call = {
      method: "POST",
      path: `/v1/actions/${pathId(actionRequestId)}/execute`,
      json: { decision_token: decisionToken },
      replaySafe: false,
    };
    return parseExecution((await this.#transport.send(call)).body);
  }

  /**
   * Wait for a human to decide on a pending action. Resolves to an object with a fresh
   * `decision_token` when approved, and to `null` when denied, expired or not decided
   * within `timeoutSeconds` (default 300). `waitForDecision` tells which.
   */
  async waitForApproval(actionRequestId: string, options: WaitOptions = {}): Promise<ApprovedResult | null> {
    const outcome = await this.waitForDecision(actionRequestId, options);
    return outcome.approved ? outcome : null;
  }

  /** Like waitForApproval, but always resolves to an outcome saying why (`status`). */
  async waitForDecision(actionRequestId: string, options: WaitOptions = {}): Promise<WaitOutcome> {
    const timeout = nonNegative("timeoutSeconds", options.timeoutSeconds, DEFAULT_APPROVAL_TIMEOUT_SECONDS);
    const deadline = monotonicSeconds() + timeout;
    for (let first = true; ; first = false) {
      const remaining = first ? timeout : deadline - monotonicSeconds();
      const poll = Math.max(0, Math.min(MAX_POLL_SECONDS, Math.floor(remaining)));
      if (poll === 0 && remaining > 0) await sleep(remaining); // the last fraction of a second
      const started = monotonicSeconds();
      const outcome = parseWait((await this.#transport.send(this.#waitCall(actionRequestId, poll))).body);
      if (outcome !== null) return outcome;
      if (poll === 0 || deadline - monotonicSeconds() <= 0) {
        const reason = `no decision within ${timeout} seconds`;
        return { approved: false, action_request_id: actionRequestId, status: "timeout", reason, decision: null };
      }
      if (monotonicSeconds() - started < poll / 2) {
        // a server (or proxy) that answers long-polls early: do not spin
        await sleep(Math.min(MIN_POLL_INTERVAL_SECONDS, Math.max(0, deadline - monotonicSeconds())));
      }
    }
  }

  #waitCall(actionRequestId: string, seconds: number): Call {
    return {
      method: "GET",
      path: `/v1/actions/${pathId(actionRequestId)}/wait`,
      query: { timeout: String(seconds) },
      replaySafe: true,
      extraTimeoutSeconds: seconds,
    };
  }

  /** Never shows the key. */
  toString(): string {
    return `AgentFirewall(baseUrl=${this.baseUrl})`;
  }
}
