/**
 * The caller's arguments, checked once before anything is sent (the same rules as the
 * Python SDK's agentfirewall/client/_base.py): a mistake throws at once, names the
 * argument and says what to pass instead. Pure functions; the only input besides the
 * arguments is the environment the client reads its defaults from.
 *
 * - a wrong type (`apiKey: 42`, an id that is not a string, an options object that is a
 *   string, an option name that does not exist) is a TypeError, and so is a base URL
 *   that is not one;
 * - a number out of range is a RangeError;
 * - an API key that no key can be (empty, a space, a control character, a non-ASCII
 *   letter) is an AuthenticationError, whose message never shows the key.
 */
import { AuthenticationError } from "./errors.js";
export const DEFAULT_BASE_URL = "http://localhost:3000/api";
/** What a key or a header-carried value may hold: visible ASCII, sent as is. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
/** Python's and other spellings of an option, and the option they mean. */
const SPELLINGS = {
    timeout: "timeoutSeconds",
    timeout_seconds: "timeoutSeconds",
    retry_backoff: "retryBackoffSeconds",
    action_type: "type",
    risk_hints: "riskHints",
    idempotency_key: "idempotencyKey",
};
/** What `value` is, for a message: `a number`, `an object`, `null`, `undefined`. */
export function kindOf(value) {
    if (value === null || value === undefined)
        return String(value);
    if (Array.isArray(value))
        return "an array";
    const kind = typeof value;
    return kind === "object" ? "an object" : `a ${kind}`;
}
function camel(name) {
    return name.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());
}
/** The options object of `what` (absent: `{}`); an unknown name is a TypeError. */
export function optionsOf(value, what, known) {
    if (value === undefined)
        return {};
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new TypeError(`${what} takes an options object ({ ${known.join(", ")} }), not ${kindOf(value)}`);
    }
    for (const name of Object.keys(value)) {
        if (known.includes(name))
            continue;
        const hint = spellingHint(name, known);
        throw new TypeError(`unknown option \`${name}\` of ${what}${hint} (it takes ${known.join(", ")})`);
    }
    return value;
}
/** The suggestion for a mistyped field name, or "" (for ActionSpecError messages). */
export function spellingHint(name, known) {
    const meant = SPELLINGS[name] ?? camel(name);
    return known.includes(meant) && meant !== name ? `: did you mean \`${meant}\`?` : "";
}
/** The key: surrounding whitespace dropped (a line break read from a file); never echoed. */
export function apiKeyOf(value) {
    const raw = value || process.env["AAF_API_KEY"];
    if (raw !== undefined && raw !== null && raw !== "" && typeof raw !== "string") {
        throw new TypeError(`\`apiKey\` must be a string (the agent's \`aaf_...\` key), not ${kindOf(raw)}`);
    }
    const key = typeof raw === "string" ? raw.trim() : "";
    if (!key) {
        throw new AuthenticationError("no API key: pass `apiKey` or set AAF_API_KEY (`tf agent add NAME` prints one)", {
            statusCode: 0,
        });
    }
    if (!VISIBLE_ASCII.test(key)) {
        throw new AuthenticationError("the API key (`apiKey` or AAF_API_KEY) holds a space, a control character or a non-ASCII letter, " +
            "which no key has: copy it again (`tf agent rotate-key NAME` makes a new one)", { statusCode: 0 });
    }
    return key;
}
/** The API root: an absolute http(s) URL without credentials, query, fragment or `/v1`,
 * and without a trailing slash. `key` is never shown, even when given as the URL. */
export function apiRootOf(value, key) {
    const what = "`baseUrl` (or AAF_BASE_URL)";
    const text = typeof value === "string" ? value.trim() : undefined;
    let shown = kindOf(value);
    // never shown: the key, or what looks like one (AAF_API_KEY and AAF_BASE_URL swapped)
    const secret = text !== undefined && ((key.length >= 8 && text.includes(key)) || /^aaf_/i.test(text));
    if (text !== undefined)
        shown = secret ? "an API key (are `apiKey` and `baseUrl` swapped?)" : `\`${text.slice(0, 200)}\``;
    const url = text === undefined ? undefined : parse(text);
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
        // `localhost:3000/api` parses as a URL of scheme `localhost:`: suggest the scheme
        const bare = text !== undefined && !text.includes("://") && !secret;
        const hint = bare && parse(`http://${text}`) ? `: did you mean \`http://${text.slice(0, 200)}\`?` : "";
        throw new TypeError(`${what} must be an http:// or https:// URL like \`${DEFAULT_BASE_URL}\`, not ${shown}${hint}`);
    }
    if (url.username || url.password || url.search || url.hash) {
        const held = url.username || url.password ? "credentials" : "a query or fragment";
        throw new TypeError(`${what} must not hold ${held}: the API key is sent as a header`);
    }
    const root = url.href.replace(/\/+$/, "");
    if (url.pathname.replace(/\/+$/, "").endsWith("/v1")) {
        const fixed = root.slice(0, -"/v1".length);
        throw new TypeError(`${what} ${shown} ends in \`/v1\`: give the API root, ending in \`/api\`, like \`${fixed}\` (the client adds \`/v1/...\`)`);
    }
    return root;
}
/** The `jwksUrl` option: an absolute http(s) URL without credentials (the keys are public:
 * nothing secret is sent), without a trailing slash. `key` is never shown. */
export function jwksUrlOf(value, key) {
    const text = typeof value === "string" ? value.trim().replace(/\/+$/, "") : undefined;
    const secret = text !== undefined && ((key.length >= 8 && text.includes(key)) || /^aaf_/i.test(text));
    const shown = text === undefined ? kindOf(value) : secret ? "an API key" : `\`${text.slice(0, 200)}\``;
    const url = text === undefined ? undefined : parse(text);
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
        throw new TypeError(`\`jwksUrl\` must be an http:// or https:// URL like \`http://localhost:3000/.well-known/jwks.json\`, not ${shown}`);
    }
    if (url.username || url.password) {
        throw new TypeError("`jwksUrl` must not hold credentials: the server's public keys need none");
    }
    return text;
}
function parse(text) {
    try {
        return new URL(text);
    }
    catch {
        return undefined;
    }
}
/** `value` when it is a number >= `min` (finite unless `infinite`; absent: `fallback`),
 * else a RangeError. */
export function seconds(name, value, fallback, min = 0, infinite = false) {
    if (value === undefined)
        return fallback;
    const ok = typeof value === "number" && value >= min && (Number.isFinite(value) || (infinite && value === Infinity));
    if (!ok) {
        // a string "5" must not read as 5 in the message
        const shown = typeof value === "string" ? `the string \`"${value.slice(0, 40)}"\`` : `\`${String(value)}\``;
        const kind = infinite ? "a number" : "a finite number";
        throw new RangeError(`\`${name}\` must be ${kind} >= ${min}, not ${shown}`);
    }
    return value;
}
/**
 * What an action id is: `act_` and letters, digits, `_` or `-` (the server's are `act_` and
 * 26 base32 characters; a test double's `act_1` is one too). Such an id is one path segment
 * exactly as written: never `.` or `..`, which a URL resolves to another route
 * (`/v1/actions/..` is `/v1/`), never a slash, `%`, `?` or `#`, nor another route's name
 * (`stuck`, `dry-run`).
 */
const ACTION_ID = /^act_[A-Za-z0-9_-]{1,100}$/;
/** The id of an action as a caller must pass it: `result.action_request_id`. */
export function actionIdOf(value) {
    if (typeof value !== "string") {
        const shown = kindOf(value) === "an object" ? "an object (a whole result?)" : kindOf(value);
        throw new TypeError(`\`actionRequestId\` must be the \`act_...\` string of a requestAction result (\`result.action_request_id\`), not ${shown}`);
    }
    if (value.trim() === "") {
        throw new TypeError("`actionRequestId` is empty: pass the `act_...` id of a requestAction result");
    }
    if (!ACTION_ID.test(value)) {
        throw new TypeError(`\`actionRequestId\` ${JSON.stringify(value.slice(0, 60))} is not an action id: pass the \`act_...\` id ` +
            "of a requestAction result (`result.action_request_id`), as it came");
    }
    return value;
}
