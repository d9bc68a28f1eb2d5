/**
 * The wire shapes of docs/api.md, as the seed's snippets read them: results keep the
 * server's snake_case field names (`result.action_request_id`, `result.decision_token`,
 * `result.decision.reason`); options the caller writes are camelCase. `ActionResult`, the
 * one result with a method (`raiseForDenial`), is a class in ./result.ts.
 */
/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
    [key: string]: JsonValue;
};
/** A JSON object. */
export type JsonObject = {
    [key: string]: JsonValue;
};
/** Where an action lands. */
export interface Resource {
    provider?: string;
    account?: string;
    target?: string;
    environment?: string;
}
/** What the agent wants to do: `requestAction` and `dryRun` take this. */
export interface ActionInput {
    /** Dotted lowercase action type, e.g. `github.pr.merge`. */
    type: string;
    resource?: Resource;
    parameters?: JsonObject;
    riskHints?: JsonObject;
}
/** Options of one `requestAction` call. */
export interface RequestActionOptions {
    /** Sent as `Idempotency-Key`; one is generated per call when absent (retries reuse it). */
    idempotencyKey?: string;
}
export type ActionStatus = "allowed" | "denied" | "pending_approval";
export type Outcome = "allow" | "deny" | "require_approval";
/** The firewall's decision, exactly as the server sends it. */
export interface Decision {
    outcome: Outcome;
    reason: string;
    risk_score: number;
    matched_policies: string[];
    matched_rules?: string[];
    errors?: string[];
    default_applied?: boolean;
    enforcement_level?: string;
    decided_outcome?: Outcome;
    /** Under monitor or soft enforcement, what full enforcement would have done (`would_deny`...). */
    would_outcome?: string | null;
    kill_switch?: boolean;
    approval?: JsonValue;
}
/** The approval a pending action waits for. */
export interface ApprovalInfo {
    id: string;
    expires_at?: string | null;
    required_approver_roles?: string[];
}
/** One step of a dry run's explanation. */
export interface ExplanationStep {
    step: string;
    result: string;
    detail: string;
}
/** Answer of `dryRun` (`POST /api/v1/actions/dry-run`): nothing is recorded. */
export interface DryRunResult {
    status: ActionStatus;
    decision: Decision;
    explanation: ExplanationStep[];
}
export type ActionStateStatus = ActionStatus | "expired" | "executed";
export type ExecutionState = "executing" | "executed" | "failed";
/** Answer of `getAction` (`GET /api/v1/actions/{id}`). */
export interface ActionState {
    action_request_id: string;
    status: ActionStateStatus;
    decision: Decision;
    action_spec: JsonObject;
    agent: JsonValue;
    created_at: string | null;
    approval: JsonObject | null;
    executed: boolean;
    execution: JsonObject | null;
    /** Where Mode A execution stands: null before any execute, then `executing`, `executed` or `failed`. */
    execution_state: ExecutionState | null;
    /** Present on a `/wait` answer for an approved action: a fresh single-use token. */
    decision_token: string | null;
}
/** What `waitForApproval` resolves to when a human approved. */
export interface ApprovedResult {
    approved: true;
    action_request_id: string;
    status: "allowed";
    decision: Decision;
    decision_token: string;
}
/** Why no approval came: denied, expired, already executed, or the wait timed out. */
export interface NotApprovedResult {
    approved: false;
    action_request_id: string;
    status: "denied" | "expired" | "executed" | "timeout";
    reason: string;
    decision: Decision | null;
}
export type WaitOutcome = ApprovedResult | NotApprovedResult;
/** Options of `waitForApproval` / `waitForDecision`. */
export interface WaitOptions {
    /** How long to wait for a human, in seconds (default 300). */
    timeoutSeconds?: number;
}
/** Answer of `execute` (`POST /api/v1/actions/{id}/execute`). */
export interface ExecutionResult {
    action_request_id: string;
    status: string;
    result: {
        status_code: number;
        headers: Record<string, string>;
        body: JsonValue;
    };
}
