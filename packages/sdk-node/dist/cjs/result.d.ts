/**
 * `ActionResult`, the answer of `requestAction`: the server's fields under their wire names,
 * plus `raiseForDenial()`. A deny is data until the caller asks for an exception, as with
 * the Python SDK's `raise_for_denial()` (and httpx's `raise_for_status()`).
 *
 * A class rather than an object literal so that the method lives on the prototype: the
 * instance's own keys, its JSON and a `{ ...result }` copy are the wire fields alone, and
 * TypeScript knows such a copy has no method.
 */
import type { ActionStatus, ApprovalInfo, Decision } from "./types.js";
/** Answer of `requestAction` (`POST /api/v1/actions`). */
export declare class ActionResult {
    action_request_id: string;
    status: ActionStatus;
    decision: Decision;
    /** Set only when `status` is `allowed`: single use, for `execute`. */
    decision_token: string | null;
    /** Set only when `status` is `pending_approval`. */
    approval: ApprovalInfo | null;
    /** True when the server answered from its idempotency cache (`Idempotent-Replayed`). */
    replayed: boolean;
    /** The SDK makes these from the server's answer; a test double may make its own. */
    constructor(fields: {
        action_request_id: string;
        status: ActionStatus;
        decision: Decision;
        decision_token?: string | null;
        approval?: ApprovalInfo | null;
        replayed?: boolean;
    });
    /**
     * Return this result (for chaining) only when the action may go ahead now. A deny throws
     * ActionDeniedError (with the decision); a hold throws ApprovalError (`status` is
     * `pending_approval`): it is not allowed until a person approves, so code that enforces
     * with this call never acts on it. Judged by `status`, so a result allowed under monitor
     * enforcement (`decision.would_outcome` is `would_deny`) passes.
     */
    raiseForDenial(): this & {
        status: "allowed";
    };
}
