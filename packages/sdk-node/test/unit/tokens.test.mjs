// A refused decision token names the check that failed, in a typed field: `TokenError.code`
// when the client refuses it before sending, `DecisionTokenRejectedError.reason` when the
// server does (401 `invalid_token`, whose `code` stays `invalid_token`). The names are the
// Python SDK's (`agentfirewall.tokens.verify_decision_token`).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  AgentFirewall,
  AgentFirewallError,
  APIError,
  AuthenticationError,
  ConflictError,
  DecisionTokenRejectedError,
  TokenError,
} from "../../dist/esm/index.js";
import { startScriptedServer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";

// every code the server's token check gives (agentfirewall/tokens.py), and what to do next
const SERVER_CHECKS = [
  ["malformed", "pass the token exactly as the server gave it (`result.decision_token`)"],
  ["bad_algorithm", "request the action again for a fresh token"],
  ["bad_signature", "pass the token exactly as the server gave it (it was altered, or another server signed it)"],
  ["expired", "request the action again for a fresh token"],
  ["not_yet_valid", "check this machine's clock, then request the action again"],
  ["wrong_issuer", "request the action again for a fresh token"],
  ["wrong_audience", "request the action again for a fresh token"],
  ["wrong_action", "pass the token that came with this action's own result or approval"],
  ["wrong_agent", "a token is good only for the agent it was issued to: use that agent's key"],
  ["missing_claim", "request the action again for a fresh token"],
];

async function refusal(body) {
  const server = await startScriptedServer([{ status: 401, body }]);
  try {
    const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
    return await client.execute("act_1", "tok.en.sig").then(
      () => assert.fail("execute should have been refused"),
      (error) => error,
    );
  } finally {
    await server.close();
  }
}

describe("the client refuses a token before sending: TokenError.code", () => {
  for (const [token, code] of [
    [null, "missing_token"],
    [undefined, "missing_token"],
    ["", "missing_token"],
    [42, "malformed"],
    [{ decision_token: "x" }, "malformed"],
  ]) {
    test(`${JSON.stringify(token) ?? "undefined"} is code \`${code}\``, async () => {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: "http://127.0.0.1:9/api" });
      await assert.rejects(client.execute("act_1", token), (error) => {
        assert.ok(error instanceof TokenError && error instanceof AgentFirewallError, String(error));
        assert.equal(error.code, code);
        return true;
      });
    });
  }

  test("a TokenError made by hand defaults to `invalid_token`, as in Python", () => {
    assert.equal(new TokenError("no").code, "invalid_token");
    assert.equal(new TokenError("no", { code: "expired" }).code, "expired");
  });
});

describe("the server refuses a token: DecisionTokenRejectedError.reason", () => {
  for (const [reason, hint] of SERVER_CHECKS) {
    test(`\`${reason}\``, async () => {
      const body = { error: "invalid_token", message: `decision token check failed: ${reason}`, reason };
      const error = await refusal(body);
      assert.ok(error instanceof DecisionTokenRejectedError, String(error));
      // what it was before, unchanged: a 401 AuthenticationError with code `invalid_token`
      assert.ok(error instanceof AuthenticationError && error instanceof APIError);
      assert.equal(error.statusCode, 401);
      assert.equal(error.code, "invalid_token");
      assert.deepEqual(error.body, body);
      assert.equal(error.reason, reason);
      assert.equal(error.name, "DecisionTokenRejectedError");
      assert.equal(error.message, `invalid_token: decision token check failed: ${reason}: ${hint}`);
    });
  }

  test("an answer without a reason is reason `invalid_token`", async () => {
    const error = await refusal({ error: "invalid_token", message: "bad token" });
    assert.ok(error instanceof DecisionTokenRejectedError, String(error));
    assert.equal(error.reason, "invalid_token");
  });

  test("a wrong API key is a plain AuthenticationError, with no reason", async () => {
    const error = await refusal({ error: "unauthorized", message: "invalid or inactive API key" });
    assert.ok(error instanceof AuthenticationError && !(error instanceof DecisionTokenRejectedError), String(error));
    assert.equal(error.reason, undefined);
  });

  test("a used token stays a ConflictError `token_used` (409), not a rejection", async () => {
    const server = await startScriptedServer([{ status: 409, body: { error: "token_used", message: "used" } }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      await assert.rejects(
        client.execute("act_1", "tok.en.sig"),
        (error) =>
          error instanceof ConflictError &&
          !(error instanceof DecisionTokenRejectedError) &&
          error.code === "token_used",
      );
    } finally {
      await server.close();
    }
  });
});
