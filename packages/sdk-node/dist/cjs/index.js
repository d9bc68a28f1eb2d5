"use strict";
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
Object.defineProperty(exports, "__esModule", { value: true });
exports.VERSION = exports.ACTION_TYPE_PATTERN = exports.ActionResult = exports.verifyWithJwks = exports.ValidationError = exports.TransportError = exports.TokenError = exports.ServerError = exports.RateLimitError = exports.PermissionDeniedError = exports.NotFoundError = exports.DecisionTokenRejectedError = exports.ConflictError = exports.AuthenticationError = exports.ApprovalError = exports.AgentFirewallError = exports.ActionSpecError = exports.ActionDeniedError = exports.APIError = exports.DEFAULT_BASE_URL = exports.AgentFirewall = void 0;
var client_js_1 = require("./client.js");
Object.defineProperty(exports, "AgentFirewall", { enumerable: true, get: function () { return client_js_1.AgentFirewall; } });
Object.defineProperty(exports, "DEFAULT_BASE_URL", { enumerable: true, get: function () { return client_js_1.DEFAULT_BASE_URL; } });
var errors_js_1 = require("./errors.js");
Object.defineProperty(exports, "APIError", { enumerable: true, get: function () { return errors_js_1.APIError; } });
Object.defineProperty(exports, "ActionDeniedError", { enumerable: true, get: function () { return errors_js_1.ActionDeniedError; } });
Object.defineProperty(exports, "ActionSpecError", { enumerable: true, get: function () { return errors_js_1.ActionSpecError; } });
Object.defineProperty(exports, "AgentFirewallError", { enumerable: true, get: function () { return errors_js_1.AgentFirewallError; } });
Object.defineProperty(exports, "ApprovalError", { enumerable: true, get: function () { return errors_js_1.ApprovalError; } });
Object.defineProperty(exports, "AuthenticationError", { enumerable: true, get: function () { return errors_js_1.AuthenticationError; } });
Object.defineProperty(exports, "ConflictError", { enumerable: true, get: function () { return errors_js_1.ConflictError; } });
Object.defineProperty(exports, "DecisionTokenRejectedError", { enumerable: true, get: function () { return errors_js_1.DecisionTokenRejectedError; } });
Object.defineProperty(exports, "NotFoundError", { enumerable: true, get: function () { return errors_js_1.NotFoundError; } });
Object.defineProperty(exports, "PermissionDeniedError", { enumerable: true, get: function () { return errors_js_1.PermissionDeniedError; } });
Object.defineProperty(exports, "RateLimitError", { enumerable: true, get: function () { return errors_js_1.RateLimitError; } });
Object.defineProperty(exports, "ServerError", { enumerable: true, get: function () { return errors_js_1.ServerError; } });
Object.defineProperty(exports, "TokenError", { enumerable: true, get: function () { return errors_js_1.TokenError; } });
Object.defineProperty(exports, "TransportError", { enumerable: true, get: function () { return errors_js_1.TransportError; } });
Object.defineProperty(exports, "ValidationError", { enumerable: true, get: function () { return errors_js_1.ValidationError; } });
var jwks_js_1 = require("./jwks.js");
Object.defineProperty(exports, "verifyWithJwks", { enumerable: true, get: function () { return jwks_js_1.verifyWithJwks; } });
var result_js_1 = require("./result.js");
Object.defineProperty(exports, "ActionResult", { enumerable: true, get: function () { return result_js_1.ActionResult; } });
var spec_js_1 = require("./spec.js");
Object.defineProperty(exports, "ACTION_TYPE_PATTERN", { enumerable: true, get: function () { return spec_js_1.ACTION_TYPE_PATTERN; } });
var version_js_1 = require("./version.js");
Object.defineProperty(exports, "VERSION", { enumerable: true, get: function () { return version_js_1.VERSION; } });
