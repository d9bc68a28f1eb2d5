// A deny is data until the caller asks for an exception: `result.raiseForDenial()` returns the
// result only when it is allowed, and throws on a deny and on a hold (the Python SDK's
// `raise_for_denial`), so code that enforces with it never runs a held action.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  APIError,
  ActionDeniedError,
  ActionResult,
  AgentFirewall,
  AgentFirewallError,
  ApprovalError,
} from "../../dist/esm/index.js";
import { actionAnswer, decision, startScriptedServer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";
const WIRE_FIELDS = ["action_request_id", "status", "decision", "decision_token", "approval", "replayed"];

/** The results `requestAction` resolves to for each of `answers`, from a scripted server. */
async function results(...answers) {
  const server = await startScriptedServer(answers.map((body) => ({ body })));
  try {
    const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
    const out = [];
    for (let i = 0; i < answers.length; i += 1) out.push(await client.requestAction({ type: "github.pr.merge" }));
    return out;
  } finally {
    await server.close();
  }
}

describe("raiseForDenial", () => {
  test("allowed: returns the result itself, for chaining", async () => {
    const [result] = await results(actionAnswer("allowed"));
    assert.ok(result instanceof ActionResult);
    assert.equal(result.raiseForDenial(), result);
    assert.equal(result.raiseForDenial().decision_token, "tok.en.sig");
  });

  test("allowed under monitor enforcement (would_deny): returns, as the status says", async () => {
    const monitored = {
      ...actionAnswer("allowed"),
      decision: { ...decision("allow"), enforcement_level: "monitor", would_outcome: "would_deny" },
    };
    const [result] = await results(monitored);
    assert.equal(result.raiseForDenial(), result);
  });

  test("denied: ActionDeniedError carrying the decision and the action's id", async () => {
    const [result] = await results(actionAnswer("denied", "act_denied"));
    assert.throws(
      () => result.raiseForDenial(),
      (error) => {
        assert.ok(error instanceof ActionDeniedError, String(error));
        assert.ok(error instanceof AgentFirewallError);
        assert.ok(!(error instanceof APIError), "a deny is the firewall's answer, not an API failure");
        assert.equal(error.name, "ActionDeniedError");
        assert.equal(error.actionRequestId, "act_denied");
        assert.deepEqual(error.decision, result.decision);
        assert.equal(error.message, "action `act_denied` denied: merges need a human");
        return true;
      },
    );
  });

  test("pending_approval: ApprovalError that says how to wait, never the result", async () => {
    const [result] = await results(actionAnswer("pending_approval", "act_held"));
    assert.throws(
      () => result.raiseForDenial(),
      (error) => {
        assert.ok(error instanceof ApprovalError, String(error));
        assert.ok(error instanceof AgentFirewallError && !(error instanceof ActionDeniedError));
        assert.equal(error.status, "pending_approval");
        assert.equal(error.actionRequestId, "act_held");
        assert.equal(
          error.message,
          "action `act_held` needs a person's approval (merges need a human): wait with " +
            "`waitForApproval(result.action_request_id)`, which resolves to a fresh decision token once approved",
        );
        return true;
      },
    );
  });

  test("a status the decision does not explain (denied, decision allow) is still a denial", () => {
    const odd = new ActionResult({ action_request_id: "act_odd", status: "denied", decision: decision("allow") });
    assert.throws(() => odd.raiseForDenial(), ActionDeniedError);
  });
});

describe("ActionResult is still the wire's data", () => {
  test("JSON, spread and own keys are the server's fields only, in the same order", async () => {
    const [result] = await results(actionAnswer("pending_approval"));
    assert.ok(result instanceof ActionResult);
    assert.deepEqual(Object.keys(result), WIRE_FIELDS);
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(result))), WIRE_FIELDS);
    assert.deepEqual(Object.keys({ ...result }), WIRE_FIELDS);
    assert.equal(result.approval.id, "apv_1");
  });

  test("constructible for a test double: token, approval and replayed default to none", () => {
    const fake = new ActionResult({ action_request_id: "act_1", status: "allowed", decision: decision("allow") });
    assert.deepEqual(
      { ...fake },
      {
        action_request_id: "act_1",
        status: "allowed",
        decision: decision("allow"),
        decision_token: null,
        approval: null,
        replayed: false,
      },
    );
    assert.equal(fake.raiseForDenial(), fake);
  });
});
