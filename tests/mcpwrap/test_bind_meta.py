"""One approval, one request over stdio (DESIGN.md section 7, guarantee 3): the approval
binds the message as it is forwarded, `_meta` too (the server reads it), but for its id
and progress token, so only an identical retry rides on it."""

from __future__ import annotations

from typing import Any

from agentfirewall_proxy.mcpwrap.binding import bind
from agentfirewall_proxy.pipeline import Flow

FLOW = Flow(request_id="mcp_1", method="MCP", scheme="stdio", host="tests", path="/tools/call")


def merge(request_id: int, meta: dict[str, Any] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "merge_pr", "arguments": {"number": 7}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def digest(message: Any) -> object:
    return bind(message, FLOW)["digest"]


def test_an_identical_retry_matches_whatever_its_id_and_progress_token() -> None:
    approved = digest(merge(1, {"progressToken": "p1"}))
    assert digest(merge(2, {"progressToken": "p2"})) == approved
    assert digest(merge(3, None)) == approved
    assert digest([merge(4, {"progressToken": 9})]) != approved  # a batch is another message


def test_other_meta_needs_its_own_approval() -> None:
    approved = digest(merge(1, {"progressToken": "p1"}))
    for meta in ({"progressToken": "p1", "dryRun": False}, {"on_behalf_of": "admin"}):
        assert digest(merge(1, meta)) != approved, meta
    batch = [merge(1, None), merge(2, {"progressToken": "p"})]
    assert digest(batch) != digest([merge(1, None), merge(2, {"tenant": "other"})])
