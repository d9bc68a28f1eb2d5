/**
 * The server's public keys (its JWKS, at `/.well-known/jwks.json` beside `/api`) and the
 * cache the client keeps of them: the Python SDK's agentfirewall/jwks.py. A tool that wants
 * to check a decision token before acting fetches the document once, then verifies locally
 * (./tokens.ts). Pure functions and a cache whose clock comes in as an argument.
 */
import { TokenError } from "./errors.js";
import { type DecisionClaims, type TokenBindings, type VerificationKey } from "./tokens.js";
/** How long fetched keys are trusted before the next fetch (seconds). */
export declare const JWKS_TTL_SECONDS = 300;
/** The soonest the keys are fetched again after a signature they do not verify (key
 * rotation), so that a stream of forged tokens is not a stream of fetches. */
export declare const JWKS_REFRESH_AFTER_SECONDS = 10;
export declare const TOKEN_BINDINGS: readonly ["actionRequestId", "actionHash", "agent"];
/** `http://h:3000/api` -> `http://h:3000/.well-known/jwks.json` (a prefix before `/api` is kept). */
export declare function jwksUrlFor(baseUrl: string): string;
/** The keys of a JWKS document: those that load, and why each P-256 key that did not
 * load did not (by the `kid` it names, the first one per kid). */
export interface JwksKeys {
    usable: VerificationKey[];
    broken: Map<string, TokenError>;
}
/**
 * The P-256 signing keys of a JWKS document. Other key types, and keys marked for another
 * use (`use` not `sig`) or another algorithm (`alg` not ES256), are skipped; so is a P-256
 * key that does not load (a coordinate that is not 32 bytes of canonical base64url, no point
 * of the curve), as RFC 7517 section 5 asks: the keys beside it still verify their tokens.
 * A document without a usable key is TokenError `bad_key`, saying why its first P-256 key
 * did not load (the Python SDK's `keys_from_jwks`).
 */
export declare function keysFromJwks(document: unknown): JwksKeys;
/**
 * Verify `token` with `keys` (./tokens.ts). A token refused for its signature whose `kid`
 * names a key the document holds but could not load, and no key that loaded, is refused
 * with `bad_key` instead: the server's published key is broken, not the token.
 */
export declare function verifyWithKeys(token: unknown, keys: JwksKeys, now: number, bindings: TokenBindings): DecisionClaims;
/** The bindings of a verification, checked: each one given must be a string. */
export declare function bindingsOf(value: TokenBindings | undefined, what: string): TokenBindings;
/** The current time in unix seconds, as the Python SDK reads it (`int(time.time())`). */
export declare function unixSeconds(): number;
/** Options of `verifyWithJwks`: the bindings, and the time to verify at. */
export interface VerifyWithJwksOptions extends TokenBindings {
    /** Unix seconds; default now. */
    now?: number;
}
/**
 * Verify `token` with the keys of a JWKS document you already hold (no I/O): the pure
 * function behind `AgentFirewall.verifyDecisionToken` (Python: `verify_with_jwks`).
 * Throws TokenError (`code`) when the token or the document is refused.
 */
export declare function verifyWithJwks(token: string | null | undefined, document: unknown, options?: VerifyWithJwksOptions): DecisionClaims;
/** The last keys fetched and when (monotonic seconds). */
export declare class JwksCache {
    #private;
    /** The cached keys while fresh, else undefined (fetch again). */
    current(now: number): JwksKeys | undefined;
    /** Keep the keys of `document` (a document without usable keys is refused, not kept). */
    store(document: unknown, now: number): JwksKeys;
    /** After a bad signature: fetch again unless the keys are very recent. */
    mayRefresh(now: number): boolean;
}
