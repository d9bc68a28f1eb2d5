"""The prose of docs/sdk-node.md, checked against a real server: what a new user relies on
and what they get wrong (test_docs_node_samples.py runs the page's code samples; this file
its claims).

Each test writes a small ES module that uses ``@agentfirewall/sdk`` as a reader's project
would (the package linked into ``node_modules``), runs it with ``node`` and reads the JSON it
prints. The server is started with a signing key the test holds, so it can forge the
decision tokens an attacker would (expired, for another agent). Calls that must fail before
anything is sent go through a ``fetch`` that records every request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentfirewall.actions import action_hash, parse_action_spec
from agentfirewall.tokens import SigningKey, generate_signing_key, sign_decision_token
from tests.fakes import FakeUpstream, FakeUpstreams, github
from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "sdk-node"
VAULTED = "ghp_vaulted_by_the_claims_test"

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

# What every script starts with: the SDK, a fetch that records what is sent, and
# `attempt`, which turns an outcome into JSON (an error with all a log would show of it).
PRELUDE = """
import { inspect } from "node:util";
import * as sdk from "@agentfirewall/sdk";
const { AgentFirewall } = sdk;
const env = JSON.parse(process.env.CLAIMS);
const sent = [];
const fetch = (url, init) => {
  sent.push({ url: String(url), authorization: init?.headers?.Authorization });
  return globalThis.fetch(url, init);
};
const admin = (method, path, body) =>
  globalThis.fetch(env.url + path, {
    method,
    headers: { Authorization: `Bearer ${env.admin}`, "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  }).then((answer) => answer.json());
async function attempt(call) {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return {
      ok: false,
      name: error?.constructor?.name,
      message: String(error?.message),
      code: error?.code ?? null,
      reason: error?.reason ?? null,
      // every SDK class it is an instance of (`AuthenticationError` for a subclass too)
      kinds: Object.keys(sdk).filter((n) => /Error$/.test(n) && error instanceof sdk[n]).sort(),
      decision: error?.decision ?? null,
      actionRequestId: error?.actionRequestId ?? null,
      status: error?.status ?? null,
      statusCode: error?.statusCode ?? null,
      body: error?.body ?? null,
      cause: error?.cause === undefined ? null : String(error.cause),
      shown: inspect(error, { depth: 10 }) + String(error?.stack),
    };
  }
}
const out = {};
"""


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    node_tools()
    fakes = FakeUpstreams([github()]).start()
    env = {"SIGNING_KEY_PRIVATE": signing_key.to_pem().decode()}
    running = LiveServer.start(tmp_path_factory.mktemp("docs-node-claims") / "tf", env=env)
    try:
        answer = running.admin(
            "POST",
            "/v1/connectors",
            json={"type": "github", "token": VAULTED, "base_url": fakes["github"].http_url},
        )
        assert answer.status_code == 201, answer.text
        yield running, fakes["github"]
    finally:
        running.stop()
        fakes.stop()


@pytest.fixture
def agent(server: tuple[LiveServer, FakeUpstream]) -> LiveAgent:
    return new_agent(server[0], "node-claims")


def node_tools() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm on PATH (Debian: apt-get install nodejs npm)")
    return node


def run(where: Path, body: str, claims: dict[str, Any]) -> dict[str, Any]:
    """Run PRELUDE + `body` in a reader's project; return what it printed as `out`."""
    modules = where / "node_modules" / "@agentfirewall"
    if not modules.exists():
        modules.mkdir(parents=True)
        (modules / "sdk").symlink_to(PACKAGE, target_is_directory=True)
        (where / "package.json").write_text(json.dumps({"name": "reader", "type": "module"}))
    (where / "claims.mjs").write_text(
        PRELUDE + body + "\nconsole.log(JSON.stringify(out));\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAF_")}
    env["CLAIMS"] = json.dumps(claims)
    result = subprocess.run(
        [node_tools(), "claims.mjs"], cwd=where, env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    printed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return printed


def never_shows(key: str, outcome: dict[str, Any]) -> None:
    """The key is in no part of a thrown error: message, body, cause, stack, inspect()."""
    assert key not in json.dumps(outcome), outcome


# -- the API key: checked once, never echoed --------------------------------------------


def test_a_key_no_key_can_be_is_refused_at_once_and_never_echoed(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: a key holding a space, a control character or a non-ASCII letter throws
    AuthenticationError at once (Node's fetch would quote the header, key and all, in its
    error); surrounding whitespace, as read from a file, is dropped before it is sent."""
    key = agent.key
    bad = {
        "inner line break": key[:12] + "\n" + key[12:],
        "header injection": key + "\r\nX-Forwarded-For: 10.0.0.1",
        "nul": key + "\0",
        "space": key[:12] + " " + key[12:],
        "non-ASCII letter": key + "é",
        "beyond latin-1": key + "€",
        "delete": key + "\x7f",
    }
    out = run(
        tmp_path,
        """
out.bad = {};
for (const [label, apiKey] of Object.entries(env.bad)) {
  out.bad[label] = await attempt(() =>
    new AgentFirewall({ apiKey, baseUrl: env.url, fetch }).dryRun({ type: "github.pr.merge" }));
}
process.env.AAF_API_KEY = env.bad["header injection"];
out.fromEnv = await attempt(() => new AgentFirewall({ baseUrl: env.url, fetch }));
process.env.AAF_API_KEY = "  \\n";
out.blank = await attempt(() => new AgentFirewall({ baseUrl: env.url, fetch }));
out.sentBefore = sent.length;
process.env.AAF_API_KEY = `${env.key}\\r\\n`;  // a key file saved on Windows
out.padded = await attempt(() =>
  new AgentFirewall({ baseUrl: env.url, fetch }).dryRun({ type: "github.pr.merge" }));
out.authorization = sent.at(-1)?.authorization;
""",
        {"url": agent.server.api_url, "key": key, "bad": bad},
    )
    for label, outcome in [*out["bad"].items(), ("from AAF_API_KEY", out["fromEnv"])]:
        assert outcome["name"] == "AuthenticationError", (label, outcome)
        assert "copy it again" in outcome["message"], (label, outcome)
        never_shows(key, outcome)
    assert out["blank"]["name"] == "AuthenticationError"
    assert "no API key" in out["blank"]["message"]
    assert out["sentBefore"] == 0
    assert out["padded"]["ok"], out["padded"]
    assert out["authorization"] == f"Bearer {key}"


class _Hostile(BaseHTTPRequestHandler):
    """A wrong `baseUrl`: a server that echoes the request's Authorization header back,
    in an error body, or in a redirect to another port (`server.elsewhere`)."""

    def _answer(self) -> None:
        auth = self.headers.get("Authorization", "")
        if "/redirect/" in self.path:
            self.send_response(307)
            target = f"http://127.0.0.1:{self.server.elsewhere}/api/v1/actions?auth={auth}"  # type: ignore[attr-defined]
            self.send_header("Location", target.replace(" ", "%20"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        said = {"error": "invalid_request", "message": f"cannot parse: got {auth}", "auth": auth}
        body = json.dumps(said).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Recorder.seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_the_key_is_never_echoed_by_a_server_or_a_fetch_failure_nor_sent_elsewhere(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: the key never appears in an error's message, body or cause — not even when a
    server echoes the request back or a fetch failure quotes the header — and a redirect
    is not followed (the key is never sent to another host)."""
    recorder = _serve(_Recorder)
    hostile = _serve(_Hostile)
    hostile.elsewhere = recorder.server_address[1]  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{hostile.server_address[1]}"
    try:
        out = run(
            tmp_path,
            """
const echoing = new AgentFirewall({ apiKey: env.key, baseUrl: `${env.hostile}/api` });
out.echoed = await attempt(() => echoing.dryRun({ type: "github.pr.merge" }));
const redirecting = new AgentFirewall({ apiKey: env.key, baseUrl: `${env.hostile}/redirect/api` });
out.redirected = await attempt(() => redirecting.getAction("act_1"));
const quoting = async (url, init) => {
  throw new TypeError(`proxy refused ${url} with headers ${JSON.stringify(init.headers)}`);
};
const failing = new AgentFirewall({
  apiKey: env.key, baseUrl: env.url, fetch: quoting, maxRetries: 0,
});
out.quoted = await attempt(() => failing.dryRun({ type: "github.pr.merge" }));
out.swapped = await attempt(() => new AgentFirewall({ apiKey: env.url, baseUrl: env.key }));
""",
            {"url": agent.server.api_url, "key": agent.key, "hostile": base},
        )
    finally:
        for httpd in (hostile, recorder):
            httpd.shutdown()
            httpd.server_close()
    for label in ("echoed", "redirected", "quoted", "swapped"):
        assert not out[label]["ok"], label
        never_shows(agent.key, out[label])
    assert out["echoed"]["name"] == "ValidationError"
    assert "[API key]" in out["echoed"]["message"]
    assert (out["redirected"]["name"], out["redirected"]["statusCode"]) == ("APIError", 307)
    assert "not followed" in out["redirected"]["message"]
    assert _Recorder.seen == []
    assert out["quoted"]["name"] == "TransportError"
    assert out["quoted"]["cause"] is None  # the failure quoted the key: not kept
    assert "[API key]" in out["quoted"]["message"]
    assert out["swapped"]["name"] == "TypeError"
    assert "swapped?" in out["swapped"]["message"]


# -- the base URL ------------------------------------------------------------------------


def test_a_base_url_ending_in_v1_or_without_scheme_says_what_to_write_and_that_works(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: a baseUrl ending in `/v1` or without `http://` throws TypeError at once (it
    was a 404 at the first call, or nothing); the URL the message suggests works as
    written; AAF_BASE_URL's surrounding whitespace and trailing `/` are dropped."""
    out = run(
        tmp_path,
        """
const suggested = ({ message }) =>
  (/did you mean `([^`]+)`/.exec(message) ?? /like `([^`]+)`/.exec(message))?.[1];
const merge = { type: "github.pr.merge" };
out.tries = {};
for (const [label, baseUrl] of Object.entries(env.wrong)) {
  const made = await attempt(() => new AgentFirewall({ apiKey: env.key, baseUrl, fetch }));
  const fixed = made.ok ? null : suggested(made);
  const works = fixed
    ? await attempt(() => new AgentFirewall({ apiKey: env.key, baseUrl: fixed }).dryRun(merge))
    : null;
  out.tries[label] = { made, fixed, works };
}
out.sent = sent.length;
process.env.AAF_BASE_URL = ` ${env.url}/ \\n`;
const padded = new AgentFirewall({ apiKey: env.key });
out.padded = { baseUrl: padded.baseUrl, works: await attempt(() => padded.dryRun(merge)) };
""",
        {
            "url": agent.server.api_url,
            "key": agent.key,
            "wrong": {
                "ends in /v1": agent.server.api_url + "/v1",
                "ends in /v1/": agent.server.api_url + "/v1/",
                "no scheme": agent.server.api_url.removeprefix("http://"),
            },
        },
    )
    for label, tried in out["tries"].items():
        assert tried["made"]["name"] == "TypeError", (label, tried)
        assert tried["fixed"] == agent.server.api_url, (label, tried)
        assert tried["works"]["ok"], (label, tried)
    assert out["sent"] == 0
    assert out["padded"]["baseUrl"] == agent.server.api_url
    assert out["padded"]["works"]["ok"], out["padded"]


# -- arguments a user gets wrong: refused before anything is sent ------------------------


def test_mistaken_arguments_are_refused_before_anything_is_sent(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: an id that is not the `act_...` string, a token that is not a string, an
    options argument that is not an object or holds an unknown name, and an action field
    the action does not have are thrown at once, naming what to write; nothing is sent
    (they were sent as `/v1/actions/[object Object]`, or silently ignored)."""
    agent.require_approval("payment.refund.create")
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, fetch });
const result = await tf.requestAction({ type: "github.pr.merge" });
const held = await tf.requestAction({ type: "payment.refund.create" });
const id = result.action_request_id;
const before = sent.length;
out.calls = {
  "getAction(42)": await attempt(() => tf.getAction(42)),
  'getAction("")': await attempt(() => tf.getAction("")),
  "execute(result, token)": await attempt(() => tf.execute(result, result.decision_token)),
  "execute(id, 42)": await attempt(() => tf.execute(id, 42)),
  "execute(held, null)": await attempt(() =>
    tf.execute(held.action_request_id, held.decision_token)),
  "waitForApproval(result)": await attempt(() => tf.waitForApproval(result)),
  "waitForApproval(id, 120)": await attempt(() => tf.waitForApproval(held.action_request_id, 120)),
  "waitForApproval(id, { timeout })": await attempt(() =>
    tf.waitForApproval(held.action_request_id, { timeout: 120 })),
  "waitForDecision(id, { timeoutSeconds: -1 })": await attempt(() =>
    tf.waitForDecision(held.action_request_id, { timeoutSeconds: -1 })),
  "requestAction risk_hints": await attempt(() =>
    tf.requestAction({ type: "payment.refund.create", risk_hints: { irreversible: true } })),
  "requestAction provider outside resource": await attempt(() =>
    tf.requestAction({ type: "github.pr.merge", provider: "github", target: "acme/api" })),
  "requestAction action_type": await attempt(() =>
    tf.requestAction({ action_type: "github.pr.merge" })),
  "requestAction idempotency_key": await attempt(() =>
    tf.requestAction({ type: "github.pr.merge" }, { idempotency_key: "job-1" })),
  "new AgentFirewall({ api_key, base_url })": await attempt(() =>
    new AgentFirewall({ api_key: env.key, base_url: env.url, fetch })),
  "new AgentFirewall({ timeout })": await attempt(() =>
    new AgentFirewall({ apiKey: env.key, baseUrl: env.url, timeout: 5 })),
  "new AgentFirewall(key)": await attempt(() => new AgentFirewall(env.key)),
};
out.sent = sent.length - before;
""",
        {"url": agent.server.api_url, "key": agent.key},
    )
    expected = {
        "getAction(42)": ("TypeError", "`result.action_request_id`"),
        'getAction("")': ("TypeError", "is empty"),
        "execute(result, token)": ("TypeError", "a whole result"),
        "execute(id, 42)": ("TokenError", "`result.decision_token`"),
        "execute(held, null)": ("TokenError", "`waitForApproval` gives the token"),
        "waitForApproval(result)": ("TypeError", "`result.action_request_id`"),
        "waitForApproval(id, 120)": ("TypeError", "options object ({ timeoutSeconds })"),
        "waitForApproval(id, { timeout })": ("TypeError", "did you mean `timeoutSeconds`?"),
        "waitForDecision(id, { timeoutSeconds: -1 })": ("RangeError", "`timeoutSeconds`"),
        "requestAction risk_hints": ("ActionSpecError", "did you mean `riskHints`?"),
        "requestAction provider outside resource": ("ActionSpecError", "belongs in `resource`"),
        "requestAction action_type": ("ActionSpecError", "did you mean `type`?"),
        "requestAction idempotency_key": ("TypeError", "did you mean `idempotencyKey`?"),
        "new AgentFirewall({ api_key, base_url })": ("TypeError", "did you mean `apiKey`?"),
        "new AgentFirewall({ timeout })": ("TypeError", "did you mean `timeoutSeconds`?"),
        "new AgentFirewall(key)": ("TypeError", "takes an options object"),
    }
    assert set(out["calls"]) == set(expected)
    for call, (name, said) in expected.items():
        outcome = out["calls"][call]
        assert (outcome["name"], said in outcome["message"]) == (name, True), (call, outcome)
        never_shows(agent.key, outcome)
    assert out["sent"] == 0


# -- decision tokens an attacker would pass to execute ----------------------------------


def test_a_refused_decision_token_says_what_to_do_and_spends_nothing(
    server: tuple[LiveServer, FakeUpstream],
    agent: LiveAgent,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    """docs: a token the server refuses (altered, expired, of another action or agent) is
    a DecisionTokenRejectedError — still an AuthenticationError with code `invalid_token` —
    whose `reason` (and `body.reason`) is the failed check, with the Python SDK's names,
    and its message ends with what to do next; the action's own token still executes once,
    then is a ConflictError `token_used`."""
    live, fake = server
    spec = {"type": "github.pr.merge", "resource": {"provider": "github", "target": "acme/api"}}
    spec["parameters"] = {"pull_number": 7}
    first = live.agent(agent.key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    other = live.agent(agent.key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    act, token = first["action_request_id"], first["decision_token"]
    stored = live.agent(agent.key, "GET", f"/v1/actions/{act}").json()["action_spec"]
    head, claims, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]

    def forged(**change: Any) -> str:
        fields: dict[str, Any] = {
            "agent": agent.name,
            "action_request_id": act,
            "action_hash": action_hash(parse_action_spec(stored)),
            "now": int(time.time()),
        }
        return sign_decision_token(signing_key, **(fields | change))

    attacks = {
        "bad_signature": f"{head}.{claims}.{flipped}",
        "malformed": "not-a-token",
        "wrong_action": other["decision_token"],
        "expired": forged(now=int(time.time()) - 3600),
        "wrong_agent": forged(agent=agent.name + "-other"),
    }
    hints = {
        "bad_signature": "pass the token exactly as the server gave it",
        "malformed": "pass the token exactly as the server gave it",
        "wrong_action": "pass the token that came with this action's own result",
        "expired": "request the action again for a fresh token",
        "wrong_agent": "use that agent's key",
    }
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url });
out.attacks = {};
for (const [reason, token] of Object.entries(env.attacks)) {
  out.attacks[reason] = await attempt(() => tf.execute(env.act, token));
}
out.genuine = await attempt(() => tf.execute(env.act, env.token));
out.again = await attempt(() => tf.execute(env.act, env.token));
""",
        {"url": live.api_url, "key": agent.key, "act": act, "token": token, "attacks": attacks},
    )
    for reason, outcome in out["attacks"].items():
        assert outcome["name"] == "DecisionTokenRejectedError", (reason, outcome)
        assert "AuthenticationError" in outcome["kinds"], (reason, outcome)
        assert "TokenError" not in outcome["kinds"], (reason, outcome)
        assert (outcome["code"], outcome["statusCode"]) == ("invalid_token", 401)
        assert outcome["reason"] == outcome["body"]["reason"] == reason
        assert outcome["message"].endswith(hints[reason]) or hints[reason] in outcome["message"]
        never_shows(agent.key, outcome)
    assert out["genuine"]["ok"], out["genuine"]
    assert out["genuine"]["value"]["status"] == "executed"
    assert len(fake.received("PUT", "/repos/acme/api/pulls/7/merge")) == 1
    again = out["again"]
    assert (again["name"], again["code"]) == ("ConflictError", "token_used")
    # the page quotes this message: "the server's own, prefixed by its code"
    assert again["message"].startswith(f"token_used: action `{act}` was already executed")
    assert again["message"].endswith("to do it again, request the action again")


def test_a_token_refused_before_sending_is_a_token_error_with_a_code(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: a missing token (`null`, as on a denied or held result) is a TokenError with
    code `missing_token`, one that is not a string code `malformed`; nothing is sent."""
    agent.deny("github.repo.delete", "deletion is frozen")
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, fetch });
const denied = await tf.requestAction({ type: "github.repo.delete" });
const before = sent.length;
out.missing = await attempt(() => tf.execute(denied.action_request_id, denied.decision_token));
out.notString = await attempt(() => tf.execute(denied.action_request_id, 42));
out.sent = sent.length - before;
""",
        {"url": agent.server.api_url, "key": agent.key},
    )
    assert (out["missing"]["name"], out["missing"]["code"]) == ("TokenError", "missing_token")
    assert (out["notString"]["name"], out["notString"]["code"]) == ("TokenError", "malformed")
    assert out["sent"] == 0


# -- raiseForDenial: a deny is data until asked; a hold is never a go-ahead --------------


def test_raise_for_denial_returns_only_an_allowed_result(
    server: tuple[LiveServer, FakeUpstream], agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: `result.raiseForDenial()` returns the result itself when allowed (judged by
    `status`, so monitor enforcement's `would_deny` passes), throws ActionDeniedError
    (`.decision`, `.actionRequestId`) on a deny and ApprovalError (`.status`
    `pending_approval`, a message saying how to wait) on a hold; the result's JSON and a
    `{ ...result }` copy are the server's fields alone."""
    live, _ = server
    agent.deny("github.repo.delete", "deletion is frozen")
    agent.require_approval("payment.refund.create", "refunds need a human")
    monitored = new_agent(live, "node-claims-monitor", enforcement_level="monitor")
    monitored.deny("github.repo.delete", "deletion is frozen")
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url });
const allowed = await tf.requestAction({ type: "github.pr.merge" });
out.same = allowed.raiseForDenial() === allowed;
out.json = Object.keys(JSON.parse(JSON.stringify(allowed)));
out.copied = Object.keys({ ...allowed });
out.copyHasIt = "raiseForDenial" in { ...allowed };
const denied = await tf.requestAction({ type: "github.repo.delete" });
out.deniedId = denied.action_request_id;
out.denied = await attempt(() => denied.raiseForDenial());
const held = await tf.requestAction({ type: "payment.refund.create" });
out.heldId = held.action_request_id;
out.heldRan = false;
out.held = await attempt(() => {
  held.raiseForDenial();
  out.heldRan = true;
});
const watcher = new AgentFirewall({ apiKey: env.monitorKey, baseUrl: env.url });
const watched = await watcher.requestAction({ type: "github.repo.delete" });
out.monitor = {
  status: watched.status,
  would: watched.decision.would_outcome,
  passes: watched.raiseForDenial() === watched,
};
""",
        {"url": live.api_url, "key": agent.key, "monitorKey": monitored.key},
    )
    assert out["same"] is True
    fields = ["action_request_id", "status", "decision", "decision_token", "approval", "replayed"]
    assert out["json"] == out["copied"] == fields
    assert out["copyHasIt"] is False
    denied = out["denied"]
    assert denied["name"] == "ActionDeniedError", denied
    assert denied["kinds"] == ["ActionDeniedError", "AgentFirewallError"], denied
    assert denied["message"] == f"action `{out['deniedId']}` denied: deletion is frozen"
    assert denied["actionRequestId"] == out["deniedId"]
    assert denied["decision"]["outcome"] == "deny"
    assert denied["decision"]["reason"] == "deletion is frozen"
    held = out["held"]
    assert out["heldRan"] is False
    assert held["kinds"] == ["AgentFirewallError", "ApprovalError"], held
    assert "needs a person's approval (refunds need a human)" in held["message"]
    assert "`waitForApproval(result.action_request_id)`" in held["message"]
    assert (held["status"], held["actionRequestId"]) == ("pending_approval", out["heldId"])
    assert out["monitor"] == {"status": "allowed", "would": "would_deny", "passes": True}


# -- waiting and timeouts at their extremes ---------------------------------------------


def test_wait_with_no_deadline_and_a_client_timeout_beyond_nodes_timers(
    agent: LiveAgent, tmp_path: Path
) -> None:
    """docs: `waitForApproval`'s timeoutSeconds may be `Infinity` (polled in the server's
    60 s slices); a client `timeoutSeconds` beyond Node's timer range (24.8 days), meant as
    "no timeout", does not make every request time out at once."""
    agent.require_approval("payment.refund.create")
    out = run(
        tmp_path,
        """
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, fetch });
const held = await tf.requestAction({ type: "payment.refund.create" });
await admin("POST", `/v1/approvals/${held.approval.id}/approve`, { note: "ok" });
out.approved = await attempt(() =>
  tf.waitForApproval(held.action_request_id, { timeoutSeconds: Infinity }));
out.polled = sent.at(-1).url;
const patient = new AgentFirewall({
  apiKey: env.key, baseUrl: env.url, timeoutSeconds: 1e9, maxRetries: 0,
});
out.patient = await attempt(() => patient.dryRun({ type: "github.pr.merge" }));
""",
        {"url": agent.server.api_url, "key": agent.key, "admin": agent.server.admin_token},
    )
    assert out["approved"]["ok"], out["approved"]
    assert out["approved"]["value"]["approved"] is True
    assert out["approved"]["value"]["decision_token"]
    assert out["polled"].endswith("/wait?timeout=60")
    assert out["patient"]["ok"], out["patient"]
