"""The risk `tf policy explain` decides an action with: the one the gateway gives the request
(``context.risk``), worked out by the connectors' own code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfirewall_proxy.cli.output import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec, Risk
    from agentfirewall.connectors import Connector, ParsedAction

__all__ = ["RouteRisk", "route_risk"]


@dataclass(frozen=True, slots=True)
class RouteRisk:
    """The risk the gateway decides an action with, and what its connector reads it from."""

    risk: Risk
    source: str


def route_risk(kind: str, spec: ActionSpec) -> RouteRisk | None:
    """The risk the gateway decides `spec` with (``context.risk``: ``ParsedAction.risk``,
    what the connector of type `kind` gives the request), by the connector's own code: the
    route its catalogue lists under the name (or an alias of it), an MCP message's from
    the names in it, a request no route names from its method and path. None: no connector
    of that type (an SDK provider, which the gateway never sees)."""
    from agentfirewall.connectors import ConnectorError, action_aliases, get_connector

    try:
        connector = get_connector(kind)
    except ConnectorError:
        return None
    names = (spec.type, *action_aliases(spec.type))
    listed = next((row for row in connector.actions() if row.type in names), None)
    if listed is not None:
        return RouteRisk(listed.risk, f"the route `{listed.type}` of the `{kind}` catalogue")
    unknown = _unknown_risk(connector, spec)
    return _mcp_risk(spec) if unknown is None and kind == "mcp" else unknown


def _mcp_risk(spec: ActionSpec) -> RouteRisk | None:
    """An MCP action's risk as the gateway names the JSON-RPC message (``name_message``):
    a tool call's from the tool's name (``--param tool=NAME`` as its server spells it, so
    `deleteRepo` reads as `delete` + `repo`; else the name in the action), any other
    method's from the method (``mcp.rpc.<method>``)."""
    from agentfirewall.connectors import ConnectorError
    from agentfirewall.connectors.mcp import name_message

    family, _, name = spec.type.removeprefix("mcp.").partition(".")
    message: dict[str, object]
    if family == "tools":
        tool = spec.parameters.get("tool", name)
        message = {"method": "tools/call", "params": {"name": tool, "arguments": {}}}
        source = f"the tool `{tool}`"
        if "tool" not in spec.parameters:  # lower-cased: a camelCase name's words are lost
            source += " as the action spells it; --param tool=NAME for its server's spelling"
    elif family == "rpc":
        message, source = {"method": name}, f"the JSON-RPC method `{name}`"
    else:
        return None
    try:
        action, risk, _ = name_message({"jsonrpc": "2.0", "id": 1, **message})
    except ConnectorError:
        return None
    if action != spec.type:
        raise CliError(f"the gateway names a call of {source}: `{action}`, not `{spec.type}`",
                       hint="give the tool's name as its server spells it in --param tool, "
                       "or leave --param tool out", code=EXIT_USAGE)  # fmt: skip
    return RouteRisk(risk, source)


def _unknown_risk(connector: Connector, spec: ActionSpec) -> RouteRisk | None:
    """The risk of a request no route names (``<type>.unknown.<method>``): the one the
    connector gives `--param path=PATH` (parsed as the gateway parses it), else the
    riskiest it gives any such path (its method's, or a path family's it rates higher:
    Slack's admin API)."""
    from agentfirewall.connectors.model import risk_rank
    from agentfirewall.policy.globs import RESERVED_SEGMENT

    parts = spec.type.split(".")
    if len(parts) != 3 or parts[1] != RESERVED_SEGMENT:
        return None
    method, path = parts[2].upper(), spec.parameters.get("path")
    parsed = _parse(connector, method, path) if isinstance(path, str) else None
    if parsed is not None and parsed.spec.type == spec.type:
        return RouteRisk(parsed.risk, f"`{method} {path}`, which no `{parts[0]}` route names")
    risks = [connector.fallback(method, "/").risk,
             *(risk for _, risk in getattr(connector, "fallback_risks", ()))]  # fmt: skip
    return RouteRisk(max(risks, key=risk_rank), f"the riskiest `{method}` no `{parts[0]}` "
                     "route names; --param path=PATH gives that path's")  # fmt: skip


def _parse(connector: Connector, method: str, path: str) -> ParsedAction | None:
    """The gateway's reading of `method` `path` on the connector's own host (None: it
    refuses the request)."""
    from agentfirewall.connectors import ConnectorError, HttpRequest

    host = next((d for d in connector.default_domains if "*" not in d), "localhost")
    try:
        return connector.parse(HttpRequest(method, "https", host, path=path))
    except ConnectorError:
        return None
