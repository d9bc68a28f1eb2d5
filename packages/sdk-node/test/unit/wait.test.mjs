// waitForApproval: long-polls /wait until a human decides; falsy unless approved.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { AgentFirewall } from "../../dist/esm/index.js";
import { startScriptedServer, stateAnswer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";

async function withServer(answers, body) {
  const server = await startScriptedServer(answers);
  try {
    return await body(server, new AgentFirewall({ apiKey: KEY, baseUrl: server.url }));
  } finally {
    await server.close();
  }
}

describe("waitForApproval", () => {
  test("approved: resolves to an object with the fresh decision token", () =>
    withServer([{ body: stateAnswer("allowed", "fresh.tok.en") }], async (server, client) => {
      const approved = await client.waitForApproval("act_1", { timeoutSeconds: 30 });
      assert.ok(approved);
      assert.equal(approved.decision_token, "fresh.tok.en");
      assert.equal(approved.action_request_id, "act_1");
      assert.equal(approved.status, "allowed");
      assert.equal(server.requests[0].method, "GET");
      assert.equal(server.requests[0].url, "/api/v1/actions/act_1/wait?timeout=30");
    }));

  test("the default wait is 300 s, polled in the server's 60 s slices", () =>
    withServer([{ body: stateAnswer("allowed", "t") }], async (server, client) => {
      assert.ok(await client.waitForApproval("act_1"));
      assert.equal(server.requests[0].url, "/api/v1/actions/act_1/wait?timeout=60");
    }));

  for (const status of ["denied", "expired"]) {
    test(`${status}: resolves to null; waitForDecision says ${status}`, () =>
      withServer([{ body: stateAnswer(status) }], async (_server, client) => {
        assert.equal(await client.waitForApproval("act_1", { timeoutSeconds: 5 }), null);
        const outcome = await client.waitForDecision("act_1", { timeoutSeconds: 5 });
        assert.equal(outcome.approved, false);
        assert.equal(outcome.status, status);
        // no approval in the answer: a denial falls back on the decision's reason
        const expected = status === "expired" ? "no decision before the approval expired" : outcome.decision.reason;
        assert.equal(outcome.reason, expected);
      }));
  }

  test("allowed without a token (already executed) is not an approval", () =>
    withServer([{ body: stateAnswer("allowed") }], async (_server, client) => {
      const outcome = await client.waitForDecision("act_1", { timeoutSeconds: 5 });
      assert.equal(outcome.approved, false);
      assert.equal(outcome.status, "executed");
    }));

  test("keeps polling while pending, then returns the approval", () =>
    withServer(
      [
        { body: stateAnswer("pending_approval") },
        { body: stateAnswer("pending_approval") },
        { body: stateAnswer("allowed", "t2") },
      ],
      async (server, client) => {
        const approved = await client.waitForApproval("act_1", { timeoutSeconds: 30 });
        assert.equal(approved?.decision_token, "t2");
        assert.equal(server.requests.length, 3);
      },
    ));

  test("a negative or NaN timeout is a RangeError, before any request", () =>
    withServer([{ body: stateAnswer("allowed", "t") }], async (server, client) => {
      for (const timeoutSeconds of [-1, Number.NaN]) {
        await assert.rejects(client.waitForApproval("act_1", { timeoutSeconds }), RangeError);
      }
      assert.equal(server.requests.length, 0);
    }));

  test("still pending at the deadline: null, and waitForDecision says timeout", () =>
    withServer([{ body: stateAnswer("pending_approval") }], async (server, client) => {
      const outcome = await client.waitForDecision("act_1", { timeoutSeconds: 1 });
      assert.equal(outcome.approved, false);
      assert.equal(outcome.status, "timeout");
      assert.equal(outcome.reason, "no decision within 1 seconds");
      assert.equal(server.requests.at(-1).url, "/api/v1/actions/act_1/wait?timeout=0");
      assert.equal(await client.waitForApproval("act_1", { timeoutSeconds: 0 }), null);
    }));
});
