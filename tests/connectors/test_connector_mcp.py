"""MCP connector: JSON-RPC methods, tool names and risk, batches that cannot smuggle."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.actions import is_action_type, parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector
from agentfirewall.connectors.mcp import tool_risk

MCP = get_connector("mcp")
URL = "https://mcp.example.com/mcp"


def rpc(message: object, *, method: str = "POST", ctype: str = "application/json") -> HttpRequest:
    headers = (("Content-Type", ctype), ("Accept", "application/json, text/event-stream"))
    return HttpRequest.from_url(method, URL, headers=headers, body=json.dumps(message).encode())


def call(name: str, arguments: object = None, id_: int = 1) -> dict[str, object]:
    params: dict[str, object] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


@pytest.mark.parametrize(
    ("message", "action", "risk", "params"),
    [
        (
            call("create_pull_request", {"repo": "a/b", "title": "t"}),
            "mcp.tools.create_pull_request",
            "medium",
            {"repo": "a/b", "title": "t", "tool": "create_pull_request"},
        ),
        (
            call("delete_repository", {"repo": "a/b"}),
            "mcp.tools.delete_repository",
            "high",
            {"repo": "a/b", "tool": "delete_repository"},
        ),
        (
            call("read_file", {"path": "/etc/hosts"}),
            "mcp.tools.read_file",
            "low",
            {"path": "/etc/hosts", "tool": "read_file"},
        ),
        (
            call("execute_command", {"cmd": "ls"}),
            "mcp.tools.execute_command",
            "high",
            {"cmd": "ls", "tool": "execute_command"},
        ),
        (call("send_email"), "mcp.tools.send_email", "medium", {"tool": "send_email"}),
        (call("deploy_service"), "mcp.tools.deploy_service", "high", {"tool": "deploy_service"}),
        (
            call("GitHub.Search Issues"),
            "mcp.tools.github_search_issues",
            "low",
            {"tool": "GitHub.Search Issues"},
        ),
        (call("listFiles"), "mcp.tools.listfiles", "low", {"tool": "listFiles"}),
        (call("frobnicate"), "mcp.tools.frobnicate", "medium", {"tool": "frobnicate"}),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "mcp.tools.list", "low", {}),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18"},
            },
            "mcp.rpc.initialize",
            "low",
            {"protocolVersion": "2025-06-18"},
        ),
        (
            {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///x"}},
            "mcp.rpc.resources_read",
            "low",
            {"uri": "file:///x"},
        ),
        (
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "prompts/get",
                "params": {"name": "p", "_meta": {}},
            },
            "mcp.rpc.prompts_get",
            "low",
            {"name": "p"},
        ),
        (
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            "mcp.rpc.notifications_initialized",
            "low",
            {},
        ),
        ({"jsonrpc": "2.0", "id": 9, "result": {}}, "mcp.rpc.response", "low", {}),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "Tools/Call ", "params": {"name": "drop_table"}},
            "mcp.tools.drop_table",
            "high",
            {"tool": "drop_table"},
        ),
        (
            [call("delete_repository")],
            "mcp.tools.delete_repository",
            "high",
            {"tool": "delete_repository"},
        ),
    ],
)
def test_mcp_row(message: object, action: str, risk: str, params: dict[str, object]) -> None:
    parsed = MCP.parse(rpc(message))
    assert (parsed.action_type, parsed.risk, parsed.spec.parameters) == (action, risk, params)
    assert parsed.spec.resource.provider == "mcp"
    assert parsed.spec.resource.target == "mcp.example.com"


def test_stream_and_session_requests() -> None:
    assert MCP.parse(HttpRequest.from_url("GET", URL)).action_type == "mcp.stream.open"
    assert MCP.parse(HttpRequest.from_url("DELETE", URL)).action_type == "mcp.session.close"
    assert MCP.parse(HttpRequest.from_url("PUT", URL)).action_type == "mcp.unknown.put"


def test_batch_cannot_hide_a_dangerous_call_behind_a_harmless_one() -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        call("read_file", {"path": "a"}, 2),
        call("delete_repository", {"repo": "a/b"}, 3),
    ]
    parsed = MCP.parse(rpc(batch))
    assert parsed.action_type == "mcp.rpc.batch"
    assert parsed.risk == "high"
    assert parsed.spec.parameters["actions"] == [
        "mcp.tools.list",
        "mcp.tools.read_file",
        "mcp.tools.delete_repository",
    ]
    members = parsed.spec.parameters["members"]
    assert isinstance(members, list)
    assert members[2] == {
        "action": "mcp.tools.delete_repository",
        "parameters": {"repo": "a/b", "tool": "delete_repository"},
    }


def test_batch_of_two_identical_calls_is_still_a_batch() -> None:
    parsed = MCP.parse(
        rpc([call("read_file", {"path": "a"}, 1), call("read_file", {"path": "b"}, 2)])
    )
    assert (parsed.action_type, parsed.risk) == ("mcp.rpc.batch", "low")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "batch of 0"),
        ([{"jsonrpc": "2.0", "method": "ping"}] * 101, "batch of 101"),
        ({"method": "tools/list"}, "not a JSON-RPC 2.0"),
        ({"jsonrpc": "1.0", "method": "tools/list"}, "not a JSON-RPC 2.0"),
        ({"jsonrpc": "2.0", "id": 1}, "without a method"),
        ({"jsonrpc": "2.0", "method": 5}, "must be a string"),
        ({"jsonrpc": "2.0", "method": "x", "params": [1]}, "must be a string and params an object"),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {}}, "string `name`"),
        (
            {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x", "arguments": [1]}},
            "object `arguments`",
        ),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": ""}}, "empty"),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x" * 64}}, "63"),
        ([{"jsonrpc": "2.0", "method": "tools/list"}, "junk"], "not a JSON-RPC 2.0"),
        ("just a string", "not a JSON-RPC 2.0"),
    ],
)
def test_malformed_messages_are_refused(body: object, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        MCP.parse(rpc(body))


def test_non_json_truncated_and_empty_bodies_are_refused() -> None:
    with pytest.raises(ConnectorError, match="content type"):
        MCP.parse(rpc(call("x"), ctype="text/plain"))
    truncated = HttpRequest.from_url("POST", URL, body=b'{"jsonrpc": "2.0", ', body_complete=False)
    with pytest.raises(ConnectorError, match="larger than"):
        MCP.parse(truncated)
    with pytest.raises(ConnectorError, match="invalid JSON"):
        MCP.parse(HttpRequest.from_url("POST", URL, body=b"{nope"))
    with pytest.raises(ConnectorError, match="not a JSON-RPC"):
        MCP.parse(HttpRequest.from_url("POST", URL, body=b""))


@pytest.mark.parametrize(
    "body",
    [b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all","name":"echo"}}',
     b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}',
     b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"id":3,"method":"ping"}]'],
)  # fmt: skip
def test_a_key_twice_is_refused(body: bytes) -> None:
    """The gateway forwards the body it named as sent: a server whose parser keeps the
    first of two ``name`` keys would run `delete_all` where `echo` was decided (the stdio
    wrapper re-serialises; over HTTP it is refused)."""
    with pytest.raises(ConnectorError, match="duplicate key"):
        MCP.parse(HttpRequest.from_url("POST", URL, body=body))


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "x-custom"])
def test_a_body_the_gateway_did_not_decode_is_refused(encoding: str) -> None:
    """Named on its raw bytes and forwarded still labelled: servers decompress `br` and
    `zstd` and would read another message."""
    body = json.dumps(call("echo")).encode()
    headers = (("Content-Type", "application/json"), ("Content-Encoding", encoding))
    with pytest.raises(ConnectorError, match="encoded"):
        MCP.parse(HttpRequest.from_url("POST", URL, headers=headers, body=body))


@pytest.mark.parametrize(
    ("name", "risk"),
    [
        ("read_and_delete", "high"),
        ("runQuery", "high"),
        ("shell", "high"),
        ("git-push", "medium"),
        ("mergePR", "medium"),
        ("search", "low"),
        ("getUserProfile", "low"),
        ("unknown_thing", "medium"),
        ("", "medium"),
    ],
)
def test_tool_risk(name: str, risk: str) -> None:
    assert tool_risk(name) == risk


@given(st.text(max_size=70), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_any_tool_name_is_a_valid_action_or_refused(name: str, arguments: dict[str, int]) -> None:
    try:
        parsed = MCP.parse(rpc(call(name, arguments)))
    except ConnectorError:
        return
    assert is_action_type(parsed.action_type)
    assert parsed.action_type.startswith("mcp.tools.")
    assert parsed.spec.parameters["tool"] == name


def test_build_tool_call_round_trips() -> None:
    spec = parse_action_spec(
        {
            "type": "mcp.tools.create_issue",
            "resource": {"provider": "mcp"},
            "parameters": {"tool": "create_issue", "title": "t"},
        }
    )
    built = MCP.build_request(spec, base_url=URL)
    assert (built.method, built.url) == ("POST", URL)
    again = MCP.parse(built)
    assert again.action_type == "mcp.tools.create_issue"
    assert again.spec.parameters == {"title": "t", "tool": "create_issue"}
    listing = MCP.build_request(parse_action_spec({"type": "mcp.tools.list"}), base_url=URL)
    assert MCP.parse(listing).action_type == "mcp.tools.list"


def test_build_refuses_mismatched_tool_and_rpc() -> None:
    mismatch = parse_action_spec(
        {"type": "mcp.tools.read_file", "parameters": {"tool": "delete_all"}}
    )
    with pytest.raises(ConnectorError, match="does not name"):
        MCP.build_request(mismatch, base_url=URL)
    with pytest.raises(ConnectorError, match="only tool calls"):
        MCP.build_request(parse_action_spec({"type": "mcp.rpc.initialize"}), base_url=URL)


@pytest.mark.parametrize(
    "message",
    [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/list",
            "METHOD": "tools/call",
            "params": {"name": "delete_repository"},
        },
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "read_file", "Name": "delete_repository"},
        },
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "read_file", "argument\u017f": {"path": "/"}},
        },
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "Params": {}},
    ],
)
def test_case_variant_keys_are_refused(message: dict[str, object]) -> None:
    with pytest.raises(ConnectorError, match="case variant"):
        MCP.parse(rpc(message))


@pytest.mark.parametrize("name", ["list", "List", " list "])
def test_a_tool_named_list_cannot_pass_for_tools_list(name: str) -> None:
    parsed = MCP.parse(rpc(call(name)))
    assert parsed.action_type == "mcp.tools.list_tool"
    assert parsed.spec.parameters == {"tool": name}
