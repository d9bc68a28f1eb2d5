// verifyDecisionToken: a decision token checked offline against the server's JWKS, served
// here by a scripted server on 127.0.0.1 with keys and tokens made in the test. Which tokens
// are accepted and refused, code for code with the Python SDK, is
// tests/node/test_node_token_vectors.py; a real server's tokens, test_node_verify_live.py.
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { describe, mock, test } from "node:test";

import { AgentFirewall, APIError, NotFoundError, TokenError, verifyWithJwks } from "../../dist/esm/index.js";
import { startScriptedServer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";
const JWKS_PATH = "/.well-known/jwks.json";

/** A P-256 key: its public JWK (as the server publishes it) and its RFC 7638 thumbprint. */
function makeKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const { x, y } = publicKey.export({ format: "jwk" });
  const kid = createHash("sha256")
    .update(JSON.stringify({ crv: "P-256", kty: "EC", x, y }))
    .digest("base64url");
  return { privateKey, kid, jwk: { kty: "EC", crv: "P-256", x, y, use: "sig", alg: "ES256", kid } };
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A decision token as the server writes one, signed by `key`, with `changes` to its claims. */
function tokenOf(key, changes = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: "tameflare",
    aud: "tameflare-execute",
    sub: "Bot",
    jti: "n1",
    iat: now,
    nbf: now,
    exp: now + 300,
    act: "act_1",
    ahs: "a".repeat(64),
    out: "allow",
    ...changes,
  };
  const input = `${b64({ alg: "ES256", kid: key.kid, typ: "JWT" })}.${b64(claims)}`;
  const signature = sign("sha256", Buffer.from(input), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${signature.toString("base64url")}`;
}

/** A server whose JWKS is `keys()` (read at each fetch: a test may rotate them). */
async function withKeys(keys, body) {
  const server = await startScriptedServer((request) =>
    request.url === JWKS_PATH ? { body: { keys: keys().map((k) => k.jwk) } } : { status: 404, body: {} },
  );
  try {
    return await body(server, new AgentFirewall({ apiKey: KEY, baseUrl: server.url, retryBackoffSeconds: 0.01 }));
  } finally {
    await server.close();
  }
}

const fetches = (server) => server.requests.filter((r) => r.url === JWKS_PATH).length;

async function refusal(promise) {
  return promise.then(
    (value) => assert.fail(`expected a refusal, got ${JSON.stringify(value)}`),
    (error) => error,
  );
}

describe("verifyDecisionToken", () => {
  test("checks a token against the JWKS at the server's root, fetched without the API key", () => {
    const key = makeKey();
    return withKeys(
      () => [key],
      async (server, client) => {
        assert.equal(client.jwksUrl, server.url.replace(/\/api$/, JWKS_PATH));
        const claims = await client.verifyDecisionToken(tokenOf(key), {
          actionRequestId: "act_1",
          actionHash: "a".repeat(64),
          agent: "Bot",
        });
        assert.deepEqual(Object.keys(claims), [
          "agent",
          "action_request_id",
          "action_hash",
          "outcome",
          "jti",
          "issued_at",
          "expires_at",
        ]);
        assert.equal(claims.action_request_id, "act_1");
        assert.equal(server.requests.length, 1);
        assert.equal(server.requests[0].url, JWKS_PATH);
        assert.equal(server.requests[0].headers.authorization, undefined);
        assert.ok(!JSON.stringify(server.requests[0].headers).includes(KEY));
      },
    );
  });

  test("a binding that does not match is refused with the check's code", () => {
    const key = makeKey();
    return withKeys(
      () => [key],
      async (_server, client) => {
        for (const [bindings, code] of [
          [{ actionRequestId: "act_2" }, "wrong_action"],
          [{ actionHash: "b".repeat(64) }, "wrong_action"],
          [{ agent: "bot" }, "wrong_agent"],
        ]) {
          const error = await refusal(client.verifyDecisionToken(tokenOf(key), bindings));
          assert.ok(error instanceof TokenError, String(error));
          assert.equal(error.code, code);
        }
        const expired = await refusal(client.verifyDecisionToken(tokenOf(key, { exp: 1 })));
        assert.equal(expired.code, "expired");
        assert.equal(expired.message, "decision token has expired: request the action again");
      },
    );
  });

  test("the keys are cached: many verifications, one fetch, even all at once", () => {
    const key = makeKey();
    return withKeys(
      () => [key],
      async (server, client) => {
        await Promise.all(Array.from({ length: 8 }, () => client.verifyDecisionToken(tokenOf(key))));
        await client.verifyDecisionToken(tokenOf(key));
        assert.equal(fetches(server), 1);
      },
    );
  });

  test("a signature the keys do not verify fetches them again, at most every 10 s (rotation)", () => {
    const [first, second] = [makeKey(), makeKey()];
    let published = [first];
    let clock = 1000; // the monotonic clock, in seconds
    mock.method(performance, "now", () => clock * 1000);
    return withKeys(
      () => published,
      async (server, client) => {
        try {
          await client.verifyDecisionToken(tokenOf(first));
          published = [second]; // the server rotated its key
          clock += 5;
          const early = await refusal(client.verifyDecisionToken(tokenOf(second)));
          assert.equal(early.code, "bad_signature");
          assert.equal(fetches(server), 1, "fetched again within 10 s");
          clock += 6;
          await client.verifyDecisionToken(tokenOf(second));
          assert.equal(fetches(server), 2);
          const retired = await refusal(client.verifyDecisionToken(tokenOf(first)));
          assert.match(retired.message, /unknown key/);
          assert.equal(fetches(server), 2);
          clock += 300; // past the cache's five minutes
          await client.verifyDecisionToken(tokenOf(second));
          assert.equal(fetches(server), 3);
        } finally {
          mock.restoreAll();
        }
      },
    );
  });

  test("a JWKS answer without a usable key is TokenError bad_key; an error status its APIError", async () => {
    const key = makeKey();
    for (const [answer, check] of [
      [{ body: { keys: [] } }, (e) => e instanceof TokenError && e.code === "bad_key"],
      [{ body: { keys: [{ ...key.jwk, y: key.jwk.x }] } }, (e) => e instanceof TokenError && e.code === "bad_key"],
      [{ body: { nothing: true } }, (e) => e instanceof TokenError && e.code === "bad_key"],
      [{ status: 404, body: { error: "not_found", message: "no route" } }, (e) => e instanceof NotFoundError],
    ]) {
      const server = await startScriptedServer([answer]);
      try {
        const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
        const error = await refusal(client.verifyDecisionToken(tokenOf(key)));
        assert.ok(check(error), String(error));
      } finally {
        await server.close();
      }
    }
  });

  test("a JWKS redirect is not followed and names `jwksUrl`", async () => {
    const server = await startScriptedServer([{ status: 302, headers: { Location: "http://elsewhere.test/" } }]);
    try {
      const client = new AgentFirewall({ apiKey: KEY, baseUrl: server.url, maxRetries: 0 });
      const error = await refusal(client.verifyDecisionToken(tokenOf(makeKey())));
      assert.ok(error instanceof APIError && error.statusCode === 302, String(error));
      assert.match(error.message, /set `jwksUrl` to the address that answers/);
      assert.equal(server.requests.length, 1);
    } finally {
      await server.close();
    }
  });

  test("bindings that are no strings or have no such name are a TypeError, and nothing is fetched", () =>
    withKeys(
      () => [makeKey()],
      async (server, client) => {
        for (const [bindings, said] of [
          [{ action_request_id: "act_1" }, /did you mean `actionRequestId`\?/],
          [{ actionRequestId: 42 }, /`actionRequestId` of verifyDecisionToken\(\) must be a string, not a number/],
          [{ agent: null }, /`agent` of verifyDecisionToken\(\) must be a string, not null/],
          ["act_1", /takes an options object/],
        ]) {
          await assert.rejects(client.verifyDecisionToken("a.b.c", bindings), (error) => {
            assert.ok(error instanceof TypeError, String(error));
            assert.match(error.message, said);
            return true;
          });
        }
        assert.equal(server.requests.length, 0);
      },
    ));
});

describe("jwksUrl", () => {
  test("defaults to the server's root, keeping a prefix before /api", () => {
    for (const [baseUrl, jwksUrl] of [
      ["http://127.0.0.1:3000/api", "http://127.0.0.1:3000/.well-known/jwks.json"],
      ["https://firewall.test/tf/api/", "https://firewall.test/tf/.well-known/jwks.json"],
      ["https://firewall.test/root", "https://firewall.test/root/.well-known/jwks.json"],
    ]) {
      assert.equal(new AgentFirewall({ apiKey: KEY, baseUrl }).jwksUrl, jwksUrl);
    }
  });

  test("is taken as given, without a trailing slash", () => {
    const client = new AgentFirewall({ apiKey: KEY, jwksUrl: " https://keys.test/jwks.json/ " });
    assert.equal(client.jwksUrl, "https://keys.test/jwks.json");
  });

  test("one that is no http(s) URL, or holds credentials, is a TypeError that never shows a key", () => {
    for (const [jwksUrl, said] of [
      ["keys.test/jwks.json", /must be an http:\/\/ or https:\/\/ URL/],
      ["ftp://keys.test/jwks.json", /must be an http:\/\/ or https:\/\/ URL/],
      [42, /not a number/],
      ["https://user:pass@keys.test/jwks.json", /must not hold credentials/],
      [KEY, /not an API key/],
    ]) {
      assert.throws(
        () => new AgentFirewall({ apiKey: KEY, jwksUrl }),
        (error) => {
          assert.ok(error instanceof TypeError, String(error));
          assert.match(error.message, said);
          assert.ok(!error.message.includes(KEY));
          return true;
        },
      );
    }
  });
});

describe("verifyWithJwks: the pure function", () => {
  test("verifies against a document at a given time", () => {
    const key = makeKey();
    const token = tokenOf(key, { exp: 2_000_000_300, iat: 2_000_000_000, nbf: 2_000_000_000 });
    const document = { keys: [key.jwk] };
    assert.equal(verifyWithJwks(token, document, { now: 2_000_000_305 }).expires_at, 2_000_000_300);
    assert.throws(() => verifyWithJwks(token, document, { now: 2_000_000_306 }), { code: "expired" });
    assert.throws(() => verifyWithJwks(token, document), { code: "not_yet_valid" });
    assert.throws(() => verifyWithJwks(token, document, { when: 1 }), TypeError);
    assert.throws(() => verifyWithJwks(token, document, { now: "soon" }), TypeError);
  });
});
