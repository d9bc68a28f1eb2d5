// A tiny scripted HTTP server on 127.0.0.1 (ephemeral port) for the unit tests: each
// request gets the next scripted answer, and every request is recorded.
import { createServer } from "node:http";

/**
 * @typedef {{ status?: number, headers?: Record<string, string>, body?: unknown, raw?: string }} Scripted
 * @typedef {{ method: string, url: string, headers: import("node:http").IncomingHttpHeaders, body: unknown }} Recorded
 */

/**
 * Start a server answering with `answers` in order (the last one repeats), or with
 * `answers(request)` when it is a function.
 * @param {Scripted[] | ((request: Recorded) => Scripted)} answers
 */
export async function startScriptedServer(answers) {
  /** @type {Recorded[]} */
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const recorded = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: text ? JSON.parse(text) : null,
      };
      requests.push(recorded);
      const answer =
        typeof answers === "function" ? answers(recorded) : answers[Math.min(requests.length, answers.length) - 1];
      const payload = answer.raw ?? JSON.stringify(answer.body ?? {});
      const type = answer.raw === undefined ? "application/json" : "text/plain";
      res.writeHead(answer.status ?? 200, { "Content-Type": type, ...answer.headers });
      res.end(payload);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    url: `http://127.0.0.1:${address.port}/api`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve(undefined))),
  };
}

/** A decision as docs/api.md's server sends it. */
export function decision(outcome = "allow", reason = "No deny rules matched") {
  return {
    outcome,
    reason,
    risk_score: outcome === "deny" ? 90 : 0,
    matched_policies: outcome === "allow" ? [] : ["pol_1"],
    matched_rules: [],
    errors: [],
    default_applied: outcome === "allow",
    enforcement_level: "full_enforce",
    decided_outcome: outcome,
    would_outcome: null,
    kill_switch: false,
    approval: null,
  };
}

/** A `POST /v1/actions` answer. */
export function actionAnswer(status = "allowed", id = "act_1") {
  const outcome = { allowed: "allow", denied: "deny", pending_approval: "require_approval" }[status];
  return {
    action_request_id: id,
    status,
    decision: decision(outcome, status === "allowed" ? "No deny rules matched" : "merges need a human"),
    decision_token: status === "allowed" ? "tok.en.sig" : null,
    approval:
      status === "pending_approval"
        ? { id: "apv_1", expires_at: "2026-11-25T10:00:00Z", required_approver_roles: ["admin"] }
        : null,
  };
}

/** A `GET /v1/actions/{id}` or `/wait` answer. */
export function stateAnswer(status, token = null, id = "act_1") {
  const outcome = {
    allowed: "allow",
    denied: "deny",
    pending_approval: "require_approval",
    expired: "require_approval",
    executed: "allow",
  }[status];
  return {
    action_request_id: id,
    status,
    decision: decision(outcome, status === "denied" ? "denied by alice" : "merges need a human"),
    action_spec: { type: "github.pr.merge", resource: {}, parameters: {}, risk_hints: {} },
    agent: "Bot",
    created_at: "2026-11-25T09:00:00Z",
    approval: null,
    executed: false,
    execution: null,
    ...(token !== null && { decision_token: token }),
  };
}
