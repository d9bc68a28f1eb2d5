/**
 * The only I/O: one HTTP call through `fetch`, with a per-attempt timeout, error mapping
 * and the retry loop of ./retry.ts. Never puts a header (the API key) in an error.
 */

import { APIError, ServerError, TransportError } from "./errors.js";
import { isUnsent, retryDelaySeconds, shouldRetry, type RetryPolicy } from "./retry.js";
import type { JsonValue } from "./types.js";
import { errorForResponse } from "./wire.js";

/** One HTTP call, before any I/O; `replaySafe` governs retries (see ./retry.ts). */
export interface Call {
  method: "GET" | "POST";
  path: string;
  json?: { [key: string]: JsonValue };
  query?: Record<string, string>;
  headers?: Record<string, string>;
  replaySafe: boolean;
  /** Extra seconds on top of the client timeout (long-polls). */
  extraTimeoutSeconds?: number;
}

/** A 2xx answer, decoded. */
export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export interface TransportOptions {
  baseUrl: string;
  headers: Record<string, string>;
  timeoutSeconds: number;
  retry: RetryPolicy;
  fetch: typeof globalThis.fetch;
}

/** Resolve after `seconds`. */
export function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, seconds) * 1000));
}

function decode(text: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export class Transport {
  readonly #options: TransportOptions;

  constructor(options: TransportOptions) {
    this.#options = options;
  }

  /** Send `call`, retrying as the policy allows; resolve to a 2xx answer or throw. */
  async send(call: Call): Promise<Answer> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.#attempt(call);
      } catch (error) {
        const policy = this.#options.retry;
        if (attempt > policy.maxRetries || !shouldRetry(error, call.replaySafe, policy)) throw error;
        await sleep(retryDelaySeconds(error, attempt, policy));
      }
    }
  }

  #url(call: Call): string {
    const url = new URL(this.#options.baseUrl + call.path);
    for (const [key, value] of Object.entries(call.query ?? {})) url.searchParams.set(key, value);
    return url.toString();
  }

  async #attempt(call: Call): Promise<Answer> {
    const { baseUrl, headers, timeoutSeconds, fetch } = this.#options;
    const seconds = timeoutSeconds + (call.extraTimeoutSeconds ?? 0);
    const init: RequestInit = {
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
    if (call.json !== undefined) init.body = JSON.stringify(call.json);
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.#url(call), init);
      text = await response.text();
    } catch (error) {
      throw transportError(error, baseUrl, seconds);
    }
    const body = decode(text);
    if (response.status >= 300 && response.status < 400) {
      throw redirectError(response, body, baseUrl);
    }
    if (response.status >= 400) {
      throw errorForResponse(response.status, body, response.headers.get("Retry-After"));
    }
    if (typeof body !== "object" || body === null) {
      const message = `unexpected answer from the server: not JSON (HTTP ${response.status})`;
      throw new ServerError(message, { statusCode: response.status, body });
    }
    return { status: response.status, headers: response.headers, body };
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.name}: ${error.message}${cause}`;
}

/** Our TransportError for a fetch failure: names the server, never a header. */
export function transportError(error: unknown, baseUrl: string, seconds?: number): TransportError {
  const unsent = isUnsent(error);
  if (!unsent && error instanceof Error && error.name === "TimeoutError" && seconds !== undefined) {
    const message = `no answer from the TameFlare server at \`${baseUrl}\` within ${seconds} s (\`timeoutSeconds\`)`;
    return new TransportError(message, { unsent, cause: error });
  }
  const hint = unsent ? " (is it running — `tf up` — and is `AAF_BASE_URL` its address, ending in `/api`?)" : "";
  const message = `cannot reach the TameFlare server at \`${baseUrl}\`: ${describe(error)}${hint}`;
  return new TransportError(message, { unsent, cause: error });
}

/** A 3xx answer: not followed, since the key would go along to wherever it points. */
function redirectError(response: Response, body: unknown, baseUrl: string): APIError {
  const location = (response.headers.get("Location") ?? "").slice(0, 200);
  const where = location ? `, a redirect to \`${location}\`` : "";
  const message =
    `the TameFlare server at \`${baseUrl}\` answered ${response.status}${where}, which is not followed ` +
    "(the API key goes to `baseUrl` only): set `baseUrl` (AAF_BASE_URL) to the address that answers";
  return new APIError(message, { statusCode: response.status, body });
}
