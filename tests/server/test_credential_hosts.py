"""Credentials stay home (DESIGN.md 7.5): a connector's credential only reaches its hosts.

One table over connector types. Every row configures connectors, executes one action aimed
at a fake upstream on 127.0.0.1 (reachable as `127.0.0.1` and as `localhost`, two hosts to
a connector's `domains`) and states which credential, if any, arrived. The fakes record
every request, so "never sent" is checked on the wire, not inferred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes import FakeUpstream, FakeUpstreams
from tests.server.conftest import Harness

SECRETS = (
    "whsec_alpha",
    "whsec_beta",
    "gensec_gamma",
    "mcpsec_delta",
    "ghp_epsilon",
    "sk_zeta",
    "sk-ant-eta",
)


@dataclass(frozen=True)
class Case:
    name: str
    connectors: list[dict[str, Any]]
    spec: dict[str, Any]  # "{url}" is the fake's http://127.0.0.1:port, "{port}" its port
    status: int
    credential: str | None = None  # the Authorization value the upstream must receive
    refused_host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    header: str = "authorization"  # where `credential` is carried


def _webhook(target: str, method: str = "post") -> dict[str, Any]:
    return {
        "type": f"webhook.{method}",
        "resource": {"provider": "webhook", "target": target},
        "parameters": {"body": {"event": "deploy"}},
    }


def _generic(target: str) -> dict[str, Any]:
    return {
        "type": "http.post",
        "resource": {"provider": "generic", "target": target},
        "parameters": {"body": {"event": "deploy"}},
    }


def _mcp(target: str) -> dict[str, Any]:
    return {"type": "mcp.tools.list", "resource": {"provider": "mcp", "target": target}}


HOOKS = {"type": "webhook", "domains": ["hooks.example.com"], "token": "whsec_alpha"}
LOCAL_A = {"type": "webhook", "domains": ["localhost"], "token": "whsec_alpha"}
LOCAL_B = {"type": "webhook", "domains": ["127.0.0.1"], "token": "whsec_beta"}
# the fakes answer plain http: a credential goes there only to a plain host an admin declared
# (its base_url, on its port: tests/server/test_execute_credential_rules.py)
PLAIN_A = {**LOCAL_A, "base_url": "http://localhost:{port}"}
DECLARED = {"base_url": "{url}"}
PLAIN_B = {**LOCAL_B, **DECLARED}

CASES = [
    Case(
        "webhook target outside the connector's domains",
        [HOOKS],
        _webhook("{url}/collect"),
        422,
        refused_host="127.0.0.1",
        extra={"domains": ["hooks.example.com"]},
    ),
    Case(
        "webhook wildcard never matches an IP literal",
        [{**HOOKS, "domains": ["*.example.com"]}],
        _webhook("{url}/collect"),
        422,
        refused_host="127.0.0.1",
    ),
    Case(
        "webhook target in the connector's domains",
        [PLAIN_A],
        _webhook("http://localhost:{port}/collect"),
        200,
        credential="Bearer whsec_alpha",
    ),
    Case(
        "two webhook connectors: the one for 127.0.0.1",
        [PLAIN_A, PLAIN_B],
        _webhook("{url}/collect"),
        200,
        credential="Bearer whsec_beta",
    ),
    Case(
        "two webhook connectors: the one for localhost",
        [PLAIN_A, PLAIN_B],
        _webhook("http://localhost:{port}/collect"),
        200,
        credential="Bearer whsec_alpha",
    ),
    Case(
        "two webhook connectors, neither serves the host",
        [HOOKS, {**LOCAL_B, "domains": ["hooks2.example.com"]}],
        _webhook("http://localhost:{port}/collect"),
        422,
        refused_host="localhost",
        extra={"domains": ["hooks.example.com", "hooks2.example.com"]},
    ),
    Case("no webhook connector: sent with no credential", [], _webhook("{url}/c"), 200),
    Case(
        "generic target outside its domains",
        [{"type": "generic", "domains": ["api.example.com"], "token": "gensec_gamma"}],
        _generic("{url}/collect"),
        422,
        refused_host="127.0.0.1",
    ),
    Case(
        "generic target in its domains",
        [{"type": "generic", "domains": ["127.0.0.1"], "token": "gensec_gamma", **DECLARED}],
        _generic("{url}/collect"),
        200,
        credential="Bearer gensec_gamma",
    ),
    Case(
        "generic never borrows a webhook connector's secret",
        [LOCAL_B, {"type": "generic", "domains": ["api.example.com"], "token": "gensec_gamma"}],
        _generic("{url}/collect"),
        422,
        refused_host="127.0.0.1",
    ),
    Case(
        "mcp without base_url: the action's own target is not its host",
        [{"type": "mcp", "domains": ["mcp.example.com"], "token": "mcpsec_delta"}],
        _mcp("{url}/mcp"),
        422,
        refused_host="127.0.0.1",
    ),
    Case(
        "mcp with base_url: the credential goes there",
        [{"type": "mcp", "base_url": "{url}/mcp", "token": "mcpsec_delta"}],
        _mcp("http://evil.example.net/mcp"),
        200,
        credential="Bearer mcpsec_delta",
    ),
    Case(
        "github with base_url: its token goes there",
        [{"type": "github", "base_url": "{url}", "token": "ghp_epsilon"}],
        {
            "type": "github.pr.merge",
            "resource": {"provider": "github", "target": "acme/api"},
            "parameters": {"pull_number": 1},
        },
        200,
        credential="token ghp_epsilon",
    ),
    Case(
        "openai with base_url: its key goes there",
        [{"type": "openai", "base_url": "{url}", "token": "sk_zeta"}],
        {
            "type": "openai.chat.create",
            "resource": {"provider": "openai", "target": "http://evil.example.net/"},
            "parameters": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        },
        200,
        credential="Bearer sk_zeta",
    ),
    Case(
        "anthropic with base_url: its key goes there, in x-api-key",
        [{"type": "anthropic", "base_url": "{url}", "token": "sk-ant-eta"}],
        {
            "type": "anthropic.message.create",
            "resource": {"provider": "anthropic"},
            "parameters": {"model": "m", "max_tokens": 5, "messages": []},
        },
        200,
        credential="sk-ant-eta",
        header="x-api-key",
    ),
    Case(
        "github: a URL as the target does not move the request",
        [{"type": "github", "base_url": "{url}", "token": "ghp_epsilon"}],
        {
            "type": "github.pr.merge",
            "resource": {"provider": "github", "target": "http://evil.example.net/acme/api"},
            "parameters": {"pull_number": 1},
        },
        422,
    ),
]


def _fill(value: Any, fake: FakeUpstream) -> Any:
    if isinstance(value, str):
        return value.replace("{url}", fake.http_url).replace("{port}", str(fake.http_port))
    if isinstance(value, dict):
        return {k: _fill(v, fake) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, fake) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_credential_only_reaches_its_connectors_hosts(
    harness_factory: Any, fakes: FakeUpstreams, case: Case
) -> None:
    provider = case.spec["resource"]["provider"]
    upstream = fakes[provider] if provider in fakes.fakes else fakes["github"]
    names = ("github", "mcp", "stripe", "openai", "anthropic")
    bystanders = [fakes[n] for n in names if fakes[n] is not upstream]
    for fake in (upstream, *bystanders):
        fake.clear()
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1", "localhost"])
    for connector in case.connectors:
        r = h.admin("POST", "/v1/connectors", json=_fill(connector, upstream))
        assert r.status_code == 201, r.text
    key = h.create_agent("Bot")
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": _fill(case.spec, upstream)})
    assert body.json()["status"] == "allowed", body.text
    action_id, token = body.json()["action_request_id"], body.json()["decision_token"]
    r = h.agent(key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token})
    assert r.status_code == case.status, r.text
    seen = upstream.received()
    if case.status != 200:
        assert r.json()["error"] == "not_executable"
        assert seen == []
        if case.refused_host:
            assert r.json()["host"] == case.refused_host
            assert f"`{case.refused_host}`" in r.json()["message"]
        for domain in case.extra.get("domains", []):
            assert f"`{domain}`" in r.json()["message"]
        if "domains" in case.extra:
            assert r.json()["domains"] == case.extra["domains"]
    else:
        assert len(seen) == 1
        assert seen[0].header(case.header) == case.credential
    for fake in bystanders:
        assert fake.received() == []
    wire = "\n".join(req.raw_text() for req in seen)
    for secret in SECRETS:  # no other connector's secret, anywhere in what was sent
        if case.credential is None or secret not in case.credential:
            assert secret not in wire
        assert secret not in r.text
