/**
 * `AgentFirewall`: the agent's side of TameFlare's SDK mode (docs/sdk-node.md).
 *
 * Every method is the same three steps: check and build the call, send it through the
 * Transport (retries included), parse the answer in ./wire.ts.
 */

import { randomUUID } from "node:crypto";

import { TokenError } from "./errors.js";
import { bindingsOf, JwksCache, jwksUrlFor, unixSeconds, verifyWithKeys, type JwksKeys } from "./jwks.js";
import { actionIdOf, apiKeyOf, apiRootOf, DEFAULT_BASE_URL, jwksUrlOf, kindOf, optionsOf, seconds } from "./options.js";
import type { ActionResult } from "./result.js";
import type { RetryPolicy } from "./retry.js";
import { buildActionSpec } from "./spec.js";
import type { DecisionClaims, TokenBindings } from "./tokens.js";
import { sleep, Transport, type Call } from "./transport.js";
import type {
  ActionInput,
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

/** The server caps one long-poll at 60 s (docs/api.md). */
const MAX_POLL_SECONDS = 60;
/** Seconds to pause before polling again when a server answers a long-poll early. */
const MIN_POLL_INTERVAL_SECONDS = 1;
const DEFAULT_APPROVAL_TIMEOUT_SECONDS = 300;

const CLIENT_OPTIONS = [
  "apiKey",
  "baseUrl",
  "timeoutSeconds",
  "maxRetries",
  "retryBackoffSeconds",
  "maxRetryWaitSeconds",
  "fetch",
  "jwksUrl",
] as const;
const WAIT_OPTIONS = ["timeoutSeconds"] as const;
const REQUEST_OPTIONS = ["idempotencyKey"] as const;

export { DEFAULT_BASE_URL };

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
  /** Where `verifyDecisionToken` fetches the server's public keys (never with the API key);
   * default the server's root (`baseUrl` without `/api`) + `/.well-known/jwks.json`. */
  jwksUrl?: string | undefined;
}

function pathId(actionRequestId: unknown): string {
  return encodeURIComponent(actionIdOf(actionRequestId));
}

function monotonicSeconds(): number {
  return performance.now() / 1000;
}

/** `Idempotency-Key` as the server takes it (1 to 200 characters) and as a header can carry
 * it unchanged: printable ASCII, no space at either end. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?$/;

export class AgentFirewall {
  /** The API root every path is appended to, without a trailing slash. */
  readonly baseUrl: string;
  /** Where `verifyDecisionToken` fetches the server's public keys. */
  readonly jwksUrl: string;
  readonly #transport: Transport;
  readonly #jwks = new JwksCache();
  /** The JWKS fetch under way, which every verification waiting for keys shares. */
  #jwksFetch: Promise<JwksKeys> | undefined;

  constructor(options?: AgentFirewallOptions) {
    const given = optionsOf(options, "`new AgentFirewall()`", CLIENT_OPTIONS);
    const apiKey = apiKeyOf(given.apiKey);
    if (given.fetch !== undefined && typeof given.fetch !== "function") {
      throw new TypeError(`\`fetch\` must be a function, not ${kindOf(given.fetch)}`);
    }
    this.baseUrl = apiRootOf(given.baseUrl || process.env["AAF_BASE_URL"] || DEFAULT_BASE_URL, apiKey);
    this.jwksUrl = given.jwksUrl === undefined ? jwksUrlFor(this.baseUrl) : jwksUrlOf(given.jwksUrl, apiKey);
    const maxRetries = seconds("maxRetries", given.maxRetries, 3);
    if (!Number.isInteger(maxRetries)) throw new RangeError(`\`maxRetries\` must be an integer, not \`${maxRetries}\``);
    const retry: RetryPolicy = {
      maxRetries,
      backoffSeconds: seconds("retryBackoffSeconds", given.retryBackoffSeconds, 0.5),
      maxBackoffSeconds: 8,
      maxWaitSeconds: seconds("maxRetryWaitSeconds", given.maxRetryWaitSeconds, 60),
    };
    this.#transport = new Transport({
      baseUrl: this.baseUrl,
      apiKey,
      headers: {
        Accept: "application/json",
        "User-Agent": `agentfirewall-node/${VERSION}`,
      },
      timeoutSeconds: seconds("timeoutSeconds", given.timeoutSeconds, 30, 0.001),
      retry,
      fetch: given.fetch ?? globalThis.fetch.bind(globalThis),
    });
  }

  /** Ask whether the agent may perform `action`; the answer says allowed, denied or pending_approval. */
  async requestAction(action: ActionInput, options?: RequestActionOptions): Promise<ActionResult> {
    const json = { action_spec: buildActionSpec(action) };
    const key: unknown = optionsOf(options, "requestAction()", REQUEST_OPTIONS).idempotencyKey ?? randomUUID();
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
   * TokenError (code `missing_token`) without a request. A token the server refuses is a
   * DecisionTokenRejectedError (`reason`: the failed check); a used token is refused
   * (ConflictError, code `token_used`).
   */
  async execute(actionRequestId: string, decisionToken: string | null | undefined): Promise<ExecutionResult> {
    const path = `/v1/actions/${pathId(actionRequestId)}/execute`;
    if (decisionToken !== null && decisionToken !== undefined && typeof decisionToken !== "string") {
      throw new TokenError(
        `the decision token must be a string (\`result.decision_token\`), not ${kindOf(decisionToken)}`,
        { code: "malformed" },
      );
    }
    if (!decisionToken) {
      throw new TokenError(
        `no decision token for \`${actionRequestId}\`: only an allowed or approved action can be executed ` +
          "(a held one: `waitForApproval` gives the token)",
        { code: "missing_token" },
      );
    }
    const call: Call = { method: "POST", path, json: { decision_token: decisionToken }, replaySafe: false };
    return parseExecution((await this.#transport.send(call)).body);
  }

  /**
   * Wait for a human to decide on a pending action. Resolves to an object with a fresh
   * `decision_token` when approved, and to `null` when denied, expired or not decided
   * within `timeoutSeconds` (default 300). `waitForDecision` tells which.
   */
  async waitForApproval(actionRequestId: string, options?: WaitOptions): Promise<ApprovedResult | null> {
    const outcome = await this.#wait(actionRequestId, options, "waitForApproval()");
    return outcome.approved ? outcome : null;
  }

  /** Like waitForApproval, but always resolves to an outcome saying why (`status`). */
  async waitForDecision(actionRequestId: string, options?: WaitOptions): Promise<WaitOutcome> {
    return this.#wait(actionRequestId, options, "waitForDecision()");
  }

  async #wait(actionRequestId: string, options: WaitOptions | undefined, what: string): Promise<WaitOutcome> {
    pathId(actionRequestId);
    const given = optionsOf(options, what, WAIT_OPTIONS);
    // Infinity: no deadline of its own (the approval's expiry ends the wait)
    const timeout = seconds("timeoutSeconds", given.timeoutSeconds, DEFAULT_APPROVAL_TIMEOUT_SECONDS, 0, true);
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

  #waitCall(actionRequestId: string, pollSeconds: number): Call {
    return {
      method: "GET",
      path: `/v1/actions/${pathId(actionRequestId)}/wait`,
      query: { timeout: String(pollSeconds) },
      replaySafe: true,
      extraTimeoutSeconds: pollSeconds,
    };
  }

  /**
   * Check a decision token offline, before acting on it (Mode B): its ES256 signature
   * against the server's JWKS (fetched from `jwksUrl` without the API key, cached five
   * minutes, fetched again once when a signature does not verify: key rotation), its
   * issuer, audience and times and, for each binding given, the action id, the action
   * hash and the agent it was issued for. Resolves to the token's claims; throws
   * TokenError whose `code` says which check failed (the Python SDK's
   * `verify_decision_token`, with the same codes; a `null` token, as on a denied or held
   * result, is `malformed`). Single use is checked by the server only, at `execute`.
   */
  async verifyDecisionToken(token: string | null | undefined, bindings?: TokenBindings): Promise<DecisionClaims> {
    const binding = bindingsOf(bindings, "verifyDecisionToken()");
    const now = monotonicSeconds();
    const keys = this.#jwks.current(now) ?? (await this.#fetchJwks(now));
    try {
      return verifyWithKeys(token, keys, unixSeconds(), binding);
    } catch (error) {
      const rotated = error instanceof TokenError && error.code === "bad_signature" && this.#jwks.mayRefresh(now);
      if (!rotated) throw error;
    }
    return verifyWithKeys(token, await this.#fetchJwks(now), unixSeconds(), binding);
  }

  #fetchJwks(now: number): Promise<JwksKeys> {
    this.#jwksFetch ??= this.#transport
      .send({ method: "GET", path: "", publicUrl: { url: this.jwksUrl, option: "jwksUrl" }, replaySafe: true })
      .then((answer) => this.#jwks.store(answer.body, now))
      .finally(() => (this.#jwksFetch = undefined));
    return this.#jwksFetch;
  }

  /** Never shows the key. */
  toString(): string {
    return `AgentFirewall(baseUrl=${this.baseUrl})`;
  }
}
