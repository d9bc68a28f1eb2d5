/**
 * @agentfirewall/sdk — the Node.js SDK of TameFlare (agentfirewall).
 *
 * ```ts
 * import { AgentFirewall } from "@agentfirewall/sdk";
 * const TameFlare = new AgentFirewall({ apiKey: process.env.AAF_API_KEY });
 * const result = await TameFlare.requestAction({ type: "github.pr.merge", parameters: { pull_number: 42 } });
 * const allowed = result.raiseForDenial(); // throws ActionDeniedError on a deny, ApprovalError on a hold
 * ```
 */

export { AgentFirewall, DEFAULT_BASE_URL, type AgentFirewallOptions } from "./client.js";
export {
  APIError,
  ActionDeniedError,
  ActionSpecError,
  AgentFirewallError,
  ApprovalError,
  AuthenticationError,
  ConflictError,
  DecisionTokenRejectedError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  TokenError,
  TransportError,
  ValidationError,
  type APIErrorDetails,
} from "./errors.js";
export { verifyWithJwks, type VerifyWithJwksOptions } from "./jwks.js";
export { ActionResult } from "./result.js";
export { ACTION_TYPE_PATTERN } from "./spec.js";
export type { DecisionClaims, TokenBindings } from "./tokens.js";
export type * from "./types.js";
export { VERSION } from "./version.js";
