"""An SDK action belongs to one connector, its provider, from the decision to the send.

A ``webhook.post`` whose ``resource.provider`` was ``x`` was decided, kill-switched, held
and approved as the connector ``x``, and then sent by the webhook connector with the webhook
connector's vaulted credential (the executor read the action type, not the provider): a
``connector:webhook`` kill switch and a ``*:webhook:*`` deny rule did not stop it, and it
could be approved while the switch was on. Now a ``webhook.*`` action of another provider is
422 naming ``action_spec.resource.provider`` when it is requested or dry-run (as in
``agentfirewall.testing``'s transport), and the executor sends an action by its provider's
connector alone, refusing such an action an earlier version stored (and approved) instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import provider_problem
from agentfirewall_server.routes import actions as actions_route
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness
from tests.server.test_testing_parity import Both, _same

SECRET = "whsec_VAULTED_SECRET"
REFUSED = "`webhook.*` actions are sent by the webhook connector: set resource.provider"
HOLD = """\
name: hold-hooks
scope: {action_types: ['webhook.*']}
rules: [{name: h, decision: require_approval}]
"""


def _hook(url: str, provider: str | None) -> dict[str, Any]:
    resource = {"target": f"{url}/hook", **({"provider": provider} if provider else {})}
    return {"type": "webhook.post", "resource": resource,
            "parameters": {"method": "POST", "body": {"k": "v"}}}  # fmt: skip


def _webhook_server(harness_factory: Any, fakes: FakeUpstreams) -> tuple[Harness, Any, str]:
    """A server with a webhook connector (a vaulted credential) for the fake's host."""
    upstream = fakes["github"]
    upstream.clear()
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1"])
    body = {"type": "webhook", "domains": ["127.0.0.1"], "token": SECRET}
    assert h.admin("POST", "/v1/connectors", json=body).status_code == 201
    return h, upstream, h.create_agent("Bot")


@pytest.mark.parametrize(
    ("kind", "provider", "refused"),
    [
        ("webhook.post", None, False),  # the type's first segment: webhook
        ("webhook.post", "webhook", False),
        ("webhook.get", "x", True),
        ("webhook.post", "Webhook", True),
        ("webhook.post", "generic", True),
        ("github.pr.merge", "x", False),  # decided as `x`, and sent by no connector
        ("http.get", "x", False),
    ],
)
def test_provider_problem_names_a_webhook_action_of_another_provider(
    kind: str, provider: str | None, refused: bool
) -> None:
    resource = {"provider": provider} if provider else {}
    spec = parse_action_spec({"type": kind, "resource": resource})
    assert (provider_problem(spec) is not None) is refused


def test_a_webhook_action_of_another_provider_cannot_pass_a_webhook_kill_switch_or_deny(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    h, upstream, key = _webhook_server(harness_factory, fakes)
    stop = {"active": True, "scope": "connector:webhook", "reason": "stop webhooks"}
    assert h.admin("POST", "/v1/kill-switch", json=stop).status_code == 200
    deny = {"agent": "*", "connector": "webhook", "action_pattern": "*", "decision": "deny"}
    assert h.admin("POST", "/v1/permissions", json=deny).status_code == 200
    for provider in ("x", "github", "generic", "webhook "):
        for path in ("/v1/actions", "/v1/actions/dry-run"):
            answer = h.agent(
                key, "POST", path, json={"action_spec": _hook(upstream.http_url, provider)}
            )
            assert answer.status_code == 422, (provider, path, answer.text)
            assert answer.json()["field"] == "action_spec.resource.provider"
            assert REFUSED in answer.json()["message"]
    for provider in ("webhook", None):  # the integration guide's, and the type's own
        spec = _hook(upstream.http_url, provider)
        decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
        assert (decided["status"], decided["decision"]["reason"]) == (
            "denied",
            "kill_switch_active",
        )
    assert upstream.received() == []


def test_a_held_webhook_action_of_another_provider_stored_before_is_never_sent(
    harness_factory: Any, fakes: FakeUpstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier version accepted it, held it and had it approved (as the connector `x`,
    while `connector:webhook` was stopped): the executor refuses it, nothing is sent."""
    h, upstream, key = _webhook_server(harness_factory, fakes)
    assert h.admin("POST", "/v1/policies", json={"document": HOLD}).status_code == 201
    with monkeypatch.context() as earlier:
        earlier.setattr(actions_route, "provider_problem", lambda spec: None, raising=False)
        spec = _hook(upstream.http_url, "x")
        held = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert held["status"] == "pending_approval"
    approved = h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve")
    assert approved.status_code == 200, approved.text
    action = f"/v1/actions/{held['action_request_id']}"
    token = h.agent(key, "GET", f"{action}/wait?timeout=1").json()["decision_token"]
    assert token
    for _ in range(2):  # refused before it is claimed: the same answer again
        sent = h.agent(key, "POST", f"{action}/execute", json={"decision_token": token})
        assert sent.status_code == 422, sent.text
        assert (sent.json()["error"], sent.json()["field"]) == (
            "not_executable",
            "action_spec.resource.provider",
        )
    assert upstream.received() == []
    assert h.agent(key, "GET", action).json()["execution_state"] is None


def test_the_testing_transport_refuses_it_as_the_server_does(harness: Harness) -> None:
    both = Both(harness, {})
    for provider in ("x", "webhook"):
        spec = _hook("https://hooks.example.com", provider)
        for path in ("/v1/actions/dry-run", "/v1/actions"):
            real, fake = both.call("POST", path, json={"action_spec": spec})
            assert _same(real) == _same(fake)
            assert ("field" in real) is (provider == "x"), real
