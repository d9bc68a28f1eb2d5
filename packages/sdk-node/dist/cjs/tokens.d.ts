/**
 * Offline verification of a decision token: the same checks, in the same order, with the
 * same error codes as the Python SDK's `agentfirewall.tokens.verify_decision_token`, so both
 * SDKs accept and refuse the same tokens. Pure functions: the keys and the clock come in.
 *
 * A decision token is a compact ES256 JWS with the claims `iss` ("tameflare"), `aud`
 * ("tameflare-execute"), `sub` (the agent), `jti` (single-use nonce), `iat`, `nbf`, `exp`
 * (unix seconds), `act` (the action request id), `ahs` (the action hash) and `out`.
 *
 * One token has one spelling: canonical base64url without padding, JSON objects without a
 * repeated member (./json.ts), a header of `alg` (ES256 only), `kid` and `typ` only, a
 * 64-byte `r || s` signature, at most 8,192 characters; anything else is refused before a
 * key is tried. `kid` picks the key by its RFC 7638 thumbprint. Single use is only enforced
 * by the server, at execute (an ECDSA signature can be rewritten as a second valid one).
 */
import { type KeyObject } from "node:crypto";
export declare const DEFAULT_ISSUER = "tameflare";
export declare const DEFAULT_AUDIENCE = "tameflare-execute";
/** The longest token verified (the server's are about 500 characters). */
export declare const MAX_TOKEN_CHARS = 8192;
/** A public key of the server's JWKS, with its key id (the RFC 7638 thumbprint). */
export interface VerificationKey {
    kid: string;
    key: KeyObject;
}
/** The content of a verified decision token (the Python SDK's `DecisionClaims`). */
export interface DecisionClaims {
    agent: string;
    action_request_id: string;
    action_hash: string;
    outcome: string;
    jti: string;
    issued_at: number;
    expires_at: number;
}
/** What a token must be bound to: each binding given must match its claim. */
export interface TokenBindings {
    /** The `act_…` id of the action the token is for (`act`). */
    actionRequestId?: string;
    /** The SHA-256 of the action's canonical spec (`ahs`). */
    actionHash?: string;
    /** The agent's name (`sub`). */
    agent?: string;
}
/**
 * Verify `token` with `keys` at `now` (unix seconds): signature, times, issuer, audience and
 * the bindings given. Throws TokenError whose `code` is one of malformed, bad_algorithm,
 * bad_signature, expired, not_yet_valid, wrong_issuer, wrong_audience, wrong_action,
 * wrong_agent, missing_claim.
 */
export declare function verifyToken(token: unknown, keys: readonly VerificationKey[], now: number, bindings?: TokenBindings): DecisionClaims;
/** The `kid` a token's header names, read without verifying anything (to word a refusal
 * only); undefined when it names none or cannot be read. */
export declare function headerKid(token: unknown): string | undefined;
/** Canonical base64url (RFC 7515: no padding, no other alphabet, no stray bits). */
export declare function segment(text: string, name: string): Buffer;
/** The RFC 7638 thumbprint of a P-256 key given by its base64url coordinates. */
export declare function thumbprint(x: string, y: string): string;
