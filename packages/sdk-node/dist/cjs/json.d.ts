/**
 * JSON read the way the Python verifier reads a decision token's header and claims
 * (agentfirewall/tokens.py, `_json_object`), so that both SDKs accept the same texts:
 *
 * - an object member may appear once: `{"alg": "none", "alg": "ES256"}` is refused, not
 *   read as its last member (JSON.parse) or its first (some other parser);
 * - a number written with a fraction or an exponent (`1.0`, `1e9`) stays a `JsonFraction`,
 *   which no time claim may be (Python reads it as a float, never an int);
 * - an integer of more than 4,300 digits is refused (Python's limit on reading an int);
 * - nesting deeper than 100 is refused (Python's stops at its recursion limit, about 1,000:
 *   what is refused there is refused here too; no token the server signs nests at all).
 *
 * Objects have no prototype, so a member named `__proto__` or `constructor` is data.
 * Anything else is RFC 8259, as Python's `json` and JSON.parse read it. Pure functions.
 */
/** A number written with a fraction or an exponent: not an integer, whatever its value. */
export declare class JsonFraction {
    readonly value: number;
    constructor(value: number);
}
export type StrictJson = string | number | boolean | null | JsonFraction | StrictJson[] | StrictObject;
export type StrictObject = {
    [member: string]: StrictJson;
};
/** `text` as one JSON value; a SyntaxError for anything the rules above refuse. */
export declare function parseStrictJson(text: string): StrictJson;
/** The member `name` of `object` when it has one of its own, else `undefined`. */
export declare function member(object: StrictObject, name: string): StrictJson | undefined;
