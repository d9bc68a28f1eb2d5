// AgentFirewall against a scripted HTTP server: what goes on the wire, what comes back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { inspect } from "node:util";

import {
  ActionSpecError,
  AgentFirewall,
  AuthenticationError,
  DEFAULT_BASE_URL,
  ServerError,
  TokenError,
  VERSION,
} from "../../dist/esm/index.js";
import { actionAnswer, startScriptedServer, stateAnswer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";
const MERGE = {
  type: "github.pr.merge",
  resource: { provider: "github", account: "acme", target: "acme/api", environment: "production" },
  parameters: { pull_number: 42 },
};

/** Run `body` with the given environment variables, restoring them afterwards. */
async function withEnv(vars, body) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  try {
    return await body();
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
}

describe("configuration", () => {
  test("defaults come from AAF_API_KEY and AAF_BASE_URL", () =>
    withEnv({ AAF_API_KEY: KEY, AAF_BASE_URL: "http://firewall.test:3000/api/" }, () => {
      const client = new AgentFirewall();
      assert.equal(client.baseUrl, "http://firewall.test:3000/api");
    }));

  test("the base URL defaults to localhost:3000/api, as the seed's snippet reads it", () =>
    withEnv({ AAF_API_KEY: undefined, AAF_BASE_URL: undefined }, () => {
      const client = new AgentFirewall({
        apiKey: KEY,
        baseUrl: process.env.AAF_BASE_URL ?? "http://localhost:3000/api",
      });
      assert.equal(client.baseUrl, DEFAULT_BASE_URL);
      assert.equal(new AgentFirewall({ apiKey: KEY }).baseUrl, "http://localhost:3000/api");
    }));

  test("no key anywhere is an AuthenticationError before any request", () =>
    withEnv({ AAF_API_KEY: undefined }, () => {
      assert.throws(
        () => new AgentFirewall({ apiKey: process.env.AAF_API_KEY }),
        (error) => {
          assert.ok(error instanceof AuthenticationError);
          assert.match(error.message, /AAF_API_KEY/);
          return true;
        },
      );
    }));

  for (const [option, value] of [
    ["timeoutSeconds", 0],
    ["timeoutSeconds", Number.NaN],
    ["maxRetries", -1],
    ["maxRetries", 1.5],
    ["retryBackoffSeconds", Infinity],
    ["maxRetryWaitSeconds", "60"],
  ]) {
    test(`\`${option}: ${String(value)}\` is a RangeError`, () => {
      assert.throws(() => new AgentFirewall({ apiKey: KEY, [option]: value }), RangeError);
    });
  }

  test("the key shows nowhere: not in inspect, JSON or toString", () => {
    const client = new AgentFirewall({ apiKey: KEY, baseUrl: "http://127.0.0.1:9/api" });
    for (const text of [inspect(client, { showHidden: true, depth: 5 }), JSON.stringify(client), String(client)]) {
      assert.ok(!text.includes(KEY), text);
    }
  });
});

class Recipients extends Array {
  toJSON() {
    return "everyone@corp.example";
  }
}

/** `array` with an own `toJSON`, which JSON.stringify would call instead of reading it. */
function withToJSON(array) {
  array.toJSON = () => "replaced";
  return array;
}

/** `object` with a `toJSON` that Object.keys does not show but JSON.stringify calls. */
function hiddenToJSON(object) {
  return Object.defineProperty(object, "toJSON", { value: () => ({ amount: 1_000_000 }) });
}

/** `object` with a `key` that is not enumerable: JSON.stringify would drop it. */
function hidden(object, key) {
  return Object.defineProperty(object, key, { value: true });
}

function circular() {
  const parameters = { a: 1 };
  parameters.self = parameters;
  return parameters;
}

describe("requestAction", () => {
  let server;
  let client;
  before(async () => {
    server = await startScriptedServer((request) => ({
      body: actionAnswer("allowed"),
      headers: request.headers["idempotency-key"] === "fixed-key" ? { "Idempotent-Replayed": "true" } : {},
    }));
    client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
  });
  after(() => server.close());

  test("posts the seed's action as action_spec with the key and an idempotency key", async () => {
    const result = await client.requestAction({ ...MERGE, riskHints: { irreversible: true } });
    const sent = server.requests.at(-1);
    assert.equal(sent.method, "POST");
    assert.equal(sent.url, "/api/v1/actions");
    assert.equal(sent.headers.authorization, `Bearer ${KEY}`);
    assert.equal(sent.headers["content-type"], "application/json");
    assert.equal(sent.headers["user-agent"], `agentfirewall-node/${VERSION}`);
    assert.match(sent.headers["idempotency-key"], /^[0-9a-f-]{36}$/);
    assert.deepEqual(sent.body, {
      action_spec: { ...MERGE, risk_hints: { irreversible: true } },
    });
    assert.equal(result.status, "allowed");
    assert.equal(result.action_request_id, "act_1");
    assert.equal(result.decision_token, "tok.en.sig");
    assert.equal(result.decision.outcome, "allow");
    assert.equal(result.decision.reason, "No deny rules matched");
    assert.equal(result.decision.risk_score, 0);
    assert.deepEqual(result.decision.matched_policies, []);
    assert.equal(result.replayed, false);
  });

  test("each call has its own idempotency key; a given one is sent and a replay is reported", async () => {
    await client.requestAction(MERGE);
    await client.requestAction(MERGE);
    const [a, b] = server.requests.slice(-2).map((r) => r.headers["idempotency-key"]);
    assert.notEqual(a, b);
    const replayed = await client.requestAction(MERGE, { idempotencyKey: "fixed-key" });
    assert.equal(server.requests.at(-1).headers["idempotency-key"], "fixed-key");
    assert.equal(replayed.replayed, true);
  });

  test("a bare type is enough: empty resource, parameters and risk hints", async () => {
    await client.requestAction({ type: "email.send" });
    assert.deepEqual(server.requests.at(-1).body, {
      action_spec: { type: "email.send", resource: {}, parameters: {}, risk_hints: {} },
    });
  });

  test("a value is read once: the firewall gets what was checked, not a later read", async () => {
    let reads = 0;
    const payment = new Proxy(
      { amount: 10 },
      { get: (target, key) => (key === "amount" && (reads += 1) > 1 ? 1_000_000 : Reflect.get(target, key)) },
    );
    await client.requestAction({ type: "payment.transfer.initiate", parameters: { payment } });
    assert.deepEqual(server.requests.at(-1).body.action_spec.parameters, { payment: { amount: 10 } });
  });

  test("a `__proto__` key (from JSON.parse) is sent as the key it is", async () => {
    await client.requestAction({ type: "a.b", parameters: JSON.parse('{"__proto__": {"admin": true}, "x": [1]}') });
    const sent = server.requests.at(-1).body.action_spec.parameters;
    assert.deepEqual(Object.keys(sent), ["__proto__", "x"]);
    assert.deepEqual(Object.getOwnPropertyDescriptor(sent, "__proto__")?.value, { admin: true });
  });

  for (const [name, action, field] of [
    ["a malformed type", { type: "GitHub PR merge" }, "type"],
    ["a one-segment type", { type: "merge" }, "type"],
    ["a missing type", { parameters: {} }, "type"],
    ["an unknown resource field", { type: "a.b", resource: { repo: "x" } }, "resource.repo"],
    ["a non-string resource field", { type: "a.b", resource: { target: 42 } }, "resource.target"],
    ["NaN in parameters", { type: "a.b", parameters: { amount: Number.NaN } }, "parameters.amount"],
    ["a function in risk hints", { type: "a.b", riskHints: { f: () => 1 } }, "riskHints.f"],
    ["an array as parameters", { type: "a.b", parameters: [1] }, "parameters"],
    // what JSON.stringify would send differently from what was checked (or call, or drop)
    [
      "an Array subclass with toJSON",
      { type: "a.b", parameters: { to: Recipients.from(["a@x.example"]) } },
      "parameters.to",
    ],
    ["an array with its own toJSON", { type: "a.b", parameters: { ids: withToJSON([1, 2]) } }, "parameters.ids.toJSON"],
    [
      "a hidden toJSON",
      { type: "a.b", parameters: { payment: hiddenToJSON({ amount: 10 }) } },
      "parameters.payment.toJSON",
    ],
    [
      "a property that is not enumerable",
      { type: "a.b", riskHints: hidden({}, "irreversible") },
      "riskHints.irreversible",
    ],
    ["a hole in an array", { type: "a.b", parameters: { ids: [1, , 3] } }, "parameters.ids[1]"],
    ["holes only", { type: "a.b", parameters: { ids: new Array(3) } }, "parameters.ids[0]"],
    [
      "an array with another key",
      { type: "a.b", parameters: { ids: Object.assign([1], { admin: true }) } },
      "parameters.ids.admin",
    ],
    [
      "a getter",
      {
        type: "a.b",
        parameters: {
          get amount() {
            return 10;
          },
        },
      },
      "parameters.amount",
    ],
    [
      "a getter in an array",
      { type: "a.b", parameters: { ids: Object.defineProperty([0], 0, { get: () => 1 }) } },
      "parameters.ids[0]",
    ],
    ["a symbol key", { type: "a.b", parameters: { nested: { [Symbol("admin")]: true } } }, "parameters.nested"],
    ["a circular reference", { type: "a.b", parameters: circular() }, "parameters.self"],
    ["a BigInt", { type: "a.b", parameters: { amount: 10n } }, "parameters.amount"],
  ]) {
    test(`${name} is an ActionSpecError and sends nothing`, async () => {
      const before = server.requests.length;
      await assert.rejects(client.requestAction(action), (error) => {
        assert.ok(error instanceof ActionSpecError, String(error));
        assert.equal(error.field, field);
        return true;
      });
      assert.equal(server.requests.length, before);
    });
  }
});

describe("answers", () => {
  test("pending_approval carries the approval; denied carries the reason and no token", async () => {
    const server = await startScriptedServer([
      { body: actionAnswer("pending_approval") },
      { body: actionAnswer("denied") },
    ]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      const pending = await client.requestAction(MERGE);
      assert.equal(pending.status, "pending_approval");
      assert.equal(pending.decision_token, null);
      assert.deepEqual(pending.approval?.required_approver_roles, ["admin"]);
      const denied = await client.requestAction(MERGE);
      assert.equal(denied.status, "denied");
      assert.equal(denied.decision.reason, "merges need a human");
      assert.equal(denied.decision_token, null);
    } finally {
      await server.close();
    }
  });

  for (const [name, answer] of [
    ["not JSON", { raw: "<html>oops</html>" }],
    ["an unknown status", { body: { ...actionAnswer(), status: "maybe" } }],
    ["no decision", { body: { ...actionAnswer(), decision: undefined } }],
    ["no action id", { body: { ...actionAnswer(), action_request_id: "" } }],
  ]) {
    test(`a 200 with ${name} is a ServerError`, async () => {
      const server = await startScriptedServer([answer]);
      try {
        const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
        await assert.rejects(client.requestAction(MERGE), ServerError);
      } finally {
        await server.close();
      }
    });
  }

  test("dryRun posts to /v1/actions/dry-run and returns the explanation", async () => {
    const explanation = [{ step: "access_rules", result: "no match", detail: "sdk default allow" }];
    const server = await startScriptedServer([
      { body: { status: "allowed", decision: actionAnswer().decision, explanation } },
    ]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      const result = await client.dryRun(MERGE);
      assert.equal(server.requests[0].url, "/api/v1/actions/dry-run");
      assert.deepEqual(server.requests[0].body, { action_spec: { ...MERGE, risk_hints: {} } });
      assert.equal(result.status, "allowed");
      assert.deepEqual(result.explanation, explanation);
    } finally {
      await server.close();
    }
  });

  test("getAction reads /v1/actions/{id}", async () => {
    const server = await startScriptedServer([{ body: stateAnswer("executed") }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      const state = await client.getAction("act_01KB2ZQ7M3X9V0H5T8N6R4C2DE");
      assert.equal(server.requests[0].url, "/api/v1/actions/act_01KB2ZQ7M3X9V0H5T8N6R4C2DE");
      assert.equal(state.status, "executed");
      assert.equal(state.agent, "Bot");
    } finally {
      await server.close();
    }
  });
});

// `encodeURIComponent` leaves `.` and `..` as they are, and a URL resolves them: `..` sent
// `getAction` to `GET /api/v1/` and `execute` to `POST /api/v1/execute`. An id is `act_` and
// letters, digits, `_` or `-`: one path segment as written, never another route.
describe("action ids", () => {
  const BAD_IDS = [
    ".",
    "..",
    "act_1/../x",
    "act_1/..",
    "%2e%2e",
    "act_%2e%2e",
    "act_1?x=1",
    "act_1#x",
    "act_1 ",
    " act_1",
    "act_1\n",
    "act_",
    "act_é",
    "act_😀",
    "ACT_1",
    "apv_1",
    "stuck",
    "dry-run",
    `act_${"x".repeat(101)}`,
  ];
  const METHODS = {
    getAction: (client, id) => client.getAction(id),
    execute: (client, id) => client.execute(id, "tok.en.sig"),
    waitForApproval: (client, id) => client.waitForApproval(id, { timeoutSeconds: 0 }),
    waitForDecision: (client, id) => client.waitForDecision(id, { timeoutSeconds: 0 }),
  };

  for (const [name, call] of Object.entries(METHODS)) {
    test(`${name} refuses an id that is not an \`act_\` id with a TypeError, sending nothing`, async () => {
      const server = await startScriptedServer([{ status: 404, body: { error: "not_found", message: "no route" } }]);
      try {
        const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
        for (const id of BAD_IDS) {
          await assert.rejects(call(client, id), (error) => {
            assert.ok(error instanceof TypeError, `${JSON.stringify(id)}: ${error}`);
            assert.match(error.message, /is not an action id: pass the `act_\.\.\.` id/);
            return true;
          });
        }
        assert.deepEqual(server.requests, []);
      } finally {
        await server.close();
      }
    });
  }

  test("any string is refused, or sent as exactly one path segment of the actions route", async () => {
    const server = await startScriptedServer([{ body: stateAnswer("allowed") }]);
    const pieces = ["act_", "act_1", ".", "..", "/", "%2e", "%2F", "?", "#", "\\", "-", "_", "a", "Z", "9", " ", "é"];
    let seed = 7; // a fixed sequence: the same strings every run
    const next = (n) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
      for (let i = 0; i < 400; i += 1) {
        const id = Array.from({ length: 1 + next(5) }, () => pieces[next(pieces.length)]).join("");
        const before = server.requests.length;
        const sent = await client.getAction(id).then(
          () => true,
          (error) => {
            assert.ok(error instanceof TypeError, `${JSON.stringify(id)}: ${error}`);
            return false;
          },
        );
        assert.equal(server.requests.length, before + (sent ? 1 : 0));
        if (sent) assert.equal(server.requests.at(-1).url, `/api/v1/actions/${id}`, JSON.stringify(id));
        assert.equal(sent, /^act_[A-Za-z0-9_-]+$/.test(id), JSON.stringify(id));
      }
    } finally {
      await server.close();
    }
  });
});

describe("execute", () => {
  test("posts the decision token and returns the upstream result", async () => {
    const result = { status_code: 200, headers: { "content-type": "application/json" }, body: { merged: true } };
    const server = await startScriptedServer([{ body: { action_request_id: "act_1", status: "executed", result } }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url });
      const executed = await client.execute("act_1", "tok.en.sig");
      assert.equal(server.requests[0].url, "/api/v1/actions/act_1/execute");
      assert.deepEqual(server.requests[0].body, { decision_token: "tok.en.sig" });
      assert.equal(server.requests[0].headers["idempotency-key"], undefined);
      assert.equal(executed.status, "executed");
      assert.deepEqual(executed.result, result);
    } finally {
      await server.close();
    }
  });

  test("without a token it is a TokenError and nothing is sent", async () => {
    const client = new AgentFirewall({ apiKey: KEY, baseUrl: "http://127.0.0.1:9/api" });
    for (const token of [null, undefined, ""]) {
      await assert.rejects(client.execute("act_1", token), TokenError);
    }
  });
});
