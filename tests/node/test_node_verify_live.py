"""The Node SDK's ``verifyDecisionToken`` against a real server: real decision tokens (an
allowed action's, an approval's), the server's JWKS fetched without the API key and cached,
the same claims the Python SDK reads from the same token, and the same refusals.

Each test writes an ES module importing the SDK's ESM build, runs it with ``node`` and reads
the JSON it prints. tests/node/test_node_token_vectors.py holds the forged and mangled
tokens, judged by both SDKs.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from agentfirewall.actions import action_hash, parse_action_spec
from agentfirewall.tokens import SigningKey, generate_signing_key
from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "sdk-node"
SPEC = {
    "type": "github.pr.merge",
    "resource": {"provider": "github", "target": "acme/api", "environment": "production"},
    "parameters": {"pull_number": 42},
}

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

# What every script starts with: the SDK, a fetch that records what is sent and with which
# Authorization, and `attempt`, which turns an outcome into JSON.
PRELUDE = """
const sdk = await import(process.env.SDK);
const { AgentFirewall, TokenError } = sdk;
const env = JSON.parse(process.env.CASE);
const sent = [];
const fetch = (url, init) => {
  sent.push({ url: String(url), authorization: init?.headers?.Authorization ?? null });
  return globalThis.fetch(url, init);
};
async function attempt(call) {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return {
      ok: false,
      name: error?.constructor?.name,
      isTokenError: error instanceof TokenError,
      code: error?.code ?? null,
      message: String(error?.message),
    };
  }
}
const out = {};
"""


@pytest.fixture
def agent(shared_live_server: LiveServer) -> Iterator[LiveAgent]:
    if shutil.which("node") is None:
        pytest.skip("needs Node.js on PATH (Debian: apt-get install nodejs)")
    made = new_agent(shared_live_server, "node-verify")
    yield made
    made.close()


def run(where: Path, body: str, case: dict[str, Any]) -> dict[str, Any]:
    """Run PRELUDE + `body`; return what it put in `out`."""
    node = shutil.which("node")
    assert node is not None
    script = where / "verify.mjs"
    script.write_text(PRELUDE + body + "\nconsole.log(JSON.stringify(out));\n", encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "SDK": (PACKAGE / "dist" / "esm" / "index.js").as_uri(),
        "CASE": json.dumps(case),
    }
    result = subprocess.run(
        [node, str(script)], cwd=where, env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    printed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return printed


def test_a_real_token_verifies_with_its_bindings_and_the_same_claims_as_python(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """An allowed action's token verifies offline, bound to its action id, hash and agent;
    the claims are the ones the Python SDK reads; the JWKS comes from the server's root,
    once (then cached), without the API key; a wrong binding is refused with its code."""
    server = agent.server
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, fetch });
out.jwksUrl = tf.jwksUrl;
const result = await tf.requestAction(env.spec);
out.id = result.action_request_id;
out.token = result.decision_token;
const bound = { actionRequestId: out.id, actionHash: env.hash, agent: env.agent };
out.claims = await attempt(() => tf.verifyDecisionToken(out.token, bound));
out.unbound = await attempt(() => tf.verifyDecisionToken(out.token));
out.sent = [...sent];
const refused = (token, bindings) => attempt(() => tf.verifyDecisionToken(token, bindings));
out.refused = {
  otherAction: await refused(out.token, { actionRequestId: "act_other" }),
  otherHash: await refused(out.token, { actionHash: "0".repeat(64) }),
  otherAgent: await refused(out.token, { agent: `${env.agent}-other` }),
  malformed: await refused("not-a-token"),
  notString: await refused(42),
};
""",
        {
            "url": server.api_url,
            "key": agent.key,
            "spec": SPEC,
            "hash": action_hash(parse_action_spec(SPEC)),
            "agent": agent.name,
        },
    )
    assert out["jwksUrl"] == f"{server.url}/.well-known/jwks.json"
    assert out["claims"]["ok"], out["claims"]
    with agent.firewall() as tf:
        python = asdict(tf.verify_decision_token(out["token"], action_request_id=out["id"]))
    assert out["claims"]["value"] == out["unbound"]["value"] == python
    assert python["agent"] == agent.name
    assert python["action_request_id"] == out["id"]
    # one JWKS fetch, to the server's root, and the only request without the key
    jwks = [s for s in out["sent"] if s["url"] == out["jwksUrl"]]
    assert jwks == [{"url": out["jwksUrl"], "authorization": None}], out["sent"]
    others = [s for s in out["sent"] if s["url"] != out["jwksUrl"]]
    assert others
    assert all(s["authorization"] == f"Bearer {agent.key}" for s in others)
    codes = {name: (r["isTokenError"], r["code"]) for name, r in out["refused"].items()}
    assert codes == {
        "otherAction": (True, "wrong_action"),
        "otherHash": (True, "wrong_action"),
        "otherAgent": (True, "wrong_agent"),
        "malformed": (True, "malformed"),
        "notString": (True, "malformed"),
    }


def test_an_approvals_token_verifies_and_a_forged_one_is_refused(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """The fresh token `waitForApproval` gives verifies for its action; a token with the
    same claims signed by another key (under its own kid or the server's) is
    `bad_signature`, whatever the JWKS cache holds."""
    agent.require_approval("payment.refund.create")
    server = agent.server
    kid = httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
    forger = generate_signing_key()
    claims = {
        "iss": "tameflare", "aud": "tameflare-execute", "sub": agent.name, "jti": "forged",
        "iat": int(time.time()), "exp": int(time.time()) + 300, "act": "act_1",
        "ahs": "0" * 64, "out": "allow",
    }  # fmt: skip
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url });
const held = await tf.requestAction({ type: "payment.refund.create" });
out.id = held.action_request_id;
await globalThis.fetch(`${env.url}/v1/approvals/${held.approval.id}/approve`, {
  method: "POST",
  headers: { Authorization: `Bearer ${env.admin}`, "Content-Type": "application/json" },
  body: JSON.stringify({ note: "ok" }),
});
const approved = await tf.waitForApproval(out.id, { timeoutSeconds: 30 });
out.verified = await attempt(() =>
  tf.verifyDecisionToken(approved.decision_token, { actionRequestId: out.id, agent: env.agent }));
out.forged = {};
for (const [name, token] of Object.entries(env.forged)) {
  out.forged[name] = await attempt(() => tf.verifyDecisionToken(token));
}
""",
        {
            "url": server.api_url,
            "key": agent.key,
            "admin": server.admin_token,
            "agent": agent.name,
            "forged": {
                "own kid": signed(claims, forger, forger.kid),
                "server's kid": signed(claims, forger, kid),
            },
        },
    )
    assert out["verified"]["ok"], out["verified"]
    assert out["verified"]["value"]["action_request_id"] == out["id"]
    assert out["verified"]["value"]["outcome"] == "allow"
    for name, outcome in out["forged"].items():
        assert (outcome["isTokenError"], outcome["code"]) == (True, "bad_signature"), name


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(claims: dict[str, Any], key: SigningKey, kid: str) -> str:
    """A token of `claims`, really signed by `key`, whose header names `kid`."""
    header = b64(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class _KeysElsewhere(BaseHTTPRequestHandler):
    """A JWKS on another host: serves `server.document`, records each Authorization."""

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        body = json.dumps(self.server.document).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_jwks_url_on_another_host_gets_no_api_key(agent: LiveAgent, tmp_path: Path) -> None:
    """`jwksUrl` may point anywhere (a CDN, a mirror): the API key is sent to `baseUrl`
    only, never with the JWKS fetch."""
    server = agent.server
    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), _KeysElsewhere)
    elsewhere.seen = []  # type: ignore[attr-defined]
    elsewhere.document = httpx.get(f"{server.url}/.well-known/jwks.json").json()  # type: ignore[attr-defined]
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        out = run(
            tmp_path,
            """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, jwksUrl: env.jwks });
const result = await tf.requestAction({ type: "github.pr.merge" });
out.verified = await attempt(() =>
  tf.verifyDecisionToken(result.decision_token, { actionRequestId: result.action_request_id }));
out.jwksUrl = tf.jwksUrl;
""",
            {
                "url": server.api_url,
                "key": agent.key,
                "jwks": f"http://127.0.0.1:{elsewhere.server_address[1]}/keys.json/",
            },
        )
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
    assert out["verified"]["ok"], out["verified"]
    assert out["jwksUrl"] == f"http://127.0.0.1:{elsewhere.server_address[1]}/keys.json"
    assert elsewhere.seen == [None]  # type: ignore[attr-defined]
