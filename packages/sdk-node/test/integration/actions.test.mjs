// The SDK against a real control plane (python -m agentfirewall_server on 127.0.0.1):
// allowed, denied, pending then approved from the admin API, Mode A execution through the
// GitHub connector, token replay, and 429 retries.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ActionDeniedError,
  AgentFirewall,
  ApprovalError,
  AuthenticationError,
  ConflictError,
  DecisionTokenRejectedError,
  NotFoundError,
  RateLimitError,
  TokenError,
  ValidationError,
} from "../../dist/esm/index.js";
import { startFakeGitHub } from "../helpers/fake-github.mjs";
import { FirewallServer } from "../helpers/firewall-server.mjs";

const MERGE = {
  type: "github.pr.merge",
  resource: { provider: "github", account: "acme", target: "acme/api", environment: "production" },
  parameters: { pull_number: 42 },
};
const VAULTED = "ghp_vaulted_by_the_firewall";

let server;
let github;
before(async () => {
  [server, github] = await Promise.all([FirewallServer.start(), startFakeGitHub()]);
  await server.admin("POST", "/v1/connectors", { type: "github", token: VAULTED, base_url: github.url });
});
after(async () => {
  await Promise.all([server?.stop(), github?.close()]);
});

async function firewall(fields = {}, options = {}) {
  const agent = await server.agent("node", fields);
  return { agent, client: new AgentFirewall({ apiKey: agent.key, baseUrl: server.apiUrl, ...options }) };
}

describe("decisions", () => {
  test("allowed: a token, a recorded action, and a matching dry run", async () => {
    const { agent, client } = await firewall();
    const result = await client.requestAction(MERGE);
    assert.equal(result.status, "allowed");
    assert.match(result.action_request_id, /^act_/);
    assert.equal(result.decision.outcome, "allow");
    assert.equal(result.decision.reason, "No deny rules matched");
    assert.equal(typeof result.decision.risk_score, "number");
    assert.deepEqual(result.decision.matched_policies, []);
    assert.match(result.decision_token, /^eyJ/);
    const state = await client.getAction(result.action_request_id);
    assert.equal(state.status, "allowed");
    assert.deepEqual(state.action_spec.parameters, { pull_number: 42 });
    const dry = await client.dryRun(MERGE);
    assert.equal(dry.status, "allowed");
    const steps = dry.explanation.map((step) => step.step);
    assert.ok(steps.includes("kill_switch") && steps.includes("enforcement"), JSON.stringify(steps));
    const recorded = await server.admin("GET", `/v1/audit?agent=${agent.name}`);
    assert.equal(
      recorded.events.filter((e) => e.event_type === "action.allowed").length,
      1,
      "the dry run recorded nothing",
    );
  });

  test("denied: the policy's reason, no token, and execute refuses locally", async () => {
    const { agent, client } = await firewall();
    await server.rule(agent.name, "github.repo.delete", "deny", "repository deletion is not allowed");
    const result = await client.requestAction({
      type: "github.repo.delete",
      resource: { provider: "github", target: "acme/api" },
    });
    assert.equal(result.status, "denied");
    assert.equal(result.decision.outcome, "deny");
    assert.equal(result.decision.reason, "repository deletion is not allowed");
    assert.equal(result.decision.risk_score, 90);
    assert.equal(result.decision.matched_policies.length, 1);
    assert.equal(result.decision_token, null);
    await assert.rejects(client.execute(result.action_request_id, result.decision_token), TokenError);
  });

  test("the same idempotency key answers the first decision again", async () => {
    const { client } = await firewall();
    const first = await client.requestAction(MERGE, { idempotencyKey: "node-once" });
    const again = await client.requestAction(MERGE, { idempotencyKey: "node-once" });
    assert.equal(again.action_request_id, first.action_request_id);
    assert.equal(again.replayed, true);
    assert.equal(first.replayed, false);
  });

  test("a wrong key is an AuthenticationError; another agent's action is not found", async () => {
    const wrong = new AgentFirewall({ apiKey: "aaf_test_00000000000000000000000000000000", baseUrl: server.apiUrl });
    await assert.rejects(
      wrong.requestAction(MERGE),
      (error) => error instanceof AuthenticationError && error.statusCode === 401,
    );
    const { client: mine } = await firewall();
    const { client: theirs } = await firewall();
    const result = await mine.requestAction(MERGE);
    await assert.rejects(theirs.getAction(result.action_request_id), NotFoundError);
  });
});

describe("approvals and execution (Mode A)", () => {
  test("pending, approved from the server API, then executed with the vaulted credential", async () => {
    const { agent, client } = await firewall();
    await server.rule(agent.name, "github.pr.merge", "requires_approval", "merges to main need a human");
    const result = await client.requestAction(MERGE);
    assert.equal(result.status, "pending_approval");
    assert.equal(result.decision_token, null);
    assert.match(result.approval.id, /^apv_/);
    const [approved, decided] = await Promise.all([
      client.waitForApproval(result.action_request_id, { timeoutSeconds: 30 }),
      server.decideNext(agent.name, "approve"),
    ]);
    assert.equal(decided.status, "approved");
    assert.ok(approved);
    assert.equal(approved.action_request_id, result.action_request_id);
    assert.match(approved.decision_token, /^eyJ/);

    const executed = await client.execute(result.action_request_id, approved.decision_token);
    assert.equal(executed.status, "executed");
    assert.equal(executed.result.status_code, 200);
    assert.equal(executed.result.body.merged, true);
    const upstream = github.requests.at(-1);
    assert.equal(upstream.method, "PUT");
    assert.equal(upstream.path, "/repos/acme/api/pulls/42/merge");
    assert.match(upstream.authorization, new RegExp(VAULTED));
    assert.ok(!upstream.authorization.includes(agent.key), "the agent's key never reaches GitHub");
  });

  test("denied by a human: waitForApproval resolves to null", async () => {
    const { agent, client } = await firewall();
    await server.rule(agent.name, "github.pr.merge", "requires_approval", "merges need a human");
    const result = await client.requestAction(MERGE);
    const [approved] = await Promise.all([
      client.waitForApproval(result.action_request_id, { timeoutSeconds: 30 }),
      server.decideNext(agent.name, "deny"),
    ]);
    assert.equal(approved, null);
    const outcome = await client.waitForDecision(result.action_request_id, { timeoutSeconds: 5 });
    assert.equal(outcome.status, "denied");
    // the person's denial and their note, not the rule's reason for holding it
    assert.match(outcome.reason, /^denied by .+: decided by a node test$/);
    assert.doesNotMatch(outcome.reason, /merges need a human/);
  });

  test("nobody decides: waitForApproval resolves to null at its timeout", async () => {
    const { agent, client } = await firewall();
    await server.rule(agent.name, "github.pr.merge", "requires_approval", "merges need a human");
    const result = await client.requestAction(MERGE);
    assert.equal(await client.waitForApproval(result.action_request_id, { timeoutSeconds: 1 }), null);
  });

  test("a used token is rejected: ConflictError `token_used`, nothing sent upstream", async () => {
    const { client } = await firewall();
    const result = await client.requestAction(MERGE);
    await client.execute(result.action_request_id, result.decision_token);
    const sent = github.requests.length;
    await assert.rejects(client.execute(result.action_request_id, result.decision_token), (error) => {
      assert.ok(error instanceof ConflictError, `${error}`);
      assert.equal(error.statusCode, 409);
      assert.equal(error.code, "token_used");
      return true;
    });
    assert.equal(github.requests.length, sent);
  });

  test("no connector for the provider: ValidationError `not_executable`", async () => {
    const { client } = await firewall();
    const result = await client.requestAction({
      type: "payment.transfer.initiate",
      resource: { provider: "stripe" },
      parameters: { amount: 25000 },
    });
    assert.equal(result.status, "allowed");
    await assert.rejects(client.execute(result.action_request_id, result.decision_token), (error) => {
      assert.ok(error instanceof ValidationError, `${error}`);
      assert.equal(error.code, "not_executable");
      assert.match(error.message, /stripe/);
      return true;
    });
  });

  test("a token of another action is rejected", async () => {
    const { client } = await firewall();
    const one = await client.requestAction(MERGE);
    const two = await client.requestAction({ ...MERGE, parameters: { pull_number: 43 } });
    await assert.rejects(
      client.execute(two.action_request_id, one.decision_token),
      (error) => error.statusCode === 401 && error.code === "invalid_token",
    );
  });
});

describe("raiseForDenial and refused tokens against the server", () => {
  test("allowed passes; denied and held throw; the held one goes ahead only once approved", async () => {
    const { agent, client } = await firewall();
    await server.rule(agent.name, "github.repo.delete", "deny", "repository deletion is not allowed");
    await server.rule(agent.name, "github.pr.merge", "requires_approval", "merges need a human");

    const allowed = await client.requestAction({ type: "github.issue.create", resource: { provider: "github" } });
    assert.equal(allowed.raiseForDenial(), allowed);

    const denied = await client.requestAction({ type: "github.repo.delete", resource: { provider: "github" } });
    assert.throws(
      () => denied.raiseForDenial(),
      (error) =>
        error instanceof ActionDeniedError &&
        error.actionRequestId === denied.action_request_id &&
        error.decision.reason === "repository deletion is not allowed",
    );

    const held = await client.requestAction(MERGE);
    let waiting;
    try {
      held.raiseForDenial();
      assert.fail("a hold is not a go-ahead");
    } catch (error) {
      waiting = error;
    }
    assert.ok(waiting instanceof ApprovalError, String(waiting));
    assert.equal(waiting.status, "pending_approval");
    assert.match(waiting.message, /needs a person's approval \(merges need a human\): wait with `waitForApproval/);
    const [approved] = await Promise.all([
      client.waitForApproval(waiting.actionRequestId, { timeoutSeconds: 30 }),
      server.decideNext(agent.name, "approve"),
    ]);
    assert.ok(approved);
    const executed = await client.execute(waiting.actionRequestId, approved.decision_token);
    assert.equal(executed.status, "executed");
  });

  test("a token the server refuses names the failed check in `reason`; `code` stays `invalid_token`", async () => {
    const { client } = await firewall();
    const one = await client.requestAction(MERGE);
    const two = await client.requestAction({ ...MERGE, parameters: { pull_number: 44 } });
    const [head, claims, signature] = one.decision_token.split(".");
    const altered = `${head}.${claims}.${signature.slice(0, 10)}${signature[10] === "A" ? "B" : "A"}${signature.slice(11)}`;
    for (const [token, reason] of [
      [two.decision_token, "wrong_action"],
      [altered, "bad_signature"],
      ["not-a-token", "malformed"],
    ]) {
      await assert.rejects(client.execute(one.action_request_id, token), (error) => {
        assert.ok(error instanceof DecisionTokenRejectedError, `${error}`);
        assert.ok(error instanceof AuthenticationError);
        assert.equal(error.reason, reason);
        assert.equal(error.code, "invalid_token");
        assert.equal(error.statusCode, 401);
        assert.equal(error.body.reason, reason);
        return true;
      });
    }
    // nothing was spent: the action's own token still executes
    assert.equal((await client.execute(one.action_request_id, one.decision_token)).status, "executed");
  });
});

describe("rate limit", () => {
  /** A fetch that records each answer's status and idempotency key. */
  function recordingFetch(seen) {
    return async (url, init) => {
      const response = await fetch(url, init);
      seen.push({
        status: response.status,
        key: init.headers["Idempotency-Key"],
        retryAfter: response.headers.get("Retry-After"),
      });
      return response;
    };
  }

  test("429: requestAction waits the Retry-After and succeeds, with one idempotency key", async () => {
    // 20 a minute: a burst of 20, then one request every 3 s; calls go faster than that,
    // so one of the first ~21 calls meets a 429 and must be retried
    const { agent } = await firewall();
    await server.admin("PATCH", `/v1/agents/${agent.name}`, { rate_limit_per_minute: 20 });
    const seen = [];
    const client = new AgentFirewall({ apiKey: agent.key, baseUrl: server.apiUrl, fetch: recordingFetch(seen) });
    let retried;
    for (let i = 0; i < 40 && retried === undefined; i += 1) {
      seen.length = 0;
      const result = await client.requestAction(MERGE);
      assert.equal(result.status, "allowed");
      if (seen.length > 1) retried = [...seen];
    }
    assert.ok(retried, "no call met the rate limit");
    assert.deepEqual(
      retried.map((s) => s.status),
      [429, 200],
    );
    assert.ok(Number(retried[0].retryAfter) >= 1 && Number(retried[0].retryAfter) <= 3, retried[0].retryAfter);
    assert.equal(new Set(retried.map((s) => s.key)).size, 1);

    // the retry spent the token it waited for: without retries the next call is refused
    const impatient = new AgentFirewall({ apiKey: agent.key, baseUrl: server.apiUrl, maxRetries: 0 });
    await assert.rejects(impatient.requestAction(MERGE), (error) => {
      assert.ok(error instanceof RateLimitError, `${error}`);
      assert.equal(error.code, "rate_limited");
      assert.ok(error.retryAfter >= 1 && error.retryAfter <= 3, `${error.retryAfter}`);
      return true;
    });
  });
});
