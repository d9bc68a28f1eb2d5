// What a newcomer following docs/sdk-node.md runs into: values JSON cannot carry, options
// that cannot work, redirects and timeouts. Each is refused at once, or named plainly,
// instead of being sent changed or retried for seconds behind "cannot reach".
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";

import { ActionSpecError, AgentFirewall, APIError, TransportError } from "../../dist/esm/index.js";
import { startScriptedServer, stateAnswer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";

async function withServer(answers, body) {
  const server = await startScriptedServer(answers);
  try {
    return await body(server, new AgentFirewall({ apiKey: KEY, baseUrl: server.url, retryBackoffSeconds: 0.01 }));
  } finally {
    await server.close();
  }
}

class Money {
  constructor() {
    this.cents = 100;
  }
}

describe("values JSON.stringify would change are an ActionSpecError, nothing sent", () => {
  for (const [name, value, kind] of [
    ["a Date", new Date(0), "Date"],
    ["a Map", new Map([["a", 1]]), "Map"],
    ["a Set", new Set([1]), "Set"],
    ["a RegExp", /x/, "RegExp"],
    ["a Buffer", Buffer.from("hi"), "Uint8Array"],
    ["a class instance", new Money(), "Money"],
  ]) {
    test(`${name} in parameters (at any depth) or riskHints`, () =>
      withServer([{ body: {} }], async (server, client) => {
        for (const [action, field] of [
          [{ type: "a.b", parameters: { when: value } }, "parameters.when"],
          [{ type: "a.b", parameters: { items: [{ when: value }] } }, "parameters.items[0].when"],
          [{ type: "a.b", riskHints: { when: value } }, "riskHints.when"],
        ]) {
          await assert.rejects(client.requestAction(action), (error) => {
            assert.ok(error instanceof ActionSpecError, String(error));
            assert.equal(error.field, field);
            assert.ok(error.message.includes(`(${kind})`), error.message);
            return true;
          });
        }
        await assert.rejects(client.dryRun({ type: "a.b", parameters: value }), ActionSpecError);
        await assert.rejects(client.dryRun({ type: "a.b", resource: value }), ActionSpecError);
        assert.equal(server.requests.length, 0);
      }));
  }

  test("Object.create(null) is a plain object and is sent", () =>
    withServer([{ body: { status: "allowed", decision: stateAnswer("allowed").decision } }], async (server, client) => {
      const parameters = Object.assign(Object.create(null), { pull_number: 42 });
      await client.dryRun({ type: "github.pr.merge", parameters });
      assert.deepEqual(server.requests[0].body.action_spec.parameters, { pull_number: 42 });
    }));
});

describe("options that cannot work are refused when the client is made", () => {
  for (const [name, options, pattern] of [
    ["a base URL without a scheme", { baseUrl: "localhost:3000/api" }, /http:\/\/ or https:\/\/ URL/],
    ["a base URL that is no URL", { baseUrl: "not a url" }, /`not a url`/],
    ["a base URL of another scheme", { baseUrl: "ftp://firewall.test/api" }, /http:\/\/ or https:\/\//],
    ["a base URL with a query", { baseUrl: "http://firewall.test/api?x=1" }, /query or fragment/],
    ["a base URL with credentials", { baseUrl: "http://u:p@firewall.test/api" }, /credentials/],
    ["a fetch that is not a function", { fetch: "fetch" }, /`fetch` must be a function/],
    ["a key that is not a string", { apiKey: 42 }, /`apiKey` must be a string/],
  ]) {
    test(`${name} is a TypeError`, () => {
      assert.throws(
        () => new AgentFirewall({ apiKey: KEY, ...options }),
        (error) => {
          assert.ok(error instanceof TypeError, String(error));
          assert.match(error.message, pattern);
          assert.ok(!error.message.includes(KEY));
          return true;
        },
      );
    });
  }

  test("AAF_BASE_URL is checked the same way", () => {
    const saved = process.env.AAF_BASE_URL;
    process.env.AAF_BASE_URL = "127.0.0.1:3000/api";
    try {
      assert.throws(() => new AgentFirewall({ apiKey: KEY }), /AAF_BASE_URL\) must be an http/);
    } finally {
      if (saved === undefined) delete process.env.AAF_BASE_URL;
      else process.env.AAF_BASE_URL = saved;
    }
  });

  test("a number given as a string says so", () => {
    assert.throws(() => new AgentFirewall({ apiKey: KEY, timeoutSeconds: "5" }), {
      name: "RangeError",
      message: '`timeoutSeconds` must be a finite number >= 0.001, not the string `"5"`',
    });
  });
});

describe("an idempotency key a header cannot carry unchanged is a RangeError, nothing sent", () => {
  for (const key of ["", " padded ", "ключ", "x".repeat(201), "line\nbreak", 42]) {
    test(JSON.stringify(key).slice(0, 30), () =>
      withServer([{ body: {} }], async (server, client) => {
        await assert.rejects(client.requestAction({ type: "a.b" }, { idempotencyKey: key }), RangeError);
        assert.equal(server.requests.length, 0);
      }),
    );
  }
});

describe("answers that are not the API's", () => {
  test("a redirect is an APIError naming where it points, not followed nor retried", () =>
    withServer(
      [{ status: 301, headers: { Location: "https://elsewhere.test/api/v1/actions" }, body: {} }],
      async (server, client) => {
        await assert.rejects(client.dryRun({ type: "a.b" }), (error) => {
          assert.ok(error instanceof APIError && !(error instanceof TransportError), String(error));
          assert.equal(error.statusCode, 301);
          assert.ok(error.message.includes("`https://elsewhere.test/api/v1/actions`"), error.message);
          assert.ok(error.message.includes("AAF_BASE_URL"), error.message);
          return true;
        });
        assert.equal(server.requests.length, 1);
      },
    ));

  test("no answer within timeoutSeconds says so", async () => {
    const sockets = new Set();
    const silent = createServer(() => {}).on("connection", (socket) => sockets.add(socket));
    await new Promise((done) => silent.listen(0, "127.0.0.1", done));
    try {
      const baseUrl = `http://127.0.0.1:${silent.address().port}/api`;
      const client = new AgentFirewall({ apiKey: KEY, baseUrl, timeoutSeconds: 0.2, maxRetries: 0 });
      await assert.rejects(client.getAction("act_1"), (error) => {
        assert.ok(error instanceof TransportError, String(error));
        assert.equal(
          error.message,
          `no answer from the TameFlare server at \`${baseUrl}\` within 0.2 s (\`timeoutSeconds\`)`,
        );
        return true;
      });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((done) => silent.close(done));
    }
  });
});

describe("getAction and waitForDecision", () => {
  test("execution_state is read as the server sends it", () =>
    withServer(
      [
        { body: { ...stateAnswer("allowed"), execution_state: "executing" } },
        { body: { ...stateAnswer("allowed"), execution_state: "bogus" } },
        { body: stateAnswer("allowed") },
      ],
      async (_server, client) => {
        assert.equal((await client.getAction("act_1")).execution_state, "executing");
        assert.equal((await client.getAction("act_1")).execution_state, null);
        assert.equal((await client.getAction("act_1")).execution_state, null);
      },
    ));

  test("an executed action's reason says so, not the policy's reason for holding it", () =>
    withServer(
      [
        { body: { ...stateAnswer("executed"), execution_state: "executed" } },
        { body: { ...stateAnswer("allowed"), execution_state: "executing" } },
      ],
      async (_server, client) => {
        const done = await client.waitForDecision("act_1", { timeoutSeconds: 5 });
        assert.equal(done.status, "executed");
        assert.match(done.reason, /^the action was already executed: its decision token was used/);
        const running = await client.waitForDecision("act_1", { timeoutSeconds: 5 });
        assert.equal(running.status, "executed");
        assert.match(running.reason, /^the action is being executed/);
      },
    ));
});
