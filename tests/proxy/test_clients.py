# ruff: noqa: E501  (agent scripts are embedded verbatim)
"""Real client stacks through the gateway, each run as an agent process that has only the
proxy variables and a CA bundle (system CAs + the gateway CA) in its environment, calling
the real hostnames, which the gateway's resolve map sends to the local fakes on real TLS.

Each client: an allowed call succeeds with the connector credential reaching the fake (the
agent's placeholder never does), a denied call gets 403, a held call completes after the
approval is given from the test (another thread), while the agent waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.support import (
    CREDENTIALS,
    KEY,
    OTHER_KEY,
    PLACEHOLDER,
    RunningGateway,
    agent_env,
    ca_bundle,
    rule,
    snapshot,
    start_gateway,
)

RULES = [
    rule("github.*", "allow"), rule("github.repo.delete", "deny"),
    rule("github.pr.merge", "require_approval"),
    rule("stripe.charge.create", "allow"), rule("stripe.customer.list", "allow"),
    rule("stripe.refund.create", "deny"), rule("stripe.transfer.create", "require_approval"),
    rule("slack.*", "allow"), rule("slack.channel.archive", "deny"),
    rule("slack.message.delete", "require_approval"),
    rule("openai.*", "allow"), rule("openai.model.list", "deny"),
    rule("openai.embedding.create", "require_approval"),
    rule("github.repo.fetch", "deny", agent="Other"),
]  # fmt: skip


class Env:
    def __init__(self, running: RunningGateway, control: StaticControl, bundle: Path) -> None:
        self.running, self.control, self.bundle = running, control, bundle

    def env(self, key: str = KEY) -> dict[str, str]:
        return {**agent_env(self.running, self.bundle, key), "PLACEHOLDER": PLACEHOLDER}


@pytest.fixture(scope="module")
def agents(fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("clients")
    running, control = start_gateway(tmp, fakes, snapshot(RULES))
    yield Env(running, control, ca_bundle(running.ca_path, tmp / "bundle.pem"))
    running.stop()


def approve_when_held(control: StaticControl, action: str) -> threading.Thread:
    """Approve the first pending approval for `action` (from another thread)."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for approval in control.pending():
                if approval["action_spec"]["type"] == action:
                    control.approve(approval["id"])
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_agent(env: Env, code: str, action: str | None, key: str = KEY) -> dict[str, Any]:
    """Run `code` as the agent; approve `action` when it is held; return its JSON output."""
    approver = approve_when_held(env.control, action) if action else None
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env.env(key), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if approver is not None:
        approver.join(1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def assert_credential(fakes: FakeUpstreams, name: str, expected: str) -> None:
    received = fakes[name].received()
    assert received, f"nothing reached {name}"
    for request in received:
        assert request.header("authorization") == expected
        assert PLACEHOLDER not in request.raw_text()
        assert KEY not in request.raw_text()


GITHUB_SCRIPTS = {
    "requests": """
        import json, os, requests
        H = {"Authorization": "token " + os.environ["PLACEHOLDER"]}
        base = "https://api.github.com"
        print(json.dumps({
            "allowed": requests.get(base + "/user", headers=H).status_code,
            "denied": requests.delete(base + "/repos/acme/api", headers=H).status_code,
            "held": requests.put(base + "/repos/acme/api/pulls/11/merge", json={}, headers=H).status_code,
        }))
    """,
    "httpx": """
        import json, os, httpx
        H = {"Authorization": "token " + os.environ["PLACEHOLDER"]}
        with httpx.Client(base_url="https://api.github.com", headers=H, timeout=60) as c:
            print(json.dumps({"allowed": c.get("/user").status_code,
                              "denied": c.delete("/repos/acme/api").status_code,
                              "held": c.put("/repos/acme/api/pulls/12/merge", json={}).status_code}))
    """,
    "httpx-async": """
        import asyncio, json, os, httpx
        H = {"Authorization": "token " + os.environ["PLACEHOLDER"]}
        async def main():
            async with httpx.AsyncClient(base_url="https://api.github.com", headers=H, timeout=60) as c:
                return {"allowed": (await c.get("/user")).status_code,
                        "denied": (await c.delete("/repos/acme/api")).status_code,
                        "held": (await c.put("/repos/acme/api/pulls/13/merge", json={})).status_code}
        print(json.dumps(asyncio.run(main())))
    """,
    "urllib": """
        import json, os, urllib.error, urllib.request
        H = {"Authorization": "token " + os.environ["PLACEHOLDER"], "Content-Type": "application/json"}
        def call(method, path, body=None):
            req = urllib.request.Request("https://api.github.com" + path, data=body, method=method, headers=H)
            try:
                return urllib.request.urlopen(req, timeout=60).status
            except urllib.error.HTTPError as exc:
                return exc.code
        print(json.dumps({"allowed": call("GET", "/user"),
                          "denied": call("DELETE", "/repos/acme/api"),
                          "held": call("PUT", "/repos/acme/api/pulls/14/merge", b"{}")}))
    """,
    "aiohttp": """
        import asyncio, json, os, aiohttp
        H = {"Authorization": "token " + os.environ["PLACEHOLDER"]}
        async def main():
            async with aiohttp.ClientSession("https://api.github.com", headers=H, trust_env=True) as s:
                out = {}
                for name, method, path in [("allowed", "GET", "/user"), ("denied", "DELETE", "/repos/acme/api"),
                                           ("held", "PUT", "/repos/acme/api/pulls/15/merge")]:
                    async with s.request(method, path, json={} if method == "PUT" else None) as r:
                        await r.read()
                        out[name] = r.status
                return out
        print(json.dumps(asyncio.run(main())))
    """,
}  # fmt: skip


@pytest.mark.parametrize("name", list(GITHUB_SCRIPTS))
def test_python_http_clients(agents: Env, fakes: FakeUpstreams, name: str) -> None:
    fakes["github"].clear()
    result = run_agent(agents, GITHUB_SCRIPTS[name], "github.pr.merge")
    assert result == {"allowed": 200, "denied": 403, "held": 200}
    assert_credential(fakes, "github", f"token {CREDENTIALS['github']}")
    assert [r.method for r in fakes["github"].received()] == ["GET", "PUT"]


def test_curl(agents: Env, fakes: FakeUpstreams) -> None:
    fakes["github"].clear()
    env = agents.env()

    def curl(*args: str) -> str:
        cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
               "-H", f"Authorization: token {PLACEHOLDER}", *args]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60).stdout

    approver = approve_when_held(agents.control, "github.pr.merge")
    assert curl("https://api.github.com/user") == "200"
    assert curl("-X", "DELETE", "https://api.github.com/repos/acme/api") == "403"
    assert (
        curl("-X", "PUT", "-d", "{}", "https://api.github.com/repos/acme/api/pulls/16/merge")
        == "200"
    )
    assert curl("http://api.github.com/user") == "200"  # plain http via lowercase http_proxy
    approver.join(1)
    assert_credential(fakes, "github", f"token {CREDENTIALS['github']}")


def test_git_clone_and_ls_remote(agents: Env, fakes: FakeUpstreams, tmp_path: Path) -> None:
    fakes["git"].clear()
    env = {**agents.env(), "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)}
    url = "https://github.com/acme/api.git"
    listed = subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "refs/heads/main" in listed.stdout
    cloned = subprocess.run(["git", "clone", "-q", url, str(tmp_path / "api")], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "api" / "README.md").read_text() == "fake repository\n"
    assert_credential(fakes, "git", f"token {CREDENTIALS['github']}")
    denied = subprocess.run(["git", "ls-remote", url], env={**env, **agents.env(OTHER_KEY)},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert denied.returncode != 0
    assert "403" in denied.stderr


def test_openai_sdk(agents: Env, fakes: FakeUpstreams) -> None:
    fakes["openai"].clear()
    code = """
        import json, os, openai
        client = openai.OpenAI(api_key=os.environ["PLACEHOLDER"], max_retries=0, timeout=60)
        out = {"allowed": client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content}
        try:
            client.models.list()
        except openai.PermissionDeniedError as exc:
            out["denied"] = exc.status_code
        out["held"] = len(client.embeddings.create(model="text-embedding-3-small", input="x").data)
        print(json.dumps(out))
    """
    result = run_agent(agents, code, "openai.embedding.create")
    assert result == {"allowed": "hello from fake", "denied": 403, "held": 1}
    assert_credential(fakes, "openai", f"Bearer {CREDENTIALS['openai']}")


def test_openai_stream_arrives_chunk_by_chunk(agents: Env, fakes: FakeUpstreams) -> None:
    fakes["openai"].settings.update(stream_delay=0.25, stream_chunks=5)
    code = """
        import json, os, time, openai
        client = openai.OpenAI(api_key=os.environ["PLACEHOLDER"], max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
        arrivals = [time.monotonic() for _ in stream]
        print(json.dumps({"gaps": [b - a for a, b in zip(arrivals, arrivals[1:])]}))
    """
    try:
        gaps = run_agent(agents, code, None)["gaps"]
    finally:
        fakes["openai"].settings.update(stream_delay=0.05)
    assert len(gaps) == 4
    # Loose on purpose: the chunks must arrive separately, spread like the fake sent them,
    # not all at once at the end (a buffering proxy collapses every gap to ~0).
    assert sum(1 for gap in gaps if gap > 0.1) >= 3


def test_stripe_sdk(agents: Env, fakes: FakeUpstreams) -> None:
    fakes["stripe"].clear()
    # stripe-python ignores every CA variable: the agent code names the bundle itself.
    code = """
        import json, os, stripe
        stripe.api_key = os.environ["PLACEHOLDER"]
        stripe.ca_bundle_path = os.environ["SSL_CERT_FILE"]
        stripe.max_network_retries = 0
        out = {"allowed": stripe.Charge.create(amount=500, currency="usd").amount}
        try:
            stripe.Refund.create(charge="ch_1")
        except stripe.error.StripeError as exc:
            out["denied"] = exc.http_status
        out["held"] = stripe.Transfer.create(amount=700, currency="usd", destination="acct_1").object
        print(json.dumps(out))
    """
    result = run_agent(agents, code, "stripe.transfer.create")
    assert result == {"allowed": 500, "denied": 403, "held": "transfer"}
    assert_credential(fakes, "stripe", f"Bearer {CREDENTIALS['stripe']}")


def test_slack_sdk(agents: Env, fakes: FakeUpstreams) -> None:
    fakes["slack"].clear()
    code = """
        import json, os
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError
        client = WebClient(token=os.environ["PLACEHOLDER"], timeout=60)
        out = {"allowed": client.chat_postMessage(channel="C1", text="hi")["ok"]}
        try:
            client.conversations_archive(channel="C1")
        except SlackApiError as exc:
            out["denied"] = exc.response.status_code
        out["held"] = client.chat_delete(channel="C1", ts="1.2")["ok"]
        print(json.dumps(out))
    """
    result = run_agent(agents, code, "slack.message.delete")
    assert result == {"allowed": True, "denied": 403, "held": True}
    assert_credential(fakes, "slack", f"Bearer {CREDENTIALS['slack']}")


def test_agent_env_is_self_contained(agents: Env) -> None:
    env = agents.env()
    assert env["SSL_CERT_FILE"] == str(agents.bundle)
    assert "SSL_CERT_DIR" not in env
    assert os.path.exists(env["SSL_CERT_FILE"])
