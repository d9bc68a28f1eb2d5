"""MCP connector: only the endpoint speaks MCP, and only over Streamable HTTP.

Two ways a request was named as an MCP operation it is not (hunt H7, defects 3 and 4):

- a WebSocket handshake (``GET`` + ``Upgrade: websocket``) was ``mcp.stream.open``, and
  every JSON-RPC message on the upgraded connection reached the server unread: the
  gateway relays an upgraded stream as bytes. Every spelling of the handshake is refused.
- every path of the connector's host was the endpoint: with ``base_url`` at
  ``https://host/mcp``, ``DELETE /api/v1/repos/acme/prod`` was ``mcp.session.close`` and a
  POST anywhere with a JSON-RPC-looking body an MCP call. A path outside the endpoint is
  ``mcp.unknown.<method>`` now, the family no wildcard grants.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector
from tests.fuzzscale import examples

MCP = get_connector("mcp")
HOST = "https://mcp.example.com"
BASE = f"{HOST}/mcp"
LIST = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
DELETE_REPO = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "delete_repo", "arguments": {"repo": "prod"}},
    }
).encode()
JSON = (("Content-Type", "application/json"),)


def request(
    method: str, path: str, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> HttpRequest:
    sent = (*JSON, *headers) if body else headers
    return HttpRequest.from_url(method, HOST + path, headers=sent, body=body)


#: Every way to ask for a WebSocket: the name in any case, padded, beside another protocol,
#: with a version, on a second `Upgrade` line, with or without `Connection: upgrade`
#: (whatever the gateway switches on, the connector refuses it first).
HANDSHAKES = [
    (("Upgrade", "websocket"), ("Connection", "Upgrade")),
    (("Connection", "Upgrade"), ("Upgrade", "websocket")),  # the decisive header last
    (("upgrade", "WebSocket"), ("connection", "upgrade")),
    (("UPGRADE", "  WEBSOCKET  "),),
    (("Upgrade", "h2c, websocket"), ("Connection", "Upgrade, HTTP2-Settings")),
    (("Upgrade", "websocket/13"),),
    (("Upgrade", "h2c"), ("Upgrade", "websocket")),
    (("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", "mcp"), ("Sec-WebSocket-Version", "13")),
]


@pytest.mark.parametrize("headers", HANDSHAKES)
@pytest.mark.parametrize("base_url", [None, BASE, HOST])
@pytest.mark.parametrize("path", ["/mcp", "/", "/api/v1/repos/acme/prod"])
def test_a_websocket_handshake_is_refused(
    headers: tuple[tuple[str, str], ...], base_url: str | None, path: str
) -> None:
    with pytest.raises(ConnectorError, match=r"websocket.*streamable http") as refused:
        MCP.parse(request("GET", path, headers), base_url=base_url)
    assert refused.value.connector == "mcp"


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
def test_an_upgrade_on_any_method_is_refused(method: str) -> None:
    body = LIST if method == "POST" else b""
    with pytest.raises(ConnectorError, match="websocket"):
        MCP.parse(request(method, "/mcp", (("Upgrade", "websocket"),), body), base_url=BASE)


@pytest.mark.parametrize("upgrade", ["h2c", "TLS/1.2", "websockets", "web socket"])
def test_another_upgrade_is_no_websocket(upgrade: str) -> None:
    """The gateway forwards these as plain HTTP/1.1 without `Upgrade` (no switch): named as
    the request they are."""
    parsed = MCP.parse(request("GET", "/mcp", (("Upgrade", upgrade),)), base_url=BASE)
    assert parsed.action_type == "mcp.stream.open"


#: (method, path, body, the action on the endpoint `/mcp`)
OPERATIONS = [
    ("GET", "stream", b"", "mcp.stream.open"),
    ("DELETE", "session", b"", "mcp.session.close"),
    ("POST", "list", LIST, "mcp.tools.list"),
    ("POST", "call", DELETE_REPO, "mcp.tools.delete_repo"),
]
INSIDE = ["/mcp", "/mcp/", "/%6Dcp", "/%6dcp/", "/mcp/x/repos", "/mcp/readonly"]
OUTSIDE = [
    "/",
    "/api/v1/repos/acme/prod",
    "/mcpx",
    "/MCP",
    "/Mcp/x",
    "/x/mcp",
    "/v1/mcp",
    "/sse",
    "/messages",
]


@pytest.mark.parametrize(("method", "_", "body", "action"), OPERATIONS)
@pytest.mark.parametrize("path", INSIDE)
@pytest.mark.parametrize("base_url", [BASE, BASE + "/"])
def test_the_endpoint_and_below_are_mcp(
    method: str, _: str, body: bytes, action: str, path: str, base_url: str
) -> None:
    assert MCP.parse(request(method, path, body=body), base_url=base_url).action_type == action


@pytest.mark.parametrize(("method", "_", "body", "action"), OPERATIONS)
@pytest.mark.parametrize("path", OUTSIDE)
@pytest.mark.parametrize("base_url", [BASE, BASE + "/"])
def test_a_path_outside_the_endpoint_is_no_mcp_operation(
    method: str, _: str, body: bytes, action: str, path: str, base_url: str
) -> None:
    parsed = MCP.parse(request(method, path, body=body), base_url=base_url)
    assert parsed.action_type == f"mcp.unknown.{method.lower()}"
    assert parsed.route == "fallback"
    assert parsed.spec.parameters == {"method": method, "path": path}


@pytest.mark.parametrize(("method", "_", "body", "action"), OPERATIONS)
@pytest.mark.parametrize("base_url", [None, HOST, HOST + "/"])
def test_without_a_path_in_base_url_every_path_is_the_endpoint(
    method: str, _: str, body: bytes, action: str, base_url: str | None
) -> None:
    """Unchanged: no endpoint path was given, so none can be compared (domains only)."""
    for path in ("/mcp", "/api/v1/repos/acme/prod"):
        assert MCP.parse(request(method, path, body=body), base_url=base_url).action_type == action


def test_a_deeper_endpoint_path() -> None:
    base = f"{HOST}/v1/servers/github/mcp"
    inside = MCP.parse(request("POST", "/v1/servers/github/mcp", body=LIST), base_url=base)
    assert inside.action_type == "mcp.tools.list"
    outside = MCP.parse(request("POST", "/v1/servers/github", body=LIST), base_url=base)
    assert outside.action_type == "mcp.unknown.post"


def test_an_odd_path_is_still_refused_inside_or_out() -> None:
    for path in ("/mcp%2Fx", "/mcp/../admin", "/x//mcp"):
        with pytest.raises(ConnectorError, match="refused path"):
            MCP.parse(request("POST", path, body=LIST), base_url=BASE)


def test_executing_a_tool_still_posts_to_the_endpoint() -> None:
    spec = parse_action_spec({"type": "mcp.tools.delete_repo", "parameters": {"repo": "prod"}})
    built = MCP.build_request(spec, base_url=BASE)
    assert (built.method, built.path) == ("POST", "/mcp")
    assert MCP.parse(built, base_url=BASE).action_type == "mcp.tools.delete_repo"


# -- any path, in any encoding: MCP exactly when the path is at or below the endpoint --------

#: path segments as sent; unquoted they are what the upstream routes on (`%6D` is `m`)
_SEGMENTS = ["mcp", "%6Dcp", "m%63p", "MCP", "mcpx", "x", "api", "v1", "readonly", "%6d%63%70"]


@settings(max_examples=examples(120), deadline=None)
@given(
    st.lists(st.sampled_from(_SEGMENTS), max_size=4),
    st.sampled_from(["/mcp", "/mcp/", "/v1/mcp", "/", ""]),
    st.sampled_from(OPERATIONS),
    st.booleans(),
)
def test_mcp_exactly_at_or_below_the_endpoint(
    segments: list[str], base_path: str, operation: tuple[str, str, bytes, str], slash: bool
) -> None:
    method, _, body, action = operation
    path = "/" + "/".join(segments) + ("/" if slash and segments else "")
    parsed = MCP.parse(request(method, path, body=body), base_url=HOST + base_path)
    routed = [unquote(s) for s in segments]  # what the upstream routes on
    endpoint = [s for s in base_path.split("/") if s]
    inside = routed[: len(endpoint)] == endpoint
    assert parsed.action_type == (action if inside else f"mcp.unknown.{method.lower()}"), path
