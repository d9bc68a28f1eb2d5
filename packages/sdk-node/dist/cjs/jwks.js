"use strict";
/**
 * The server's public keys (its JWKS, at `/.well-known/jwks.json` beside `/api`) and the
 * cache the client keeps of them: the Python SDK's agentfirewall/jwks.py. A tool that wants
 * to check a decision token before acting fetches the document once, then verifies locally
 * (./tokens.ts). Pure functions and a cache whose clock comes in as an argument.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.JwksCache = exports.TOKEN_BINDINGS = exports.JWKS_REFRESH_AFTER_SECONDS = exports.JWKS_TTL_SECONDS = void 0;
exports.jwksUrlFor = jwksUrlFor;
exports.keysFromJwks = keysFromJwks;
exports.verifyWithKeys = verifyWithKeys;
exports.bindingsOf = bindingsOf;
exports.unixSeconds = unixSeconds;
exports.verifyWithJwks = verifyWithJwks;
const node_crypto_1 = require("node:crypto");
const errors_js_1 = require("./errors.js");
const options_js_1 = require("./options.js");
const tokens_js_1 = require("./tokens.js");
/** How long fetched keys are trusted before the next fetch (seconds). */
exports.JWKS_TTL_SECONDS = 300;
/** The soonest the keys are fetched again after a signature they do not verify (key
 * rotation), so that a stream of forged tokens is not a stream of fetches. */
exports.JWKS_REFRESH_AFTER_SECONDS = 10;
exports.TOKEN_BINDINGS = ["actionRequestId", "actionHash", "agent"];
/** `http://h:3000/api` -> `http://h:3000/.well-known/jwks.json` (a prefix before `/api` is kept). */
function jwksUrlFor(baseUrl) {
    const url = new URL(baseUrl);
    let path = url.pathname.replace(/\/+$/, "");
    if (path.endsWith("/api"))
        path = path.slice(0, -"/api".length);
    return `${url.origin}${path}/.well-known/jwks.json`;
}
function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/** `object[name]` when `object` has that member of its own, else `fallback`. */
function own(object, name, fallback) {
    return Object.hasOwn(object, name) ? object[name] : fallback;
}
function badKey(message) {
    return new errors_js_1.TokenError(message, { code: "bad_key" });
}
/**
 * The P-256 signing keys of a JWKS document. Other key types, and keys marked for another
 * use (`use` not `sig`) or another algorithm (`alg` not ES256), are skipped; so is a P-256
 * key that does not load (a coordinate that is not 32 bytes of canonical base64url, no point
 * of the curve), as RFC 7517 section 5 asks: the keys beside it still verify their tokens.
 * A document without a usable key is TokenError `bad_key`, saying why its first P-256 key
 * did not load (the Python SDK's `keys_from_jwks`).
 */
function keysFromJwks(document) {
    const listed = isObject(document) ? own(document, "keys") : undefined;
    if (!Array.isArray(listed))
        throw badKey("JWKS document has no `keys` list");
    const keys = { usable: [], broken: new Map() };
    let first;
    for (const jwk of listed) {
        if (!isObject(jwk) || own(jwk, "kty") !== "EC" || own(jwk, "crv") !== "P-256")
            continue;
        if (own(jwk, "use", "sig") !== "sig" || own(jwk, "alg", "ES256") !== "ES256")
            continue;
        try {
            keys.usable.push(publicKeyOf(jwk));
        }
        catch (error) {
            if (!(error instanceof errors_js_1.TokenError))
                throw error;
            first ??= error;
            const kid = own(jwk, "kid");
            if (typeof kid === "string" && !keys.broken.has(kid))
                keys.broken.set(kid, error);
        }
    }
    if (keys.usable.length === 0)
        throw first ?? badKey("JWKS document holds no EC P-256 key");
    return keys;
}
/**
 * Verify `token` with `keys` (./tokens.ts). A token refused for its signature whose `kid`
 * names a key the document holds but could not load, and no key that loaded, is refused
 * with `bad_key` instead: the server's published key is broken, not the token.
 */
function verifyWithKeys(token, keys, now, bindings) {
    try {
        return (0, tokens_js_1.verifyToken)(token, keys.usable, now, bindings);
    }
    catch (error) {
        if (!(error instanceof errors_js_1.TokenError) || error.code !== "bad_signature")
            throw error;
        throw brokenKey(token, keys) ?? error;
    }
}
function brokenKey(token, keys) {
    const kid = (0, tokens_js_1.headerKid)(token);
    const why = kid === undefined ? undefined : keys.broken.get(kid);
    if (kid === undefined || why === undefined || keys.usable.some((key) => key.kid === kid))
        return undefined;
    return badKey(`decision token was signed by key \`${kid.slice(0, 60)}\`, which the JWKS document holds but cannot load ` +
        `(${why.message}): the server's published key is broken`);
}
function coordinate(jwk, name) {
    const text = own(jwk, name);
    let size = 0;
    if (typeof text === "string") {
        try {
            size = (0, tokens_js_1.segment)(text, `key \`${name}\``).length;
        }
        catch {
            size = 0;
        }
    }
    if (size !== 32)
        throw badKey(`JWK \`${name}\` is not 32 bytes of base64url`);
    return text;
}
function publicKeyOf(jwk) {
    const x = coordinate(jwk, "x");
    const y = coordinate(jwk, "y");
    let key;
    try {
        key = (0, node_crypto_1.createPublicKey)({ key: { kty: "EC", crv: "P-256", x, y }, format: "jwk" });
    }
    catch {
        throw badKey("JWK is not a point on P-256");
    }
    return { kid: (0, tokens_js_1.thumbprint)(x, y), key };
}
/** The bindings of a verification, checked: each one given must be a string. */
function bindingsOf(value, what) {
    const given = (0, options_js_1.optionsOf)(value, what, exports.TOKEN_BINDINGS);
    const bindings = {};
    for (const name of exports.TOKEN_BINDINGS) {
        const binding = given[name];
        if (binding === undefined)
            continue;
        if (typeof binding !== "string") {
            throw new TypeError(`\`${name}\` of ${what} must be a string, not ${(0, options_js_1.kindOf)(binding)}`);
        }
        bindings[name] = binding;
    }
    return bindings;
}
/** The current time in unix seconds, as the Python SDK reads it (`int(time.time())`). */
function unixSeconds() {
    return Math.floor(Date.now() / 1000);
}
/**
 * Verify `token` with the keys of a JWKS document you already hold (no I/O): the pure
 * function behind `AgentFirewall.verifyDecisionToken` (Python: `verify_with_jwks`).
 * Throws TokenError (`code`) when the token or the document is refused.
 */
function verifyWithJwks(token, document, options) {
    const { now, ...rest } = (0, options_js_1.optionsOf)(options, "verifyWithJwks()", [...exports.TOKEN_BINDINGS, "now"]);
    if (now !== undefined && (typeof now !== "number" || !Number.isFinite(now))) {
        throw new TypeError(`\`now\` of verifyWithJwks() must be unix seconds (a finite number), not ${(0, options_js_1.kindOf)(now)}`);
    }
    const bindings = bindingsOf(rest, "verifyWithJwks()");
    return verifyWithKeys(token, keysFromJwks(document), now ?? unixSeconds(), bindings);
}
/** The last keys fetched and when (monotonic seconds). */
class JwksCache {
    #keys;
    #fetchedAt = -Infinity;
    /** The cached keys while fresh, else undefined (fetch again). */
    current(now) {
        return this.#keys !== undefined && now - this.#fetchedAt < exports.JWKS_TTL_SECONDS ? this.#keys : undefined;
    }
    /** Keep the keys of `document` (a document without usable keys is refused, not kept). */
    store(document, now) {
        const keys = keysFromJwks(document);
        this.#keys = keys;
        this.#fetchedAt = now;
        return keys;
    }
    /** After a bad signature: fetch again unless the keys are very recent. */
    mayRefresh(now) {
        return now - this.#fetchedAt >= exports.JWKS_REFRESH_AFTER_SECONDS;
    }
}
exports.JwksCache = JwksCache;
