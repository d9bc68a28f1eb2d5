// Retries: 429 after Retry-After, 502/503/504 only when replay is safe, same idempotency key.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { AgentFirewall, RateLimitError, ServerError, TransportError } from "../../dist/esm/index.js";
import { retryDelaySeconds, shouldRetry } from "../../dist/esm/retry.js";
import { parseRetryAfter } from "../../dist/esm/wire.js";
import { actionAnswer, startScriptedServer, stateAnswer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";
const ACTION = { type: "github.pr.merge", parameters: { pull_number: 42 } };
const POLICY = { maxRetries: 3, backoffSeconds: 0.5, maxBackoffSeconds: 8, maxWaitSeconds: 60 };
const limited = (seconds) => ({
  status: 429,
  headers: { "Retry-After": String(seconds) },
  body: { error: "rate_limited", message: "over 2 per minute", retry_after: seconds },
});

async function withServer(answers, body) {
  const server = await startScriptedServer(answers);
  try {
    return await body(server, new AgentFirewall({ apiKey: KEY, baseUrl: server.url, retryBackoffSeconds: 0 }));
  } finally {
    await server.close();
  }
}

describe("over the wire", () => {
  test("429 then 200: requestAction succeeds, retried with the same idempotency key", () =>
    withServer([limited(0), limited(0), { body: actionAnswer() }], async (server, client) => {
      const result = await client.requestAction(ACTION);
      assert.equal(result.status, "allowed");
      assert.equal(server.requests.length, 3);
      assert.equal(new Set(server.requests.map((r) => r.headers["idempotency-key"])).size, 1);
    }));

  test("429 with Retry-After: 1 is retried after the wait", () =>
    withServer([limited(1), { body: actionAnswer() }], async (server, client) => {
      assert.equal((await client.requestAction(ACTION)).status, "allowed");
      assert.equal(server.requests.length, 2);
    }));

  test("429 asking for more than maxRetryWaitSeconds is thrown at once", () =>
    withServer([limited(120)], async (server, client) => {
      await assert.rejects(client.requestAction(ACTION), (error) => {
        assert.ok(error instanceof RateLimitError);
        assert.equal(error.retryAfter, 120);
        assert.equal(error.code, "rate_limited");
        return true;
      });
      assert.equal(server.requests.length, 1);
    }));

  test("429 on every try: RateLimitError after maxRetries retries", () =>
    withServer([limited(0)], async (server, client) => {
      await assert.rejects(client.requestAction(ACTION), RateLimitError);
      assert.equal(server.requests.length, 4);
    }));

  test("429 on execute is retried too: the server refused before doing anything", () =>
    withServer(
      [limited(0), { body: { action_request_id: "act_1", status: "executed", result: {} } }],
      async (server, client) => {
        assert.equal((await client.execute("act_1", "tok")).status, "executed");
        assert.equal(server.requests.length, 2);
      },
    ));

  for (const status of [502, 503, 504]) {
    test(`${status} on requestAction is retried with the same idempotency key`, () =>
      withServer([{ status, raw: "bad gateway" }, { body: actionAnswer() }], async (server, client) => {
        assert.equal((await client.requestAction(ACTION)).status, "allowed");
        assert.equal(server.requests.length, 2);
        assert.equal(server.requests[0].headers["idempotency-key"], server.requests[1].headers["idempotency-key"]);
      }));

    test(`${status} on execute is not replayed`, () =>
      withServer([{ status, raw: "bad gateway" }, { body: {} }], async (server, client) => {
        await assert.rejects(
          client.execute("act_1", "tok"),
          (error) => error instanceof ServerError && error.statusCode === status,
        );
        assert.equal(server.requests.length, 1);
      }));
  }

  test("502 on a read (getAction) is retried", () =>
    withServer([{ status: 502, raw: "" }, { body: stateAnswer("executed") }], async (server, client) => {
      assert.equal((await client.getAction("act_1")).status, "executed");
      assert.equal(server.requests.length, 2);
    }));

  test("500 is not retried", () =>
    withServer([{ status: 500, body: { error: "internal_error", message: "boom" } }], async (server, client) => {
      await assert.rejects(client.requestAction(ACTION), ServerError);
      assert.equal(server.requests.length, 1);
    }));

  test("maxRetries: 0 never retries", async () => {
    const server = await startScriptedServer([limited(0), { body: actionAnswer() }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
      await assert.rejects(client.requestAction(ACTION), RateLimitError);
      assert.equal(server.requests.length, 1);
    } finally {
      await server.close();
    }
  });
});

describe("retry arithmetic", () => {
  const rate = (retryAfter) => new RateLimitError("rate_limited: x", { statusCode: 429, retryAfter });
  const server = (statusCode) => new ServerError("x", { statusCode });
  const transport = (unsent) => new TransportError("x", { unsent });

  test("which errors are retried", () => {
    const table = [
      [rate(5), false, true],
      [rate(undefined), false, true],
      [rate(61), true, false],
      [server(503), true, true],
      [server(503), false, false],
      [server(500), true, false],
      [transport(true), false, true],
      [transport(false), false, false],
      [transport(false), true, true],
      [new Error("bug"), true, false],
    ];
    for (const [error, replaySafe, expected] of table) {
      assert.equal(
        shouldRetry(error, replaySafe, POLICY),
        expected,
        `${error.name} ${error.statusCode} replaySafe=${replaySafe}`,
      );
    }
  });

  test("Retry-After is honoured; otherwise the backoff doubles up to its cap", () => {
    assert.equal(retryDelaySeconds(rate(7), 1, POLICY), 7);
    assert.equal(retryDelaySeconds(rate(7), 3, POLICY), 7);
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => retryDelaySeconds(server(503), n, POLICY)),
      [0.5, 1, 2, 4, 8, 8],
    );
    assert.equal(retryDelaySeconds(rate(undefined), 2, POLICY), 1);
  });

  test("Retry-After as seconds, as an HTTP date, or from the body", () => {
    const now = Date.parse("2026-11-25T09:00:00Z");
    assert.equal(parseRetryAfter("30", null, now), 30);
    assert.equal(parseRetryAfter("Wed, 25 Nov 2026 09:00:12 GMT", null, now), 12);
    assert.equal(parseRetryAfter("Wed, 25 Nov 2026 08:59:00 GMT", null, now), 0);
    assert.equal(parseRetryAfter(null, { retry_after: 4 }, now), 4);
    assert.equal(parseRetryAfter("soon", { retry_after: 4 }, now), 4);
    assert.equal(parseRetryAfter(null, "text", now), undefined);
  });
});
