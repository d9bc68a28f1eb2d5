"use strict";
/**
 * The only I/O: one HTTP call through `fetch`, with a per-attempt timeout, error mapping
 * and the retry loop of ./retry.ts. Never puts a header (the API key) in an error.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.Transport = void 0;
exports.sleep = sleep;
exports.transportError = transportError;
const errors_js_1 = require("./errors.js");
const retry_js_1 = require("./retry.js");
const wire_js_1 = require("./wire.js");
/** Resolve after `seconds`. */
function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, seconds) * 1000));
}
function decode(text) {
    if (text === "")
        return null;
    try {
        return JSON.parse(text);
    }
    catch {
        return text;
    }
}
class Transport {
    #options;
    constructor(options) {
        this.#options = options;
    }
    /** Send `call`, retrying as the policy allows; resolve to a 2xx answer or throw. */
    async send(call) {
        for (let attempt = 1;; attempt += 1) {
            try {
                return await this.#attempt(call);
            }
            catch (error) {
                const policy = this.#options.retry;
                if (attempt > policy.maxRetries || !(0, retry_js_1.shouldRetry)(error, call.replaySafe, policy))
                    throw error;
                await sleep((0, retry_js_1.retryDelaySeconds)(error, attempt, policy));
            }
        }
    }
    #url(call) {
        const url = new URL(this.#options.baseUrl + call.path);
        for (const [key, value] of Object.entries(call.query ?? {}))
            url.searchParams.set(key, value);
        return url.toString();
    }
    async #attempt(call) {
        const { baseUrl, headers, timeoutSeconds, fetch } = this.#options;
        const seconds = timeoutSeconds + (call.extraTimeoutSeconds ?? 0);
        const init = {
            method: call.method,
            headers: {
                ...headers,
                ...(call.json !== undefined && { "Content-Type": "application/json" }),
                ...call.headers,
            },
            signal: AbortSignal.timeout(Math.ceil(seconds * 1000)),
            // never followed (the key would go along); a redirect is reported, see below
            redirect: "manual",
        };
        if (call.json !== undefined)
            init.body = JSON.stringify(call.json);
        let response;
        let text;
        try {
            response = await fetch(this.#url(call), init);
            text = await response.text();
        }
        catch (error) {
            throw transportError(error, baseUrl, seconds);
        }
        const body = decode(text);
        if (response.status >= 300 && response.status < 400) {
            throw redirectError(response, body, baseUrl);
        }
        if (response.status >= 400) {
            throw (0, wire_js_1.errorForResponse)(response.status, body, response.headers.get("Retry-After"));
        }
        if (typeof body !== "object" || body === null) {
            const message = `unexpected answer from the server: not JSON (HTTP ${response.status})`;
            throw new errors_js_1.ServerError(message, { statusCode: response.status, body });
        }
        return { status: response.status, headers: response.headers, body };
    }
}
exports.Transport = Transport;
function describe(error) {
    if (!(error instanceof Error))
        return String(error);
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.name}: ${error.message}${cause}`;
}
/** Our TransportError for a fetch failure: names the server, never a header. */
function transportError(error, baseUrl, seconds) {
    const unsent = (0, retry_js_1.isUnsent)(error);
    if (!unsent && error instanceof Error && error.name === "TimeoutError" && seconds !== undefined) {
        const message = `no answer from the TameFlare server at \`${baseUrl}\` within ${seconds} s (\`timeoutSeconds\`)`;
        return new errors_js_1.TransportError(message, { unsent, cause: error });
    }
    const hint = unsent ? " (is it running — `tf up` — and is `AAF_BASE_URL` its address, ending in `/api`?)" : "";
    const message = `cannot reach the TameFlare server at \`${baseUrl}\`: ${describe(error)}${hint}`;
    return new errors_js_1.TransportError(message, { unsent, cause: error });
}
/** A 3xx answer: not followed, since the key would go along to wherever it points. */
function redirectError(response, body, baseUrl) {
    const location = (response.headers.get("Location") ?? "").slice(0, 200);
    const where = location ? `, a redirect to \`${location}\`` : "";
    const message = `the TameFlare server at \`${baseUrl}\` answered ${response.status}${where}, which is not followed ` +
        "(the API key goes to `baseUrl` only): set `baseUrl` (AAF_BASE_URL) to the address that answers";
    return new errors_js_1.APIError(message, { statusCode: response.status, body });
}
