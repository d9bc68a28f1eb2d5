"use strict";
/**
 * The wire shapes of docs/api.md, as the seed's snippets read them: results keep the
 * server's snake_case field names (`result.action_request_id`, `result.decision_token`,
 * `result.decision.reason`); options the caller writes are camelCase. `ActionResult`, the
 * one result with a method (`raiseForDenial`), is a class in ./result.ts.
 */
Object.defineProperty(exports, "__esModule", { value: true });
