"use strict";
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
Object.defineProperty(exports, "__esModule", { value: true });
exports.MAX_TOKEN_CHARS = exports.DEFAULT_AUDIENCE = exports.DEFAULT_ISSUER = void 0;
exports.verifyToken = verifyToken;
exports.headerKid = headerKid;
exports.segment = segment;
exports.thumbprint = thumbprint;
const node_crypto_1 = require("node:crypto");
const errors_js_1 = require("./errors.js");
const json_js_1 = require("./json.js");
exports.DEFAULT_ISSUER = "tameflare";
exports.DEFAULT_AUDIENCE = "tameflare-execute";
/** The longest token verified (the server's are about 500 characters). */
exports.MAX_TOKEN_CHARS = 8192;
/** Seconds a token's times may be off this machine's clock. */
const LEEWAY_SECONDS = 5;
const ALGORITHM = "ES256";
const HEADER_MEMBERS = new Set(["alg", "kid", "typ"]);
const B64URL = /^[A-Za-z0-9_-]+$/;
const DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
function refused(message, code) {
    return new errors_js_1.TokenError(message, { code });
}
/**
 * Verify `token` with `keys` at `now` (unix seconds): signature, times, issuer, audience and
 * the bindings given. Throws TokenError whose `code` is one of malformed, bad_algorithm,
 * bad_signature, expired, not_yet_valid, wrong_issuer, wrong_audience, wrong_action,
 * wrong_agent, missing_claim.
 */
function verifyToken(token, keys, now, bindings = {}) {
    const { header, claims, signingInput, signature } = parse(token);
    checkSignature(header, signingInput, signature, keys);
    checkTimes(claims, now);
    if ((0, json_js_1.member)(claims, "iss") !== exports.DEFAULT_ISSUER)
        throw refused("decision token has the wrong issuer", "wrong_issuer");
    const aud = (0, json_js_1.member)(claims, "aud");
    if (aud !== exports.DEFAULT_AUDIENCE && !(Array.isArray(aud) && aud.includes(exports.DEFAULT_AUDIENCE))) {
        throw refused("decision token has the wrong audience", "wrong_audience");
    }
    const result = claimsOf(claims);
    const { actionRequestId, actionHash, agent } = bindings;
    if (actionRequestId !== undefined && !same(result.action_request_id, actionRequestId)) {
        throw refused(`decision token was issued for another action, not \`${actionRequestId}\``, "wrong_action");
    }
    if (actionHash !== undefined && !same(result.action_hash, actionHash)) {
        throw refused("decision token does not match this action's content", "wrong_action");
    }
    if (agent !== undefined && !same(result.agent, agent)) {
        throw refused("decision token was issued to another agent", "wrong_agent");
    }
    return result;
}
/** Characters as Python counts them (code points): a surrogate pair is one. */
function codePoints(text) {
    if (text.length > 2 * exports.MAX_TOKEN_CHARS)
        return text.length; // more than the limit either way
    let count = 0;
    for (const _ of text)
        count += 1;
    return count;
}
function parse(token) {
    if (typeof token !== "string")
        throw refused("decision token must be a string", "malformed");
    if (token.length > exports.MAX_TOKEN_CHARS && codePoints(token) > exports.MAX_TOKEN_CHARS) {
        throw refused(`decision token is longer than ${exports.MAX_TOKEN_CHARS} characters`, "malformed");
    }
    const parts = token.split(".");
    if (parts.length !== 3)
        throw refused("decision token is malformed: not three dot-separated parts", "malformed");
    const [head = "", body = "", tail = ""] = parts;
    const header = jsonObject(segment(head, "header"), "header");
    const alg = (0, json_js_1.member)(header, "alg");
    if (alg !== ALGORITHM) {
        const shown = (typeof alg === "string" ? alg : shownJson(alg)).slice(0, 40);
        throw refused(`decision token algorithm \`${shown}\` refused: only ES256 is accepted`, "bad_algorithm");
    }
    const extra = Object.keys(header)
        .filter((name) => !HEADER_MEMBERS.has(name))
        .sort();
    if (extra.length > 0) {
        // jwk, jku, x5u, x5c, crit, b64...: nothing this verifier would honour
        const message = `decision token header has \`${extra[0]}\`: only alg, kid and typ are accepted`;
        throw refused(message, "malformed");
    }
    const kid = Object.hasOwn(header, "kid") ? header["kid"] : "";
    const typ = Object.hasOwn(header, "typ") ? header["typ"] : "JWT";
    if (typeof kid !== "string" || typ !== "JWT") {
        throw refused("decision token header has a bad `kid` or `typ`", "malformed");
    }
    const claims = jsonObject(segment(body, "claims"), "claims");
    const signature = segment(tail, "signature");
    return { header, claims, signingInput: Buffer.from(`${head}.${body}`, "ascii"), signature };
}
/** The `kid` a token's header names, read without verifying anything (to word a refusal
 * only); undefined when it names none or cannot be read. */
function headerKid(token) {
    try {
        const kid = (0, json_js_1.member)(parse(token).header, "kid");
        return typeof kid === "string" ? kid : undefined;
    }
    catch {
        return undefined;
    }
}
/** Canonical base64url (RFC 7515: no padding, no other alphabet, no stray bits). */
function segment(text, name) {
    let raw = Buffer.alloc(0);
    if (B64URL.test(text) && text.length % 4 !== 1)
        raw = Buffer.from(text, "base64url");
    if (!text || raw.toString("base64url") !== text) {
        throw refused(`decision token ${name} is not canonical base64url`, "malformed");
    }
    return raw;
}
function jsonObject(raw, name) {
    let value;
    try {
        value = (0, json_js_1.parseStrictJson)(DECODER.decode(raw));
    }
    catch {
        throw refused(`decision token ${name} is not a JSON object`, "malformed");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof json_js_1.JsonFraction) {
        throw refused(`decision token ${name} is not a JSON object`, "malformed");
    }
    return value;
}
/** A JSON value for a message, as Python's json.dumps writes the common ones. */
function shownJson(value) {
    if (value === undefined)
        return "null";
    if (value instanceof json_js_1.JsonFraction)
        return String(value.value);
    return JSON.stringify(value, (_, item) => (item instanceof json_js_1.JsonFraction ? item.value : item)) ?? "null";
}
/** The ES256 signature by the key `kid` names (every key when it names none). */
function checkSignature(header, signingInput, signature, keys) {
    if (signature.length !== 64)
        throw refused("decision token signature is not an ES256 signature", "bad_signature");
    const kid = (0, json_js_1.member)(header, "kid");
    const candidates = keys.filter((key) => kid === undefined || key.kid === kid);
    if (candidates.length === 0) {
        const shown = String(kid ?? "None").slice(0, 60);
        throw refused(`decision token was signed by an unknown key \`${shown}\``, "bad_signature");
    }
    for (const { key } of candidates) {
        if (verifies(key, signingInput, signature))
            return;
    }
    throw refused("decision token signature is not valid", "bad_signature");
}
function verifies(key, signingInput, signature) {
    try {
        return (0, node_crypto_1.verify)("sha256", signingInput, { key, dsaEncoding: "ieee-p1363" }, signature);
    }
    catch {
        return false; // a signature OpenSSL cannot even read (r or s out of range) is no signature
    }
}
/** A JSON integer (never a boolean, a string or a number written as `1.0` or `1e9`). */
function isInteger(value) {
    return typeof value === "number";
}
function checkTimes(claims, now) {
    const exp = (0, json_js_1.member)(claims, "exp");
    const nbf = Object.hasOwn(claims, "nbf") ? claims["nbf"] : (0, json_js_1.member)(claims, "iat");
    const hasNbf = nbf !== undefined && nbf !== null;
    if (!isInteger(exp))
        throw refused("decision token has no expiry", "missing_claim");
    if (hasNbf && !isInteger(nbf))
        throw refused("decision token has a bad `nbf`", "malformed");
    if (now > exp + LEEWAY_SECONDS)
        throw refused("decision token has expired: request the action again", "expired");
    if (hasNbf && now + LEEWAY_SECONDS < nbf) {
        throw refused("decision token is not valid yet", "not_yet_valid");
    }
}
function claimsOf(claims) {
    for (const name of ["sub", "act", "ahs", "out", "jti", "iat"]) {
        if (!Object.hasOwn(claims, name))
            throw refused(`decision token lacks the \`${name}\` claim`, "missing_claim");
    }
    const texts = ["sub", "act", "ahs", "out", "jti"].map((name) => claims[name]);
    const iat = claims["iat"];
    if (!texts.every((text) => typeof text === "string" && text !== "") || !isInteger(iat)) {
        throw refused("decision token has a claim of the wrong type", "malformed");
    }
    const [agent, act, ahs, out, jti] = texts;
    return {
        agent: agent,
        action_request_id: act,
        action_hash: ahs,
        outcome: out,
        jti: jti,
        issued_at: iat,
        expires_at: claims["exp"],
    };
}
/** Equality of two strings in constant time for a given length (any characters, lone
 * surrogates included: compared as UTF-16 code units, never replaced). */
function same(a, b) {
    const left = Buffer.from(a, "utf16le");
    const right = Buffer.from(b, "utf16le");
    return left.length === right.length && (0, node_crypto_1.timingSafeEqual)(left, right);
}
/** The RFC 7638 thumbprint of a P-256 key given by its base64url coordinates. */
function thumbprint(x, y) {
    const members = JSON.stringify({ crv: "P-256", kty: "EC", x, y });
    return (0, node_crypto_1.createHash)("sha256").update(members).digest("base64url");
}
