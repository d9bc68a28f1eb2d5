// Uses the API the way the seed's snippets do, through the published typings
// (dist/esm/index.d.ts via the package name). `npm run typecheck` must pass;
// each @ts-expect-error line must stay an error.
import {
  ActionDeniedError,
  ActionResult,
  AgentFirewall,
  ApprovalError,
  ConflictError,
  DecisionTokenRejectedError,
  RateLimitError,
  TokenError,
  verifyWithJwks,
  type ApprovedResult,
  type DecisionClaims,
  type ExecutionResult,
  type ExecutionState,
  type WaitOutcome,
} from "@agentfirewall/sdk";

export async function seedModeA(): Promise<void> {
  const TameFlare = new AgentFirewall({
    apiKey: process.env["AAF_API_KEY"],
    baseUrl: process.env["AAF_BASE_URL"] ?? "http://localhost:3000/api",
  });
  const result: ActionResult = await TameFlare.requestAction({
    type: "github.pr.merge",
    resource: { provider: "github", account: "acme", target: "acme/api", environment: "production" },
    parameters: { pull_number: 42 },
    riskHints: { irreversible: true },
  });
  switch (result.status) {
    case "allowed":
      await TameFlare.execute(result.action_request_id, result.decision_token);
      break;
    case "pending_approval": {
      const approved: ApprovedResult | null = await TameFlare.waitForApproval(result.action_request_id);
      if (approved) await TameFlare.execute(result.action_request_id, approved.decision_token);
      break;
    }
    case "denied":
      console.log("Blocked:", result.decision.reason, result.decision.risk_score, result.decision.matched_policies);
      break;
  }
}

export async function details(client: AgentFirewall): Promise<void> {
  const outcome: WaitOutcome = await client.waitForDecision("act_1", { timeoutSeconds: 5 });
  if (outcome.approved) {
    const token: string = outcome.decision_token;
    const done: ExecutionResult = await client.execute(outcome.action_request_id, token);
    const code: number = done.result.status_code;
    void code;
  } else {
    const why: "denied" | "expired" | "executed" | "timeout" = outcome.status;
    void why;
  }
  const state: ExecutionState | null = (await client.getAction("act_1")).execution_state;
  void state;
  try {
    await client.dryRun({ type: "email.send" });
  } catch (error) {
    if (error instanceof RateLimitError) void (error.retryAfter satisfies number | undefined);
    if (error instanceof ConflictError) void (error.code satisfies string | undefined);
  }
}

export async function enforce(client: AgentFirewall): Promise<void> {
  try {
    const allowed = (await client.requestAction({ type: "github.pr.merge" })).raiseForDenial();
    const status: "allowed" = allowed.status;
    void status;
    await client.execute(allowed.action_request_id, allowed.decision_token);
  } catch (error) {
    if (error instanceof ActionDeniedError) void (error.decision.reason satisfies string);
    if (error instanceof ApprovalError) await client.waitForApproval(error.actionRequestId);
    if (error instanceof TokenError) void (error.code satisfies string);
    if (error instanceof DecisionTokenRejectedError) {
      void (error.reason satisfies string);
      void (error.code satisfies string | undefined);
      void (error.statusCode satisfies number);
    }
  }
  // a test double of a denied result
  const fake: ActionResult = new ActionResult({
    action_request_id: "act_1",
    status: "denied",
    decision: { outcome: "deny", reason: "no merges on Fridays", risk_score: 90, matched_policies: [] },
  });
  void fake;
}

export async function modeB(client: AgentFirewall, jwks: unknown): Promise<void> {
  const result = (await client.requestAction({ type: "github.pr.merge" })).raiseForDenial();
  const claims: DecisionClaims = await client.verifyDecisionToken(result.decision_token, {
    actionRequestId: result.action_request_id,
    agent: "deploy-bot",
  });
  const when: number = claims.expires_at;
  void when;
  const offline: DecisionClaims = verifyWithJwks(result.decision_token, jwks, { now: 1_800_000_000 });
  void offline;
  const pinned = new AgentFirewall({ jwksUrl: "https://keys.example/jwks.json" });
  void (pinned.jwksUrl satisfies string);
  try {
    await client.verifyDecisionToken(result.decision_token);
  } catch (error) {
    if (error instanceof TokenError) void (error.code satisfies string);
  }
}

export async function mistakes(client: AgentFirewall): Promise<void> {
  // @ts-expect-error the type is required
  await client.requestAction({ parameters: {} });
  // @ts-expect-error resource fields are provider, account, target, environment
  await client.requestAction({ type: "a.b", resource: { repo: "x" } });
  // @ts-expect-error parameters are JSON
  await client.requestAction({ type: "a.b", parameters: { when: new Date() } });
  const result = await client.requestAction({ type: "a.b" });
  // @ts-expect-error status is a closed set
  if (result.status === "approved") return;
  // @ts-expect-error a copy is the wire's data: the method stays on the result
  ({ ...result }).raiseForDenial();
  // @ts-expect-error only a fresh result has it (an action's state may be expired or executed)
  (await client.getAction("act_1")).raiseForDenial();
  // @ts-expect-error bindings are camelCase, as every option
  await client.verifyDecisionToken("t.o.k", { action_request_id: "act_1" });
}
