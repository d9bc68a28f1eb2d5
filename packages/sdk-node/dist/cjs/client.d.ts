/**
 * `AgentFirewall`: the agent's side of TameFlare's SDK mode (docs/sdk-node.md).
 *
 * Every method is the same three steps: check and build the call, send it through the
 * Transport (retries included), parse the answer in ./wire.ts.
 */
import { DEFAULT_BASE_URL } from "./options.js";
import type { ActionResult } from "./result.js";
import type { DecisionClaims, TokenBindings } from "./tokens.js";
import type { ActionInput, ActionState, ApprovedResult, DryRunResult, ExecutionResult, RequestActionOptions, WaitOptions, WaitOutcome } from "./types.js";
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
export declare class AgentFirewall {
    #private;
    /** The API root every path is appended to, without a trailing slash. */
    readonly baseUrl: string;
    /** Where `verifyDecisionToken` fetches the server's public keys. */
    readonly jwksUrl: string;
    constructor(options?: AgentFirewallOptions);
    /** Ask whether the agent may perform `action`; the answer says allowed, denied or pending_approval. */
    requestAction(action: ActionInput, options?: RequestActionOptions): Promise<ActionResult>;
    /** Evaluate `action` and explain the decision; nothing is recorded. */
    dryRun(action: ActionInput): Promise<DryRunResult>;
    /** The current state of one of this agent's actions. */
    getAction(actionRequestId: string): Promise<ActionState>;
    /**
     * Mode A: the server performs the allowed action with its vaulted credential.
     * `decisionToken` is the allowed result's or the approval's; a missing token throws
     * TokenError (code `missing_token`) without a request. A token the server refuses is a
     * DecisionTokenRejectedError (`reason`: the failed check); a used token is refused
     * (ConflictError, code `token_used`).
     */
    execute(actionRequestId: string, decisionToken: string | null | undefined): Promise<ExecutionResult>;
    /**
     * Wait for a human to decide on a pending action. Resolves to an object with a fresh
     * `decision_token` when approved, and to `null` when denied, expired or not decided
     * within `timeoutSeconds` (default 300). `waitForDecision` tells which.
     */
    waitForApproval(actionRequestId: string, options?: WaitOptions): Promise<ApprovedResult | null>;
    /** Like waitForApproval, but always resolves to an outcome saying why (`status`). */
    waitForDecision(actionRequestId: string, options?: WaitOptions): Promise<WaitOutcome>;
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
    verifyDecisionToken(token: string | null | undefined, bindings?: TokenBindings): Promise<DecisionClaims>;
    /** Never shows the key. */
    toString(): string;
}
