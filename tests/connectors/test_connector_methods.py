"""Webhook and generic connectors: named by method, built from the seed's webhook JSON."""

from __future__ import annotations

import json

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, action_aliases, get_connector

WEBHOOK = get_connector("webhook")
GENERIC = get_connector("generic")


@pytest.mark.parametrize(
    ("method", "suffix", "risk"),
    [
        ("GET", "get", "low"),
        ("HEAD", "head", "low"),
        ("OPTIONS", "options", "low"),
        ("POST", "post", "medium"),
        ("PUT", "put", "medium"),
        ("PATCH", "patch", "medium"),
        ("DELETE", "delete", "high"),
    ],
)
def test_named_by_method(method: str, suffix: str, risk: str) -> None:
    hook = WEBHOOK.parse(HttpRequest.from_url(method, "https://hooks.example.com:8443/v1/x?q=1"))
    assert (hook.action_type, hook.risk) == (f"webhook.{suffix}", risk)
    assert hook.spec.resource.target == "https://hooks.example.com:8443/v1/x"
    assert hook.spec.parameters == {"host": "hooks.example.com", "path": "/v1/x"}
    generic = GENERIC.parse(HttpRequest.from_url(method, "https://API.stripe.com/v1/charges"))
    assert (generic.action_type, generic.risk) == (f"http.{suffix}", risk)
    assert generic.spec.resource.target == "api.stripe.com"
    assert generic.spec.parameters == {"host": "api.stripe.com", "path": "/v1/charges"}


def test_catalogue_lists_every_method() -> None:
    assert {a.type for a in WEBHOOK.actions()} == {
        f"webhook.{m}" for m in ("get", "post", "put", "patch", "delete", "head", "options")
    }
    assert {a.type for a in GENERIC.actions()} == {
        f"http.{m}" for m in ("get", "post", "put", "patch", "delete", "head", "options")
    }


def test_path_tricks_are_refused_here_too() -> None:
    with pytest.raises(ConnectorError, match="refused"):
        GENERIC.parse(HttpRequest.from_url("GET", "https://x.test/a/%2e%2e/admin"))


def test_generic_aliases() -> None:
    assert action_aliases("http.get") == ("generic.get",)
    assert action_aliases("generic.post") == ("http.post",)
    assert action_aliases("github.pr.merge") == ()


def test_build_seed_webhook_example() -> None:
    spec = parse_action_spec(
        {
            "type": "webhook.post",
            "resource": {"provider": "webhook", "target": "https://api.example.com/v1/action"},
            "parameters": {
                "method": "POST",
                "headers": {"Authorization": "Bearer secret"},
                "body": {"key": "value"},
            },
        }
    )
    built = WEBHOOK.build_request(spec)
    assert (built.method, built.url) == ("POST", "https://api.example.com/v1/action")
    assert built.header("authorization") == "Bearer secret"
    assert built.header("content-type") == "application/json"
    assert json.loads(built.body) == {"key": "value"}
    assert WEBHOOK.parse(built).action_type == "webhook.post"


def test_build_generic_from_a_host_and_path() -> None:
    spec = parse_action_spec(
        {
            "type": "generic.get",
            "resource": {"target": "api.example.com"},
            "parameters": {"path": "/v1/items", "query": {"limit": 5}},
        }
    )
    built = GENERIC.build_request(spec)
    assert (built.method, built.url) == ("GET", "https://api.example.com/v1/items?limit=5")
    text = GENERIC.build_request(
        parse_action_spec(
            {
                "type": "http.put",
                "resource": {"target": "https://x.test/a"},
                "parameters": {"body": "plain"},
            }
        )
    )
    assert (text.method, text.body) == ("PUT", b"plain")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "webhook.post", "parameters": {}}, "missing resource target"),
        ({"type": "webhook.post", "resource": {"target": "ftp://x.test/"}}, "invalid url"),
        ({"type": "webhook.post", "resource": {"target": "x.test"}}, "not a URL"),
        (
            {
                "type": "webhook.post",
                "resource": {"target": "https://x.test/"},
                "parameters": {"method": "DELETE"},
            },
            "disagrees",
        ),
        (
            {
                "type": "webhook.post",
                "resource": {"target": "https://x.test/"},
                "parameters": {"headers": {"X-A": "1\r\nHost: evil"}},
            },
            "invalid header",
        ),
        (
            {
                "type": "webhook.post",
                "resource": {"target": "https://x.test/"},
                "parameters": {"headers": {"Host": "evil"}},
            },
            "cannot be set",
        ),
        (
            {
                "type": "webhook.post",
                "resource": {"target": "https://x.test/"},
                "parameters": {"headers": ["x"]},
            },
            "object of strings",
        ),
        ({"type": "webhook.get", "resource": {"target": "https://x.test/a/../b"}}, "refused"),
        ({"type": "webhook.trace", "resource": {"target": "https://x.test/"}}, "not an action"),
        ({"type": "github.pr.merge", "resource": {"target": "https://x.test/"}}, "not an action"),
    ],
)
def test_build_refuses(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        WEBHOOK.build_request(parse_action_spec(data))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("Authorization", "Bearer s")),
        ({"auth_type": "bearer"}, ("Authorization", "Bearer s")),
        ({"auth_type": "token"}, ("Authorization", "token s")),
        ({"auth_type": "header", "header": "X-Api-Key"}, ("X-Api-Key", "s")),
        ({"auth_type": "header"}, ("Authorization", "s")),
    ],
)
def test_generic_credential_header_is_configurable(
    kwargs: dict[str, str], expected: tuple[str, str]
) -> None:
    assert GENERIC.auth_headers("s", **kwargs) == [expected]


@pytest.mark.parametrize(
    ("credential", "kwargs"),
    [
        ("", {}),
        ("a\nb", {}),
        ("s", {"auth_type": "basic"}),
        ("s", {"auth_type": "header", "header": "X: y"}),
    ],
)
def test_bad_credentials_are_refused(credential: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(ConnectorError):
        GENERIC.auth_headers(credential, **kwargs)
