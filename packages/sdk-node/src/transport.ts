/**
 * The only I/O: one HTTP call through `fetch`, with a per-attempt timeout, error mapping
 * and the retry loop of ./retry.ts. Never puts a header (the API key) in an error: not
 * from a fetch failure (Node's names an invalid header's value), nor from an answer that
 * echoes the request (a wrong `baseUrl` pointing at an echo service or a debugging proxy).
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
  /** A public document outside the API (the JWKS): fetched from this absolute URL instead
   * of `baseUrl` + `path`, and without the API key; `option` is the client option that sets
   * the URL, for messages. */
  publicUrl?: { url: string; option: string };
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

/** Node's timers take at most 2^31 - 1 ms (24.8 days); a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function milliseconds(seconds: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(seconds * 1000)));
}

/** Resolve after `seconds`. */
export function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds(seconds)));
}

const MASK = "[API key]";

/**
 * The most an answer may hold, decoded: 64 MiB. The largest a TameFlare server gives is an
 * action's state (`getAction`, `/wait`): its spec, within the 1 MiB request limit, and an
 * executed action's upstream answer, 1 MiB of text that JSON escaping can make 6 MiB. More
 * is not the server (a wrong `baseUrl`, or a small gzip answer that inflates without end),
 * and reading it whole could take all the agent's memory: reading stops at the limit.
 */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** `text` with every occurrence of `secret` masked. */
function mask(text: string, secret: string): string {
  return text.split(secret).join(MASK);
}

/** The body of `response`, decoded (gzip...), or `undefined` as soon as it holds more than
 * `limit` bytes: the rest is never read. */
async function readBody(response: Response, limit: number): Promise<Uint8Array | undefined> {
  if (response.body === null) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
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
    const url = new URL(call.publicUrl?.url ?? this.#options.baseUrl + call.path);
    for (const [key, value] of Object.entries(call.query ?? {})) url.searchParams.set(key, value);
    return url.toString();
  }

  async #attempt(call: Call): Promise<Answer> {
    const { apiKey, headers, timeoutSeconds, fetch } = this.#options;
    const baseUrl = call.publicUrl?.url ?? this.#options.baseUrl;
    const seconds = timeoutSeconds + (call.extraTimeoutSeconds ?? 0);
    const init: RequestInit = {
      method: call.method,
      headers: {
        ...(call.publicUrl === undefined && { Authorization: `Bearer ${apiKey}` }),
        ...headers,
        ...(call.json !== undefined && { "Content-Type": "application/json" }),
        ...call.headers,
      },
      signal: AbortSignal.timeout(milliseconds(seconds)),
      // never followed (the key would go along); a redirect is reported, see below
      redirect: "manual",
    };
    if (call.json !== undefined) init.body = JSON.stringify(call.json);
    let response: Response;
    let bytes: Uint8Array | undefined;
    try {
      response = await fetch(this.#url(call), init);
      bytes = await readBody(response, MAX_ANSWER_BYTES);
    } catch (error) {
      throw transportError(error, baseUrl, seconds, apiKey);
    }
    if (bytes === undefined) {
      // not the server's kind of answer: sending again would only read as much again
      const message = `the answer is larger than ${MAX_ANSWER_BYTES} bytes: is \`${baseUrl}\` the TameFlare server?`;
      throw new ServerError(message, { statusCode: response.status, retryable: false });
    }
    const body = decode(mask(new TextDecoder().decode(bytes), apiKey));
    if (response.status >= 300 && response.status < 400) {
      throw redirectError(response, body, baseUrl, apiKey, call.publicUrl?.option);
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

/** True when `error`, or an error it was caused by, shows `secret` anywhere. */
function shows(error: unknown, secret: string): boolean {
  for (let cause = error, depth = 0; cause !== undefined && cause !== null && depth < 5; depth += 1) {
    if (!(cause instanceof Error)) return String(cause).includes(secret);
    if (String(cause.message).includes(secret) || String(cause.stack).includes(secret)) return true;
    cause = cause.cause;
  }
  return false;
}

/** Our TransportError for a fetch failure: names the server, never the key (a failure
 * that shows it is described with the key masked and not kept as the `cause`). */
export function transportError(error: unknown, baseUrl: string, seconds?: number, apiKey = ""): TransportError {
  const unsent = isUnsent(error);
  const cause = apiKey !== "" && shows(error, apiKey) ? undefined : error;
  if (!unsent && error instanceof Error && error.name === "TimeoutError" && seconds !== undefined) {
    const message = `no answer from the TameFlare server at \`${baseUrl}\` within ${seconds} s (\`timeoutSeconds\`)`;
    return new TransportError(message, { unsent, ...(cause !== undefined && { cause }) });
  }
  const hint = unsent ? " (is it running — `tf up` — and is `AAF_BASE_URL` its address, ending in `/api`?)" : "";
  const said = apiKey !== "" ? mask(describe(error), apiKey) : describe(error);
  const message = `cannot reach the TameFlare server at \`${baseUrl}\`: ${said}${hint}`;
  return new TransportError(message, { unsent, ...(cause !== undefined && { cause }) });
}

/** A 3xx answer: not followed, since the key would go along to wherever it points. */
function redirectError(response: Response, body: unknown, baseUrl: string, apiKey: string, option?: string): APIError {
  const location = mask(response.headers.get("Location") ?? "", apiKey).slice(0, 200);
  const where = location ? `, a redirect to \`${location}\`` : "";
  const setting = option === undefined ? "`baseUrl` (AAF_BASE_URL)" : `\`${option}\``;
  const message =
    `the TameFlare server at \`${baseUrl}\` answered ${response.status}${where}, which is not followed ` +
    `(the API key goes to \`baseUrl\` only): set ${setting} to the address that answers`;
  return new APIError(message, { statusCode: response.status, body });
}
