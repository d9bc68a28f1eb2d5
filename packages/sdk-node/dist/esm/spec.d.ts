/**
 * The caller's action as the wire's `action_spec`, checked before anything is sent:
 * the same grammar as the Python core (`agentfirewall.actions`), so a typo fails fast
 * with ActionSpecError instead of a round trip.
 */
import type { ActionInput, JsonValue } from "./types.js";
/** Dotted lowercase `provider.resource.verb`: 2 to 8 segments (agentfirewall.actions). */
export declare const ACTION_TYPE_PATTERN: RegExp;
/** `{type, resource, parameters, risk_hints}` for the wire; throws ActionSpecError. */
export declare function buildActionSpec(input: ActionInput): {
    [key: string]: JsonValue;
};
