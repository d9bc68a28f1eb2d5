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
            redirect: "error",
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
            throw transportError(error, baseUrl);
        }
        const body = decode(text);
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
function transportError(error, baseUrl) {
    const unsent = (0, retry_js_1.isUnsent)(error);
    const hint = unsent ? " (is it running — `tf up` — and is `AAF_BASE_URL` its address, ending in `/api`?)" : "";
    const message = `cannot reach the TameFlare server at \`${baseUrl}\`: ${describe(error)}${hint}`;
    return new errors_js_1.TransportError(message, { unsent, cause: error });
}
