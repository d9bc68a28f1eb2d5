"""Held requests through the real gateway and the real control plane: the approval the
gateway asks for is one the control plane records (never the 503 of an approval it refused).

A request held by a content rule is shown with the detection replaced (never the text) and
bound to the request itself: its hash is the real action's, and once approved the upstream
gets the request exactly as the agent sent it. A rule's approval timeout is honoured up to
the longest a policy may say (``MAX_APPROVAL_TIMEOUT_SECONDS``), as in SDK mode.

The in-memory control plane (``StaticControl``) validates nothing, so only a live one shows
whether the gateway's approval is accepted.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy.models import MAX_APPROVAL_TIMEOUT_SECONDS
from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, RunningGateway, ca_bundle, gateway_options

KEY_MATERIAL = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----"
POLICY = {"name": "guardrails", "rules": [
    {"name": "hold-private-keys", "decision": "require_approval",
     "conditions": [{"field": "content.secrets", "operator": "contains",
                     "value": "private_key"}]},
    {"name": "slow-review", "decision": "require_approval",
     "approval": {"timeout_seconds": MAX_APPROVAL_TIMEOUT_SECONDS},
     "conditions": [{"field": "action_spec.parameters.channel", "operator": "equals",
                     "value": "C-SLOW"}]}]}  # fmt: skip

World = tuple[LiveServer, RunningGateway, str, ssl.SSLContext]


@pytest.fixture(scope="module")
def world(fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("redaction")
    server = LiveServer.start(tmp / "tf")
    try:
        key = server.create_agent("Bot")
        connector = {"type": "slack", "token": CREDENTIALS["slack"]}
        assert server.admin("POST", "/v1/connectors", json=connector).status_code == 201
        allow = {"agent": "Bot", "connector": "slack", "action_pattern": "slack.*",
                 "decision": "allow"}  # fmt: skip
        assert server.admin("POST", "/v1/permissions", json=allow).status_code in (200, 201)
        policy = server.admin("POST", "/v1/policies", json={"document": json.dumps(POLICY)})
        assert policy.status_code == 201, policy.text
        control = HttpControl(server.url, server.gateway_token)
        running = RunningGateway(gateway_options(tmp, fakes), control).start()
        try:
            bundle = ca_bundle(running.ca_path, tmp / "bundle.pem")
            yield server, running, key, ssl.create_default_context(cafile=str(bundle))
        finally:
            running.stop()
    finally:
        server.stop()


def _held(world: World, message: dict[str, str]) -> tuple[dict[str, Any], list[httpx.Response]]:
    """Post `message` as the agent (in a thread): the approval it is held for."""
    server, running, key, trust = world
    answer: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(proxy=running.proxy_url(key, "Bot"), verify=trust,
                          trust_env=False, timeout=30) as http:  # fmt: skip
            answer.append(http.post("https://slack.com/api/chat.postMessage", json=message))

    agent = threading.Thread(target=send, daemon=True)
    agent.start()
    deadline = time.monotonic() + 20
    while agent.is_alive() and time.monotonic() < deadline:
        pending = server.admin("GET", "/v1/approvals").json()["approvals"]
        if pending:
            (approval,) = pending
            return approval, answer
        time.sleep(0.05)
    raise AssertionError(f"no approval recorded; the agent got {answer and answer[0].text}")


def _decide(world: World, approval: dict[str, Any], verb: str) -> None:
    answer = world[0].admin("POST", f"/v1/approvals/{approval['id']}/{verb}", json={})
    assert answer.status_code == 200, answer.text


def _answered(answer: list[httpx.Response]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while not answer and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer, "the agent got no answer"
    return answer[0]


def test_a_content_hold_is_recorded_redacted_and_bound_to_the_real_request(
    world: World, fakes: FakeUpstreams
) -> None:
    fakes["slack"].clear()
    message = {"channel": "C1", "text": f"deploy key:\n{PEM}"}
    approval, answer = _held(world, message)
    shown = approval["action_spec"]
    assert KEY_MATERIAL not in json.dumps(approval)
    assert shown["parameters"]["text"] == "deploy key:\n[REDACTED:private_key]"
    assert "private_key at body.text+" in approval["reason"]
    # bound to the request itself, not to what the approver is shown
    real = parse_action_spec({**shown, "parameters": {**shown["parameters"], **message}})
    assert approval["action_hash"] == real.action_hash
    assert approval["action_hash"] != parse_action_spec(shown).action_hash
    _decide(world, approval, "approve")
    assert _answered(answer).status_code == 200
    (received,) = fakes["slack"].received("POST", "/api/chat.postMessage")
    assert received.json()["text"] == message["text"]


def test_a_rule_may_hold_a_request_as_long_as_a_policy_may_say(world: World) -> None:
    approval, answer = _held(world, {"channel": "C-SLOW", "text": "hello"})
    created, expires = (datetime.fromisoformat(approval[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == MAX_APPROVAL_TIMEOUT_SECONDS
    _decide(world, approval, "deny")
    assert _answered(answer).status_code == 403
