"""Named truly (DESIGN.md 7.2): the request executed is the request decided on.

A table of webhook and generic actions: each either executes with exactly the method, host
and path its type and target name (checked on the fake upstream's wire), or is refused with
422 and reaches nothing, when a parameter contradicts the action type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    target: str  # "{url}" is the fake's http://127.0.0.1:port
    parameters: dict[str, Any]
    sent: tuple[str, str] | None  # (method, path) on the wire, None: refused with 422


ROWS = [
    Row("get", "webhook.get", "{url}/items", {}, ("GET", "/items")),
    Row("get, method agrees", "webhook.get", "{url}/items", {"method": "GET"}, ("GET", "/items")),
    Row("get, lower-case", "webhook.get", "{url}/items", {"method": "get"}, ("GET", "/items")),
    Row("delete", "webhook.delete", "{url}/items/1", {}, ("DELETE", "/items/1")),
    Row("get sent as DELETE", "webhook.get", "{url}/items", {"method": "DELETE"}, None),
    Row("get sent as PROPFIND", "webhook.get", "{url}/items", {"method": "PROPFIND"}, None),
    Row("post sent as GET", "webhook.post", "{url}/items", {"method": "GET"}, None),
    Row("method not a string", "webhook.get", "{url}/items", {"method": ["DELETE"]}, None),
    Row("a verb that is no method", "webhook.propfind", "{url}/items", {}, None),
    Row("a type of no webhook", "webhook.send", "{url}/items", {}, None),
    Row(
        "method override header",
        "webhook.get",
        "{url}/items",
        {"headers": {"X-HTTP-Method-Override": "DELETE"}},
        None,
    ),
    Row("host header", "webhook.get", "{url}/items", {"headers": {"Host": "admin"}}, None),
    Row(
        "forwarded host",
        "webhook.get",
        "{url}/items",
        {"headers": {"X-Forwarded-Host": "admin.internal"}},
        None,
    ),
    Row("original url", "webhook.get", "{url}/a", {"headers": {"X-Original-URL": "/x"}}, None),
    Row("dot segments in the path", "webhook.get", "{url}/a/%2e%2e/admin", {}, None),
    Row("not a url", "webhook.get", "not a url", {}, None),
    Row("file scheme", "webhook.get", "file:///etc/passwd", {}, None),
    Row("bad port", "webhook.get", "http://127.0.0.1:99999/", {}, None),
    Row("broken ipv6 literal", "webhook.get", "http://[::1/", {}, None),
    Row("generic get", "http.get", "{url}/v1/things", {}, ("GET", "/v1/things")),
    Row("generic get sent as DELETE", "http.get", "{url}/x", {"method": "DELETE"}, None),
    Row("generic delete", "http.delete", "{url}/v1/x", {"method": "delete"}, ("DELETE", "/v1/x")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_the_executed_request_is_the_decided_one(
    harness_factory: Any, fakes: FakeUpstreams, row: Row
) -> None:
    upstream = fakes["github"]
    upstream.clear()
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1"])
    provider = "generic" if row.type.startswith("http.") else "webhook"
    if provider == "generic":
        r = h.admin("POST", "/v1/connectors", json={"type": "generic", "domains": ["127.0.0.1"]})
        assert r.status_code == 201, r.text
    spec = {
        "type": row.type,
        "resource": {
            "provider": provider,
            "target": row.target.replace("{url}", upstream.http_url),
        },
        "parameters": row.parameters,
    }
    key = h.create_agent("Bot")
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    if body.status_code != 200:  # refused already when requested: decided on nothing
        assert row.sent is None, body.text
        assert body.status_code in (400, 422), body.text
        return
    action_id, token = body.json()["action_request_id"], body.json()["decision_token"]
    assert token, body.text
    r = h.agent(key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token})
    if row.sent is None:
        assert r.status_code == 422, r.text
        assert r.json()["error"] in ("not_executable", "target_refused"), r.text
        assert upstream.received() == []
        retry = h.agent(
            key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token}
        )
        assert retry.status_code == 422  # refused before the claim: nothing changed
        return
    assert r.status_code == 200, r.text
    seen = upstream.received()
    assert [(s.method, s.path) for s in seen] == [row.sent]
    assert seen[0].host == f"127.0.0.1:{upstream.http_port}"
