// Error answers become typed errors carrying the server's code and message, never the key.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, test } from "node:test";

import {
  APIError,
  AgentFirewall,
  AgentFirewallError,
  AuthenticationError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  TransportError,
  ValidationError,
} from "../../dist/esm/index.js";
import { startScriptedServer } from "../helpers/http-server.mjs";

const KEY = "aaf_live_fedcba9876543210fedcba9876543210";
const ACTION = { type: "github.pr.merge" };

const CASES = [
  [401, { error: "unauthorized", message: "invalid or inactive API key" }, AuthenticationError],
  [
    403,
    { error: "forbidden", message: "role too low", required_role: "admin", your_role: "viewer" },
    PermissionDeniedError,
  ],
  [404, { error: "not_found", message: "no action `act_x`" }, NotFoundError],
  [409, { error: "token_used", message: "decision token already used" }, ConflictError],
  [422, { error: "invalid_request", message: "bad type", field: "action_spec.type" }, ValidationError],
  [413, { error: "payload_too_large", message: "body over 1 MiB" }, ValidationError],
  [500, { error: "internal_error", message: "boom" }, ServerError],
  [418, { error: "teapot", message: "short and stout" }, APIError],
];

describe("status codes map to typed errors", () => {
  for (const [status, body, cls] of CASES) {
    test(`${status} ${body.error} is a ${cls.name}`, async () => {
      const server = await startScriptedServer([{ status, body }]);
      try {
        const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, retryBackoffSeconds: 0 });
        await assert.rejects(client.requestAction(ACTION), (error) => {
          assert.ok(error instanceof cls, `${error}`);
          assert.ok(error instanceof APIError && error instanceof AgentFirewallError);
          assert.equal(error.name, cls.name);
          assert.equal(error.statusCode, status);
          assert.equal(error.code, body.error);
          assert.deepEqual(error.body, body);
          assert.equal(error.message, `${body.error}: ${body.message}`);
          assert.ok(!error.message.includes(KEY) && !error.stack.includes(KEY));
          return true;
        });
        assert.equal(server.requests.length, 1, "none of these is retried");
      } finally {
        await server.close();
      }
    });
  }

  test("403 carries the roles, 422 the field", async () => {
    const server = await startScriptedServer([
      { status: CASES[1][0], body: CASES[1][1] },
      { status: 422, body: CASES[4][1] },
    ]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      const forbidden = await client.requestAction(ACTION).catch((e) => e);
      assert.equal(forbidden.requiredRole, "admin");
      assert.equal(forbidden.yourRole, "viewer");
      const invalid = await client.requestAction(ACTION).catch((e) => e);
      assert.equal(invalid.field, "action_spec.type");
    } finally {
      await server.close();
    }
  });

  test("retryable is the server's boolean, else undefined", async () => {
    const server = await startScriptedServer([
      { status: 502, body: { error: "upstream_unreachable", message: "not sent", retryable: true } },
      { status: 504, body: { error: "upstream_timeout", message: "too slow", retryable: false } },
      { status: 409, body: { error: "token_used", message: "used" } },
      { status: 502, body: { error: "upstream_failed", message: "sent", retryable: "no" } },
    ]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
      const answers = [];
      for (let i = 0; i < 4; i += 1) answers.push(await client.execute("act_1", "tok").catch((e) => e));
      assert.deepEqual(
        answers.map((e) => [e.constructor.name, e.statusCode, e.retryable]),
        [
          ["ServerError", 502, true],
          ["ServerError", 504, false],
          ["ConflictError", 409, undefined],
          ["ServerError", 502, undefined],
        ],
      );
    } finally {
      await server.close();
    }
  });

  test("an error body that is not JSON keeps its text", async () => {
    const server = await startScriptedServer([{ status: 401, raw: "Unauthorized" }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      await assert.rejects(client.getAction("act_1"), (error) => {
        assert.ok(error instanceof AuthenticationError);
        assert.equal(error.code, undefined);
        assert.equal(error.message, "Unauthorized");
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

describe("an unreachable server", () => {
  test("is a TransportError naming the URL but not the key, after retrying", async () => {
    // a port that was just free: nothing listens there
    const port = await new Promise((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port: free } = probe.address();
        probe.close(() => resolve(free));
      });
    });
    const baseUrl = `http://127.0.0.1:${port}/api`;
    const client = new AgentFirewall({ apiKey: KEY, baseUrl, maxRetries: 2, retryBackoffSeconds: 0 });
    await assert.rejects(client.execute("act_1", "tok"), (error) => {
      assert.ok(error instanceof TransportError, `${error}`);
      assert.equal(error.unsent, true, "a refused connection never reached the server");
      assert.equal(error.statusCode, 0);
      assert.ok(error.message.includes(baseUrl), error.message);
      assert.ok(error.message.includes("is it running — `tf up` — and is `AAF_BASE_URL` its address"), error.message);
      assert.ok(!error.message.includes(KEY) && !error.stack.includes(KEY));
      return true;
    });
  });
});
