"""JSON-RPC 2.0 building blocks for the relay: ids, error answers, progress, serialising,
``tools/list`` filtering.

Errors the relay answers itself (the client shows them to the model)::

    -32700  parse error           a line that is not JSON
    -32600  invalid request       not JSON-RPC 2.0, or over the size limit (a message too
                                  large to read: the id from its first bytes, `read_head`)
    -32001  denied                by a rule, a policy or the kill switch (``data``: action,
                                  rule, reason, request id; ``kill_switch: true``); an
                                  answer a response rule cut (``error: response_blocked``)
    -32002  approval not granted  denied by a human, timed out, not recordable, or used
                                  already (``error: approval_used``)
    -32003  server unavailable    the wrapped server exited (its exit code in ``data``)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentfirewall.connectors.bodies import parse_json_prefix
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError

__all__ = [
    "APPROVAL",
    "DENIED",
    "INVALID",
    "PARSE_ERROR",
    "UNAVAILABLE",
    "cancelled",
    "dumps",
    "error",
    "error_message",
    "filter_tools",
    "id_key",
    "progress",
    "progress_token",
    "read_head",
    "refusable",
    "request_id",
    "rule_of",
]

PARSE_ERROR = -32700
INVALID = -32600
DENIED = -32001
APPROVAL = -32002
UNAVAILABLE = -32003

_Id = str | int | float | None


def dumps(message: object) -> bytes:
    """One line of JSON (compact, UTF-8) with its newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def id_key(value: object) -> str:
    """A request id as a dict key: ``1`` and ``"1"`` are different requests."""
    return json.dumps(value, separators=(",", ":"))


def error(request_id: _Id, code: int, message: str, data: dict[str, Any] | None = None) -> bytes:
    return dumps(error_message(request_id, code, message, data))


def error_message(
    request_id: _Id, code: int, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An error answer as a message (:func:`error` as a line)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def cancelled(request_id: _Id, reason: str) -> bytes:
    """A ``notifications/cancelled`` for a request the relay forwarded, then refused."""
    params = {"requestId": request_id, "reason": reason}
    return dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})


def progress(token: str | int, count: int, message: str) -> bytes:
    """A ``notifications/progress`` for the client's own progress token (count increases)."""
    params = {"progressToken": token, "progress": count, "message": message}
    return dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})


def rule_of(decision: Decision | None) -> str | None:
    """The rule that decided (as the gateway's 403 body names it)."""
    if decision is None:
        return None
    names = decision.matched_rules or decision.matched_policies
    if names:
        return names[0]
    return "default_deny" if decision.default_applied else None


def request_id(message: object) -> tuple[bool, _Id]:
    """(whether `message` is a request expecting an answer, its id)."""
    if isinstance(message, dict) and "method" in message and "id" in message:
        value = message["id"]
        if value is None or isinstance(value, str | int | float):
            return True, value
    return False, None


def refusable(message: object) -> tuple[bool, _Id]:
    """(whether a refusal of `message` gets an answer, the id): any message with an id that
    is not itself an answer, even one too malformed to name."""
    if isinstance(message, dict) and "id" in message and not {"result", "error"} & message.keys():
        value = message["id"]
        if value is None or isinstance(value, str | int | float):
            return True, value
    return False, None


def read_head(data: bytes) -> dict[str, object]:
    """The top-level members of a message that lie wholly in its first bytes `data` (one
    too large to read: its ``id`` and ``method`` come first as SDKs write it); empty when
    they tell nothing."""
    try:
        return parse_json_prefix(data, connector="mcp")
    except AgentFirewallError:
        return {}


def progress_token(message: object) -> str | int | None:
    if not isinstance(message, dict):
        return None
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


def filter_tools(result: dict[str, Any], visible: Callable[[str], bool]) -> bool:
    """Keep in a ``tools/list`` result the tools named and `visible`; True when any went."""
    tools = result.get("tools")
    if not isinstance(tools, list):
        return False
    kept = [
        t
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("name"), str) and visible(t["name"])
    ]
    result["tools"] = kept
    return len(kept) != len(tools)
