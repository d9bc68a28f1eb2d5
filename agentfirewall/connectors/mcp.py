"""MCP over Streamable HTTP: JSON-RPC 2.0 bodies POSTed to a user-configured endpoint.

- ``tools/call`` → ``mcp.tools.<name>``: the tool name lower-cased, every character
  outside ``a-z 0-9 _ -`` mapped to ``_``; the original name is parameter ``tool`` and
  the tool's arguments are the other parameters (a tool named ``list`` becomes
  ``mcp.tools.list_tool``: it cannot pass for ``tools/list``). Rules and approvers read
  them; the traffic log keeps only their names (``agentfirewall.policy.record``). Risk
  comes from the words of the name: delete/drop/destroy/exec/execute/run/deploy/shell/
  remove/kill… high; create/write/update/send/merge/push… medium; read/get/list/search…
  low; anything else medium. The riskiest word wins (``read_and_delete`` is high).
- ``tools/list`` → ``mcp.tools.list`` (low); any other method → ``mcp.rpc.<method>`` with
  ``/`` as ``_`` (``resources/read`` → ``mcp.rpc.resources_read``, low), its params as
  parameters; a client's JSON-RPC response → ``mcp.rpc.response``; notifications are
  methods like any other. A method named ``batch`` or ``response`` is
  ``mcp.rpc.batch_method`` / ``mcp.rpc.response_method``: it cannot pass for a batch
  (whose ``members`` a grant reads) or a response.
- ``GET`` (open the server-sent event stream) → ``mcp.stream.open``; ``DELETE`` (end the
  session) → ``mcp.session.close``; both low.

**The endpoint.** When the connector's ``base_url`` has a path (``https://host/mcp``), that
path is the MCP endpoint: only a request at it or below it (``/mcp``, ``/mcp/``,
``/mcp/readonly``; segments compared as the upstream routes them, ``%6Dcp`` is ``mcp``,
case counts) is named as above. Any other path of the host (``DELETE /api/v1/repos/o/r``,
a POST elsewhere whatever its body) is no MCP operation: it is ``mcp.unknown.<method>``
(parameters ``method`` and ``path``), a family no wildcard grants. Without a path in
``base_url`` (or with domains only) every path of the host is the endpoint: give the path
when the host serves anything else.

**WebSocket.** A request asking for a WebSocket (an ``Upgrade`` header naming
``websocket``, in any case, on any line, beside another protocol) is refused: the gateway
relays an upgraded connection as bytes, so the JSON-RPC messages on it would reach the
server undecided. MCP clients use the Streamable HTTP transport instead (each message a
POST to the endpoint), which is decided message by message.

**Batches.** A JSON array of one message is that message. An array of two or more is
always ``mcp.rpc.batch``, whatever its members, with parameters ``actions`` (every
member's action, in order) and ``members`` (each member's action and parameters), and
the risk of its riskiest member. So a dangerous call can never ride behind a harmless
first member under the harmless name: a batch needs its own permission, and policies can
look inside it (``action_spec.parameters.actions contains mcp.tools.delete_repo``). Each
member is decided too (``ParsedAction.also``; the strictest outcome wins), so a rule that
allows ``mcp.rpc.*`` (and with it ``mcp.rpc.batch``) still lets no denied call through.
Batches of more than 100 members, empty batches and malformed members are refused.

Method names are compared case-insensitively and trimmed (``Tools/Call`` is a tool
call), and keys that are case variants of the protocol's (``METHOD``, ``Name``, a long
s U+017F folding to ``s``) are refused, since Go servers match keys case-insensitively.
Bodies must be complete JSON (1 MiB limit), UTF-8 (another ``charset`` is refused), not
compressed past what the gateway decodes, with no key twice in an object (servers
disagree on which of two ``name`` keys counts); anything else is refused.

**Over stdio** (``tf mcp wrap``, ``agentfirewall_proxy.mcpwrap``) every message is named by
the same functions (:func:`name_message`, :func:`name_batch`), so one rule or policy
decides a tool the same way whichever transport carries it; there the resource target is
the wrapped server's ``--server-name`` instead of the endpoint's host.
"""

from __future__ import annotations

import functools
import json
import re

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec, Risk
from agentfirewall.connectors.base import Connector, make_spec, request_method
from agentfirewall.connectors.bodies import parse_json
from agentfirewall.connectors.build import base_segments
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction, risk_rank
from agentfirewall.connectors.paths import split_path
from agentfirewall.errors import ConnectorError

__all__ = ["CONNECTOR", "McpConnector", "name_batch", "name_message", "tool_action", "tool_risk"]

MAX_BATCH = 100
_HIGH = frozenset(
    [
        "delete",
        "drop",
        "destroy",
        "exec",
        "execute",
        "run",
        "deploy",
        "shell",
        "remove",
        "rm",
        "kill",
        "terminate",
        "purge",
        "wipe",
        "truncate",
        "eval",
        "sudo",
        "format",
        "reset",
        "revoke",
    ]
)
_MEDIUM = frozenset(
    [
        "create",
        "write",
        "update",
        "send",
        "merge",
        "push",
        "post",
        "edit",
        "modify",
        "set",
        "add",
        "insert",
        "upload",
        "move",
        "rename",
        "commit",
        "publish",
        "comment",
        "invite",
        "approve",
        "close",
    ]
)
_LOW = frozenset(
    [
        "read",
        "get",
        "list",
        "search",
        "fetch",
        "query",
        "find",
        "describe",
        "show",
        "view",
        "lookup",
        "count",
    ]
)
_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_SEGMENT_RE = re.compile(r"[^a-z0-9_-]")

_Member = tuple[str, Risk, dict[str, JsonValue]]


def tool_risk(name: str) -> Risk:
    """Risk of a tool from the words of its name (snake, kebab, camel or dotted)."""
    words = {w.lower() for w in _WORD_RE.findall(name)}
    if words & _HIGH:
        return "high"
    if words & _MEDIUM:
        return "medium"
    return "low" if words & _LOW else "medium"


def _segment(name: str) -> str:
    segment = _SEGMENT_RE.sub("_", name.strip().lower())
    if not segment or len(segment) > 63:
        raise ConnectorError(
            f"cannot name `{name[:80]}`: empty or over 63 characters", connector="mcp"
        )
    return segment


def tool_action(name: str) -> str:
    """``mcp.tools.<name>`` for a tool name (a tool called ``list`` is ``list_tool``, so
    it can never pass for the ``tools/list`` method)."""
    segment = _segment(name)
    return f"mcp.tools.{'list_tool' if segment == 'list' else segment}"


class McpConnector(Connector):
    """JSON-RPC over Streamable HTTP; see the module docstring for the naming rules."""

    name = "mcp"
    description = "MCP servers over Streamable HTTP (JSON-RPC 2.0)"
    default_domains = ()
    body_limit = 1024 * 1024
    #: Which session the call acts in and how it is read: bound to an approval.
    bound_headers = ("mcp-session-id", "mcp-protocol-version")

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        method = request_method(req, self.name)
        if _asks_websocket(req):
            raise ConnectorError(_WEBSOCKET, connector=self.name)
        segments = split_path(req.path, connector=self.name)
        if base_url and not _at_endpoint(segments, base_url):
            return self.fallback(method, req.path)  # another API of the host: not MCP
        if method == "GET":
            return self._parsed("mcp.stream.open", "low", {}, req)
        if method == "DELETE":
            return self._parsed("mcp.session.close", "low", {}, req)
        if method != "POST":
            return self.fallback(method, req.path)
        if not req.body_complete:
            raise ConnectorError(
                f"JSON-RPC body larger than {self.body_limit} bytes", connector=self.name
            )
        ctype = (req.header("content-type") or "application/json").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise ConnectorError(
                f"JSON-RPC body with content type `{ctype[:80]}`", connector=self.name
            )
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding != "identity":  # (the gateway decodes gzip and deflate before this)
            raise ConnectorError(
                f"cannot read a `{encoding[:40]}`-encoded JSON-RPC body", connector=self.name
            )
        # a key twice (`"name"` for two tools) is refused: servers disagree on which counts
        message = parse_json(req.body, connector=self.name, unique=True)
        if isinstance(message, list):
            return self._batch(message, req)
        return self._parsed(*name_message(message), req)

    def _batch(self, messages: list[object], req: HttpRequest) -> ParsedAction:
        parsed = self._parsed(*name_batch(messages), req)
        if len(messages) < 2:
            return parsed
        # every member is decided as well (the strictest outcome wins): `mcp.rpc.*` allowing
        # batches never lets a denied tool call through inside one
        members = tuple(self._parsed(*name_message(m), req) for m in messages)
        return ParsedAction(parsed.spec, parsed.risk, parsed.connector, parsed.route, also=members)

    def _parsed(
        self, action: str, risk: Risk, params: dict[str, JsonValue], req: HttpRequest
    ) -> ParsedAction:
        spec = make_spec(
            action,
            provider=self.name,
            target=req.host or None,
            parameters=params,
            connector=self.name,
        )
        return ParsedAction(spec, risk, self.name, "jsonrpc")

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        """A single JSON-RPC request for ``mcp.tools.<name>`` or ``mcp.tools.list``, POSTed to
        `base_url` (else the resource target when it is a URL). Sessions are the caller's."""
        url = base_url or spec.resource.target or ""
        params = dict(spec.parameters)
        if spec.type == "mcp.tools.list":
            call: dict[str, JsonValue] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        elif spec.type.startswith("mcp.tools."):
            tool = params.pop("tool", spec.type.removeprefix("mcp.tools."))
            if not isinstance(tool, str) or tool_action(tool) != spec.type:
                raise ConnectorError(
                    f"parameter `tool` does not name `{spec.type}`", connector=self.name
                )
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": params},
            }
        else:
            raise ConnectorError(
                f"cannot execute `{spec.type}`: only tool calls and tools/list", connector=self.name
            )
        headers = (
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        )
        body = json.dumps(call, separators=(",", ":")).encode()
        return HttpRequest.from_url("POST", url, headers=headers, body=body)

    def actions(self) -> list[ActionInfo]:
        rows = [
            ("mcp.tools.<name>", "POST", "risk from the tool name (low, medium or high)", "medium"),
            ("mcp.tools.list", "POST", "List the server's tools", "low"),
            ("mcp.rpc.<method>", "POST", "Any other JSON-RPC method, `/` as `_`", "low"),
            ("mcp.rpc.response", "POST", "The client answering a server request", "low"),
            (
                "mcp.rpc.batch",
                "POST",
                "A JSON-RPC batch of 2+ messages; risk of the riskiest",
                "high",
            ),
            ("mcp.stream.open", "GET", "Open the server-sent event stream", "low"),
            ("mcp.session.close", "DELETE", "End the MCP session", "low"),
        ]
        return [ActionInfo(t, m, "(endpoint)", r, d) for t, m, d, r in rows]  # type: ignore[arg-type]


_WEBSOCKET = (
    "refused websocket upgrade: the gateway relays an upgraded connection unread, so it "
    "cannot decide the json-rpc messages on it: use the streamable http transport (each "
    "message a post to the endpoint)"
)


def _asks_websocket(req: HttpRequest) -> bool:
    """Whether an ``Upgrade`` header names WebSocket: in any case, on any line, in a list
    beside another protocol, with a version (``websocket/13``)."""
    for name, value in req.headers:
        if name.lower() == "upgrade":
            for token in value.split(","):
                if token.split("/", 1)[0].strip().lower() == "websocket":
                    return True
    return False


@functools.lru_cache(maxsize=256)
def _endpoint(base_url: str) -> tuple[str, ...]:
    return base_segments(base_url, "mcp")


def _at_endpoint(segments: tuple[str, ...], base_url: str) -> bool:
    """Whether a path's `segments` are at or below the path of `base_url` (always, when it
    has none): compared as sent once unreserved escapes are decoded, case included (a
    server matching ``/MCP`` too is read more strictly, never less)."""
    endpoint = _endpoint(base_url)
    return segments[: len(endpoint)] == endpoint


#: What ``mcp.rpc.<segment>`` names other than a method: a method of that name is named
#: ``<segment>_method`` (as a tool called ``list`` is ``list_tool``).
_RESERVED = frozenset({"batch", "response"})
_MESSAGE_KEYS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
_CALL_KEYS = frozenset({"name", "arguments"})


def _refuse_case_variants(data: dict[str, object], keys: frozenset[str]) -> None:
    """Some servers (Go's encoding/json) match keys case-insensitively, with Unicode
    folding: ``{"method": "tools/list", "METHOD": "tools/call"}`` is a tool call there.
    A key that folds to a protocol key without being it is refused."""
    for key in data:
        if key not in keys and key.casefold() in keys:
            raise ConnectorError(f"JSON-RPC key `{key[:40]}` is a case variant", connector="mcp")


def name_batch(messages: list[object]) -> _Member:
    """A JSON-RPC batch as one (action, risk, parameters): see the module docstring."""
    if not messages or len(messages) > MAX_BATCH:
        raise ConnectorError(f"JSON-RPC batch of {len(messages)} messages", connector="mcp")
    members = [name_message(m) for m in messages]
    if len(members) == 1:
        return members[0]
    risk = max((m[1] for m in members), key=risk_rank)
    params: dict[str, JsonValue] = {
        "actions": [m[0] for m in members],
        "members": [{"action": m[0], "parameters": m[2]} for m in members],
    }
    return "mcp.rpc.batch", risk, params


def name_message(message: object) -> _Member:
    """One JSON-RPC message as (action, risk, parameters); ConnectorError when malformed."""
    if isinstance(message, dict):
        _refuse_case_variants(message, _MESSAGE_KEYS)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise ConnectorError("not a JSON-RPC 2.0 message", connector="mcp")
    if "method" not in message:
        if "result" in message or "error" in message:
            return "mcp.rpc.response", "low", {}
        raise ConnectorError("JSON-RPC message without a method", connector="mcp")
    method = message["method"]
    params = message.get("params")
    if not isinstance(method, str) or not (params is None or isinstance(params, dict)):
        raise ConnectorError(
            "JSON-RPC method must be a string and params an object", connector="mcp"
        )
    params = {k: v for k, v in (params or {}).items() if k != "_meta"}
    key = method.strip().lower()
    if key == "tools/call":
        return _tool_call(params)
    if key == "tools/list":
        return "mcp.tools.list", "low", {}
    segment = _segment(key.replace("/", "_"))
    if segment in _RESERVED:
        segment += "_method"
    return "mcp.rpc." + segment, "low", params


def _tool_call(params: dict[str, JsonValue]) -> _Member:
    _refuse_case_variants(params, _CALL_KEYS)  # type: ignore[arg-type]
    name, arguments = params.get("name"), params.get("arguments")
    if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
        raise ConnectorError(
            "tools/call needs a string `name` and object `arguments`", connector="mcp"
        )
    return tool_action(name), tool_risk(name), {**(arguments or {}), "tool": name}


CONNECTOR = McpConnector()
CONNECTOR.notes = __doc__ or ""
