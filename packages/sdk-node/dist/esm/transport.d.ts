/**
 * The only I/O: one HTTP call through `fetch`, with a per-attempt timeout, error mapping
 * and the retry loop of ./retry.ts. Never puts a header (the API key) in an error: not
 * from a fetch failure (Node's names an invalid header's value), nor from an answer that
 * echoes the request (a wrong `baseUrl` pointing at an echo service or a debugging proxy).
 */
import { TransportError } from "./errors.js";
import { type RetryPolicy } from "./retry.js";
import type { JsonValue } from "./types.js";
/** One HTTP call, before any I/O; `replaySafe` governs retries (see ./retry.ts). */
export interface Call {
    method: "GET" | "POST";
    path: string;
    json?: {
        [key: string]: JsonValue;
    };
    query?: Record<string, string>;
    headers?: Record<string, string>;
    replaySafe: boolean;
    /** Extra seconds on top of the client timeout (long-polls). */
    extraTimeoutSeconds?: number;
    /** A public document outside the API (the JWKS): fetched from this absolute URL instead
     * of `baseUrl` + `path`, and without the API key; `option` is the client option that sets
     * the URL, for messages. */
    publicUrl?: {
        url: string;
        option: string;
    };
}
/** A 2xx answer, decoded. */
export interface Answer {
    status: number;
    headers: Headers;
    body: unknown;
}
export interface TransportOptions {
    baseUrl: string;
    /** Sent as `Authorization: Bearer` to `baseUrl` only; masked wherever it would show:
     * error messages, bodies, causes. */
    apiKey: string;
    /** Sent with every call. */
    headers: Record<string, string>;
    timeoutSeconds: number;
    retry: RetryPolicy;
    fetch: typeof globalThis.fetch;
}
/** Resolve after `seconds`. */
export declare function sleep(seconds: number): Promise<void>;
/**
 * The most an answer may hold, decoded: 64 MiB. The largest a TameFlare server gives is an
 * action's state (`getAction`, `/wait`): its spec, within the 1 MiB request limit, and an
 * executed action's upstream answer, 1 MiB of text that JSON escaping can make 6 MiB. More
 * is not the server (a wrong `baseUrl`, or a small gzip answer that inflates without end),
 * and reading it whole could take all the agent's memory: reading stops at the limit.
 */
export declare const MAX_ANSWER_BYTES: number;
export declare class Transport {
    #private;
    constructor(options: TransportOptions);
    /** Send `call`, retrying as the policy allows; resolve to a 2xx answer or throw. */
    send(call: Call): Promise<Answer>;
}
/** Our TransportError for a fetch failure: names the server, never the key (a failure
 * that shows it is described with the key masked and not kept as the `cause`). */
export declare function transportError(error: unknown, baseUrl: string, seconds?: number, apiKey?: string): TransportError;
