"use strict";
/**
 * `AgentFirewall`: the agent's side of TameFlare's SDK mode (docs/sdk-node.md).
 *
 * Every method is the same three steps: check and build the call, send it through the
 * Transport (retries included), parse the answer in ./wire.ts.
 */
Object.defineProperty(exports, "__esModule", { value: true });
exports.AgentFirewall = exports.DEFAULT_BASE_URL = void 0;
const node_crypto_1 = require("node:crypto");
const errors_js_1 = require("./errors.js");
const spec_js_1 = require("./spec.js");
const transport_js_1 = require("./transport.js");
const version_js_1 = require("./version.js");
const wire_js_1 = require("./wire.js");
exports.DEFAULT_BASE_URL = "http://localhost:3000/api";
/** The server caps one long-poll at 60 s (docs/api.md). */
const MAX_POLL_SECONDS = 60;
/** Seconds to pause before polling again when a server answers a long-poll early. */
const MIN_POLL_INTERVAL_SECONDS = 1;
const DEFAULT_APPROVAL_TIMEOUT_SECONDS = 300;
function pathId(actionRequestId) {
    return encodeURIComponent(actionRequestId);
}
function monotonicSeconds() {
    return performance.now() / 1000;
}
/** `value` when it is a finite number >= `min` (absent: `fallback`), else a RangeError. */
function nonNegative(name, value, fallback, min = 0) {
    if (value === undefined)
        return fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
        // a string "5" must not read as 5 in the message
        const shown = typeof value === "string" ? `the string \`"${value}"\`` : `\`${String(value)}\``;
        throw new RangeError(`\`${name}\` must be a finite number >= ${min}, not ${shown}`);
    }
    return value;
}
/** The API root: an absolute http(s) URL without credentials, query or fragment. */
function apiRoot(value) {
    const shown = typeof value === "string" ? value.slice(0, 200) : String(value);
    let url;
    try {
        url = typeof value === "string" ? new URL(value) : undefined;
    }
    catch {
        url = undefined;
    }
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
        throw new TypeError(`\`baseUrl\` (or AAF_BASE_URL) must be an http:// or https:// URL like \`${exports.DEFAULT_BASE_URL}\`, not \`${shown}\``);
    }
    if (url.username || url.password || url.search || url.hash) {
        const what = url.username || url.password ? "credentials" : "a query or fragment";
        throw new TypeError(`\`baseUrl\` (or AAF_BASE_URL) must not hold ${what}: the API key is sent as a header`);
    }
    return value.replace(/\/+$/, "");
}
/** `Idempotency-Key` as the server takes it (1 to 200 characters) and as a header can carry
 * it unchanged: printable ASCII, no space at either end. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?$/;
class AgentFirewall {
    /** The API root every path is appended to, without a trailing slash. */
    baseUrl;
    #transport;
    constructor(options = {}) {
        const apiKey = options.apiKey || process.env["AAF_API_KEY"];
        if (!apiKey) {
            throw new errors_js_1.AuthenticationError("no API key: pass `apiKey` or set AAF_API_KEY", { statusCode: 0 });
        }
        if (typeof apiKey !== "string")
            throw new TypeError(`\`apiKey\` must be a string, not a ${typeof apiKey}`);
        if (options.fetch !== undefined && typeof options.fetch !== "function") {
            throw new TypeError(`\`fetch\` must be a function, not a ${typeof options.fetch}`);
        }
        this.baseUrl = apiRoot(options.baseUrl || process.env["AAF_BASE_URL"] || exports.DEFAULT_BASE_URL);
        const maxRetries = nonNegative("maxRetries", options.maxRetries, 3);
        if (!Number.isInteger(maxRetries))
            throw new RangeError(`\`maxRetries\` must be an integer, not \`${maxRetries}\``);
        const retry = {
            maxRetries,
            backoffSeconds: nonNegative("retryBackoffSeconds", options.retryBackoffSeconds, 0.5),
            maxBackoffSeconds: 8,
            maxWaitSeconds: nonNegative("maxRetryWaitSeconds", options.maxRetryWaitSeconds, 60),
        };
        this.#transport = new transport_js_1.Transport({
            baseUrl: this.baseUrl,
            headers: {
                Authorization: `Bearer ${apiKey}`,
                Accept: "application/json",
                "User-Agent": `agentfirewall-node/${version_js_1.VERSION}`,
            },
            timeoutSeconds: nonNegative("timeoutSeconds", options.timeoutSeconds, 30, 0.001),
            retry,
            fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
        });
    }
    /** Ask whether the agent may perform `action`; the answer says allowed, denied or pending_approval. */
    async requestAction(action, options = {}) {
        const json = { action_spec: (0, spec_js_1.buildActionSpec)(action) };
        const key = options.idempotencyKey ?? (0, node_crypto_1.randomUUID)();
        if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) {
            const shown = typeof key === "string" ? `\`${key.slice(0, 40)}\`` : `a ${typeof key}`;
            throw new RangeError(`\`idempotencyKey\` must be 1 to 200 printable ASCII characters without a space at either end, not ${shown}`);
        }
        const call = {
            method: "POST",
            path: "/v1/actions",
            json,
            headers: { "Idempotency-Key": key },
            replaySafe: true,
        };
        const answer = await this.#transport.send(call);
        return (0, wire_js_1.parseActionResult)(answer.body, answer.headers.get("Idempotent-Replayed") === "true");
    }
    /** Evaluate `action` and explain the decision; nothing is recorded. */
    async dryRun(action) {
        const json = { action_spec: (0, spec_js_1.buildActionSpec)(action) };
        const answer = await this.#transport.send({ method: "POST", path: "/v1/actions/dry-run", json, replaySafe: true });
        return (0, wire_js_1.parseDryRun)(answer.body);
    }
    /** The current state of one of this agent's actions. */
    async getAction(actionRequestId) {
        const path = `/v1/actions/${pathId(actionRequestId)}`;
        const answer = await this.#transport.send({ method: "GET", path, replaySafe: true });
        return (0, wire_js_1.parseActionState)(answer.body);
    }
    /**
     * Mode A: the server performs the allowed action with its vaulted credential.
     * `decisionToken` is the allowed result's or the approval's; a missing token throws
     * TokenError without a request. A used token is refused (ConflictError, code `token_used`).
     */
    async execute(actionRequestId, decisionToken) {
        if (!decisionToken) {
            throw new errors_js_1.TokenError("no decision token: execute needs the token of an allowed or approved action");
        }
        const call = {
            method: "POST",
            path: `/v1/actions/${pathId(actionRequestId)}/execute`,
            json: { decision_token: decisionToken },
            replaySafe: false,
        };
        return (0, wire_js_1.parseExecution)((await this.#transport.send(call)).body);
    }
    /**
     * Wait for a human to decide on a pending action. Resolves to an object with a fresh
     * `decision_token` when approved, and to `null` when denied, expired or not decided
     * within `timeoutSeconds` (default 300). `waitForDecision` tells which.
     */
    async waitForApproval(actionRequestId, options = {}) {
        const outcome = await this.waitForDecision(actionRequestId, options);
        return outcome.approved ? outcome : null;
    }
    /** Like waitForApproval, but always resolves to an outcome saying why (`status`). */
    async waitForDecision(actionRequestId, options = {}) {
        const timeout = nonNegative("timeoutSeconds", options.timeoutSeconds, DEFAULT_APPROVAL_TIMEOUT_SECONDS);
        const deadline = monotonicSeconds() + timeout;
        for (let first = true;; first = false) {
            const remaining = first ? timeout : deadline - monotonicSeconds();
            const poll = Math.max(0, Math.min(MAX_POLL_SECONDS, Math.floor(remaining)));
            if (poll === 0 && remaining > 0)
                await (0, transport_js_1.sleep)(remaining); // the last fraction of a second
            const started = monotonicSeconds();
            const outcome = (0, wire_js_1.parseWait)((await this.#transport.send(this.#waitCall(actionRequestId, poll))).body);
            if (outcome !== null)
                return outcome;
            if (poll === 0 || deadline - monotonicSeconds() <= 0) {
                const reason = `no decision within ${timeout} seconds`;
                return { approved: false, action_request_id: actionRequestId, status: "timeout", reason, decision: null };
            }
            if (monotonicSeconds() - started < poll / 2) {
                // a server (or proxy) that answers long-polls early: do not spin
                await (0, transport_js_1.sleep)(Math.min(MIN_POLL_INTERVAL_SECONDS, Math.max(0, deadline - monotonicSeconds())));
            }
        }
    }
    #waitCall(actionRequestId, seconds) {
        return {
            method: "GET",
            path: `/v1/actions/${pathId(actionRequestId)}/wait`,
            query: { timeout: String(seconds) },
            replaySafe: true,
            extraTimeoutSeconds: seconds,
        };
    }
    /** Never shows the key. */
    toString() {
        return `AgentFirewall(baseUrl=${this.baseUrl})`;
    }
}
exports.AgentFirewall = AgentFirewall;
