"""docs/api.md followed as a user (and an attacker) would, against one real server.

Each test checks a claim of the page that no other test of tests/server holds, or a refusal
the page promises: every bad input is a 4xx in the documented shape, naming its field, and
nothing it would have stored can leave the configuration unreadable to a gateway (a kill
switch naming nobody, a domain the connector router refuses, a credential header that
would frame or route the request).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentfirewall.connectors import ConnectorRouter, RoutedConnector
from tests.livesrv import LiveServer

HOLD_POLICY = """
name: docs-api-hold
scope: {action_types: ["payments.*"], agents: ["docs-holder"]}
rules:
  - name: hold
    conditions: {all: [{field: action_spec.type, operator: exists}]}
    decision: require_approval
    reason: a person decides
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer.start(tmp_path_factory.mktemp("docs-api") / "tf")
    yield live
    live.stop()


def refused(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """The documented error shape: `{"error", "message", ...}`, naming `field`."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str), body
    assert isinstance(body["message"], str), body
    assert body.get("field") == field, body
    return body


def config_is_readable(server: LiveServer) -> None:
    """What every gateway does with the snapshot: route by its connectors, obey its kill
    switches; and the server itself reads its stored configuration."""
    config = server.gateway("GET", "/v1/gateway/config").json()
    ConnectorRouter(
        RoutedConnector(c["id"], c["type"], tuple(c["domains"]), c["base_url"])
        for c in config["connectors"]
    )
    switches = server.admin("GET", "/v1/kill-switch").json()["active"]
    assert not any(s.get("unreadable") for s in switches), switches
    assert server.request("GET", "/api/health").json()["config"]["status"] == "ok"


# --- fixes: refusals the page promises ------------------------------------------------


@pytest.mark.parametrize("scope", ["agent:", "connector:"])
def test_a_kill_switch_scope_naming_nobody_is_422_not_an_unreadable_config(
    server: LiveServer, scope: str
) -> None:
    answer = server.admin("POST", "/v1/kill-switch", json={"active": True, "scope": scope})
    refused(answer, 422, "scope")
    answer = server.admin("POST", "/v1/kill-switch", json={"active": False, "scope": scope})
    refused(answer, 422, "scope")
    config_is_readable(server)


@pytest.mark.parametrize(
    "domain",
    [
        "api.example.com:8443",  # a port
        "https://api.example.com",  # a scheme
        "api.example.com/v1",  # a path
        "a" * 64 + ".example.com",  # a label over 63 characters
        "*.10.0.0.1",  # a wildcard IP
        "",
    ],
)
def test_a_domain_the_connector_router_refuses_is_422_naming_its_index(
    server: LiveServer, domain: str
) -> None:
    body = {"type": "generic", "domains": ["ok.example.com", domain], "token": "t0ken"}
    refused(server.admin("POST", "/v1/connectors", json=body), 422, "domains.1")
    config_is_readable(server)


def test_host_names_wildcards_and_ips_are_domains(server: LiveServer) -> None:
    body = {"type": "generic", "domains": ["*.docs.example.com", "10.9.8.7", "my_host.example"]}
    made = server.admin("POST", "/v1/connectors", json=body)
    assert made.status_code == 201, made.text
    config_is_readable(server)
    assert server.admin("DELETE", f"/v1/connectors/{made.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    "header",
    [
        "X-Key\r\nX-Injected: 1",  # header injection
        "X Key",
        "X-Kéy",
        "Host",  # routes the request
        "content-length",  # frames it: request smuggling
        "Transfer-Encoding",
        "Connection",
        "Proxy-Authorization",
        "X-Forwarded-Host",
        "X-HTTP-Method-Override",
    ],
)
def test_a_credential_header_that_is_no_name_or_frames_or_routes_is_422(
    server: LiveServer, header: str
) -> None:
    body = {"type": "generic", "domains": ["h.example.com"], "token": "t0ken",
            "auth_type": "header", "auth_header": header}  # fmt: skip
    refused(server.admin("POST", "/v1/connectors", json=body), 422, "auth_header")
    config_is_readable(server)


def test_auth_header_goes_with_auth_type_header_only(server: LiveServer) -> None:
    body = {"type": "generic", "domains": ["k.example.com"], "token": "t0ken",
            "auth_header": "X-Api-Key"}  # fmt: skip
    refused(server.admin("POST", "/v1/connectors", json=body), 422, "auth_header")
    made = server.admin("POST", "/v1/connectors", json={**body, "auth_type": "header"})
    assert made.status_code == 201, made.text
    assert (made.json()["auth_type"], made.json()["auth_header"]) == ("header", "X-Api-Key")
    assert server.admin("DELETE", f"/v1/connectors/{made.json()['id']}").status_code == 204


@pytest.mark.parametrize("url", ["not a url", "file:///etc/passwd", "gopher://x", "http://x:0"])
def test_settings_gateway_url_is_an_http_url(server: LiveServer, url: str) -> None:
    before = server.admin("GET", "/v1/settings").json()["gateway_url"]
    refused(server.admin("PATCH", "/v1/settings", json={"gateway_url": url}), 422, "gateway_url")
    assert server.admin("GET", "/v1/settings").json()["gateway_url"] == before


def test_settings_gateway_url_takes_a_url_or_empty(server: LiveServer) -> None:
    for url in ("http://gateway.internal:8443", "", "http://localhost:8443"):
        answer = server.admin("PATCH", "/v1/settings", json={"gateway_url": url})
        assert answer.status_code == 200, answer.text
        assert answer.json()["gateway_url"] == url


@pytest.mark.parametrize(
    ("query", "field"),
    [("decision=denied", "decision"), ("decision=would_deny", "decision"),
     ("status=5000", "status"), ("status=0", "status")],
)  # fmt: skip
def test_traffic_filters_refuse_what_no_row_holds(
    server: LiveServer, query: str, field: str
) -> None:
    """A typo (`denied` for `deny`) would list nothing, as if nothing was denied; a status
    past 999 would have been read as 999."""
    refused(server.admin("GET", f"/v1/traffic?{query}"), 400, field)


def test_traffic_filters_take_every_documented_decision(server: LiveServer) -> None:
    for decision in ("allow", "deny", "require_approval", "killed"):
        answer = server.admin("GET", f"/v1/traffic?decision={decision}&status=403")
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("name", ["*", "ci-*", "agt_01M93HXTGXGTWJ6DY09SH1G3BR", "agt_x"])
def test_an_agent_name_that_reads_as_a_wildcard_or_an_id_is_422(
    server: LiveServer, name: str
) -> None:
    refused(server.admin("POST", "/v1/agents", json={"name": name}), 422, "name")
    refused(server.admin("POST", "/v1/agents/ensure", json={"name": name}), 422, "name")
    names = {a["name"] for a in server.admin("GET", "/v1/agents").json()["agents"]}
    assert name not in names


def test_approvals_status_lists_what_it_takes(server: LiveServer) -> None:
    body = refused(server.admin("GET", "/v1/approvals?status=bogus"), 400, "status")
    for word in ("pending", "recent", "approved", "denied", "expired"):
        assert word in body["message"]
    for status in ("pending", "recent", "all", "approved", "denied", "expired"):
        assert server.admin("GET", f"/v1/approvals?status={status}").status_code == 200


def test_a_backwards_agent_port_range_is_422(server: LiveServer) -> None:
    beat = {"gateway_id": "docs-gw", "agent_ports": {}, "agent_port_range": [9100, 9000],
            "started_at": "2026-01-01T00:00:00Z", "stats": {}}  # fmt: skip
    refused(server.gateway("POST", "/v1/gateway/heartbeat", json=beat), 422, "agent_port_range")
    beat["agent_port_range"] = [9000, 9000]
    assert server.gateway("POST", "/v1/gateway/heartbeat", json=beat).json() == {"ok": True}


# --- documented answers no other test holds ---------------------------------------------


def test_budget_put_is_201_then_200_and_delete_answers_removed(server: LiveServer) -> None:
    body = {"connector": "github", "limit": 5}
    first = server.admin("PUT", "/v1/budgets/docs-daily", json=body)
    assert first.status_code == 201, first.text
    again = server.admin("PUT", "/v1/budgets/docs-daily", json={**body, "limit": 7})
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["limit"]) == (first.json()["id"], 7)
    gone = server.admin("DELETE", "/v1/budgets/docs-daily")
    assert (gone.status_code, gone.json()) == (200, {"removed": "docs-daily"})
    refused(server.admin("DELETE", "/v1/budgets/docs-daily"), 404, None)


def test_ensure_creates_once_then_issues_keys_and_refuses_a_suspended_agent(
    server: LiveServer,
) -> None:
    made = server.admin("POST", "/v1/agents/ensure", json={"name": "docs-runner"})
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"agent", "api_key", "run"}
    assert made.json()["run"] == {"enforcement_level": "full_enforce", "scope": "agent"}
    again = server.admin("POST", "/v1/agents/ensure", json={"name": "docs-runner"})
    assert again.status_code == 200, again.text
    assert again.json()["agent"]["id"] == made.json()["agent"]["id"]
    assert again.json()["api_key"] != made.json()["api_key"]
    assert server.admin("POST", "/v1/agents/docs-runner/suspend").status_code == 200
    refused(server.admin("POST", "/v1/agents/ensure", json={"name": "docs-runner"}), 409, None)


def test_the_agent_shape_and_an_empty_patch(server: LiveServer) -> None:
    server.create_agent("docs-shape", description="reads the docs")
    agent = server.admin("GET", "/v1/agents/docs-shape").json()
    assert set(agent) == {
        "id", "name", "status", "environment", "description", "key_prefix",
        "enforcement_level", "sdk_default", "rate_limit_per_minute", "proxy_port",
        "created_at", "rules",
    }  # fmt: skip
    assert (agent["description"], agent["rate_limit_per_minute"]) == ("reads the docs", None)
    for empty in ({}, {"description": None, "sdk_default": None}):
        refused(server.admin("PATCH", "/v1/agents/docs-shape", json=empty), 422, None)


def test_a_decided_approval_is_409_with_its_status(server: LiveServer) -> None:
    key = server.create_agent("docs-holder")
    made = server.admin("POST", "/v1/policies", json={"document": HOLD_POLICY})
    assert made.status_code == 201, made.text
    spec = {"type": "payments.refund.create", "resource": {"provider": "payments"}}
    held = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert held["status"] == "pending_approval", held
    approval = held["approval"]["id"]
    assert set(held["approval"]) == {"id", "expires_at", "required_approver_roles"}
    shown = server.admin("GET", f"/v1/approvals/{approval}").json()
    assert shown["connector"] is None or isinstance(shown["connector"], str)
    decided = server.admin("POST", f"/v1/approvals/{approval}/deny")  # no body at all
    assert decided.json()["status"] == "denied", decided.text
    for verb in ("approve", "deny"):
        body = refused(server.admin("POST", f"/v1/approvals/{approval}/{verb}"), 409, None)
        assert (body["error"], body["approval_status"]) == ("conflict", "denied")
    assert server.admin("DELETE", f"/v1/policies/{made.json()['id']}").status_code == 204


def test_audit_export_defaults_to_json_lines_and_refuses_other_formats(
    server: LiveServer,
) -> None:
    export = server.admin("GET", "/v1/audit/export")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines[-1]["record"] == "checkpoint"
    assert set(lines[-1]) == {"record", "seq", "head", "time", "kid", "token"}
    assert all(isinstance(e["created_ts"], float) for e in lines if "event_type" in e)
    csv = server.admin("GET", "/v1/audit/export?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    refused(server.admin("GET", "/v1/audit/export?format=xml"), 400, "format")


def test_gateway_reserve_answers_its_three_keys(server: LiveServer) -> None:
    body = {"agent": "nobody", "connector": "github", "action": "github.pr.merge",
            "parameters": {}}  # fmt: skip
    answer = server.gateway("POST", "/v1/gateway/budgets/reserve", json=body)
    assert answer.json() == {"reservation": None, "refused": None, "remaining": {}}
    assert set(server.gateway("GET", "/v1/gateway/budgets").json()) == {"attributes"}


def test_an_idempotency_key_is_1_to_200_characters(server: LiveServer) -> None:
    key = server.create_agent("docs-idem")
    spec = {"type": "notes.page.create", "resource": {"provider": "notes"}}
    for bad in ("", "k" * 201):
        answer = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec},
                              headers={"Idempotency-Key": bad})  # fmt: skip
        refused(answer, 400, "Idempotency-Key")
    longest = {"Idempotency-Key": "k" * 200}
    first = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec}, headers=longest)
    again = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec}, headers=longest)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["action_request_id"] == first.json()["action_request_id"]


# --- a misspelt query parameter is refused, never ignored ---------------------------------

#: (who, method, path, a parameter it reads, that parameter misspelt, the body if any)
_QUERIES = [
    ("admin", "GET", "/v1/traffic", "agent", "agnet", None),
    ("admin", "GET", "/v1/traffic", "decision", "decison", None),
    ("admin", "GET", "/v1/audit", "event_type", "event", None),
    ("admin", "GET", "/v1/audit/export", "since", "snce", None),
    ("admin", "GET", "/v1/audit/checkpoints", "limit", "limt", None),
    ("admin", "GET", "/v1/approvals", "status", "state", None),
    ("admin", "GET", "/v1/grants", "status", "stauts", None),
    ("admin", "GET", "/v1/permissions", "agent", "agents", None),
    ("admin", "GET", "/v1/permissions/suggest", "since_seconds", "since", None),
    ("gateway", "GET", "/v1/gateway/config", "since", "snce", None),
    ("gateway", "POST", "/v1/gateway/approvals/wait", "timeout", "timout", {"ids": ["apv_x"]}),
    ("gateway", "GET", "/v1/gateway/approvals/apv_x/wait", "timeout", "timout", None),
]


@pytest.mark.parametrize(("who", "method", "path", "known", "wrong", "body"), _QUERIES,
                         ids=[f"{q[2]}?{q[4]}" for q in _QUERIES])  # fmt: skip
def test_a_misspelt_query_parameter_is_400_naming_it(
    server: LiveServer, who: str, method: str, path: str, known: str, wrong: str, body: Any
) -> None:
    """`GET /api/v1/traffic?agnet=Bot` listed every agent's traffic, as if filtered."""
    call = server.admin if who == "admin" else server.gateway
    answer = call(method, path, body, params={wrong: "0"})
    refused(answer, 400, wrong)
    message = answer.json()["message"]
    assert message.startswith(f"unknown query parameter `{wrong}`")
    assert f"`{known}`" in message or known in message.split("it reads ", 1)[1]


def test_an_agents_misspelt_wait_parameter_is_400(server: LiveServer) -> None:
    key = server.create_agent("docs-waiter")
    held = server.agent(key, "POST", "/v1/actions", json={"action_spec": {"type": "a.b"}})
    assert held.status_code == 200, held.text
    path = f"/v1/actions/{held.json()['action_request_id']}/wait"
    refused(server.agent(key, "GET", path, params={"timeout_seconds": "1"}), 400,
            "timeout_seconds")  # fmt: skip
    assert server.agent(key, "GET", path, params={"timeout": "0"}).status_code == 200


@pytest.mark.parametrize("document", ["", "[]", "name: p\nrules: 5\n", "{"])
def test_an_error_body_leaves_out_what_it_does_not_know(server: LiveServer, document: str) -> None:
    """`field` (and `line`) are there when known, never as null (`"field": null` was sent)."""
    answer = server.admin("POST", "/v1/policies", json={"document": document})
    assert answer.status_code == 422, answer.text
    assert None not in answer.json().values(), answer.json()
