"""Building the upstream request for an action, from the same table that parses it.

Used by the server to execute SDK Mode A actions. Path variables come from the resource
(``target: "owner/repo"``, ``account``) and the parameters (with the connector's aliases,
e.g. ``pr_number`` for ``pull_number``); the remaining parameters become the query (GET)
or the body (JSON, or a form for form connectors). Every built request is parsed back and
must name the action it was built for: parameters can never turn a harmless action into
another one (``github.pr.update`` with ``state: closed`` is refused, not sent).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlencode, urlsplit

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors.model import HttpRequest, ParsedAction
from agentfirewall.connectors.paths import split_path
from agentfirewall.connectors.routes import Route, Variant
from agentfirewall.errors import ConnectorError

__all__ = ["BuildAlias", "Buildable", "base_segments", "build_request", "encode_form"]

_VAR_RE = re.compile(r"\{([a-z_]+)(:int|\+)?\}")
_QUERY_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class BuildAlias:
    """Another name an action may be executed under (the seed's v1 SDK names).

    `action` is the catalogue action it builds; `renames` maps the alias's parameter
    names to the catalogue's; `base64` names parameters to base64-encode (UTF-8 text).
    """

    action: str
    renames: Mapping[str, str] = field(default_factory=dict)
    base64: tuple[str, ...] = ()


class Buildable(Protocol):
    """What building reads from a connector: a :class:`~.table.RouteConnector` (which
    sits above this module and calls it, so it is named here by its fields)."""

    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def body_format(self) -> str: ...
    @property
    def accounts(self) -> tuple[str, ...]: ...
    @property
    def targets(self) -> tuple[str, ...]: ...
    @property
    def resource_vars(self) -> frozenset[str]: ...
    @property
    def build_headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def param_aliases(self) -> Mapping[str, tuple[str, ...]]: ...
    @property
    def build_aliases(self) -> Mapping[str, BuildAlias]: ...
    @property
    def by_action(self) -> Mapping[str, Sequence[tuple[Route, Variant | None]]]: ...
    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction: ...


def base_segments(base_url: str, connector: str) -> tuple[str, ...]:
    """The path segments of a base URL (``https://ghe.example/api/v3`` → api, v3)."""
    return split_path(urlsplit(base_url).path or "/", connector=connector)


def build_request(conn: Buildable, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
    """The request that performs `spec` through `conn`, or ConnectorError naming what is missing."""
    alias = conn.build_aliases.get(spec.type)
    action = alias.action if alias else spec.type
    params: dict[str, JsonValue] = dict(spec.parameters)
    if alias is not None:
        for old, new in alias.renames.items():
            if old in params and new not in params:
                params[new] = params.pop(old)
        for name in alias.base64:
            if isinstance(params.get(name), str):
                params[name] = base64.b64encode(str(params[name]).encode()).decode("ascii")
    candidates = conn.by_action.get(action)
    if not candidates:
        raise ConnectorError(
            f"`{spec.type}` is not an action of the {conn.name} connector", connector=conn.name
        )
    base = (base_url or conn.base_url or "").rstrip("/")
    if not base:
        raise ConnectorError(f"no base url to execute `{spec.type}`", connector=conn.name)
    error: ConnectorError | None = None
    for route, variant in candidates:
        try:
            request = _build_one(conn, spec, route, variant, dict(params), base)
        except ConnectorError as exc:
            error = error or exc
            continue
        allowed = {a for a, _ in route.actions()} if alias else {action}
        _verify(conn, request, base, allowed, spec.type)
        return request
    assert error is not None
    raise error


def _build_one(
    conn: Buildable,
    spec: ActionSpec,
    route: Route,
    variant: Variant | None,
    params: dict[str, JsonValue],
    base: str,
) -> HttpRequest:
    values = _resource_values(conn, route, spec)
    for name, template in route.derive:
        sources = [m for m in re.findall(r"\{(\w+)\}", template)]
        if name not in params and all(s in params for s in sources):
            params[name] = template.format_map(params)
            for source in sources:
                params.pop(source, None)
    path = _VAR_RE.sub(lambda m: _path_value(conn, spec, m, values, params), route.path)
    declared = {p.partition(":")[0] for p in route.params}
    for name in conn.resource_vars:
        if name in declared and name in values:
            params.setdefault(name, values[name])
        elif name not in declared:
            params.pop(name, None)
    if variant is not None and variant.values:
        params.setdefault(variant.field, variant.values[0])
    headers = list(conn.build_headers)
    body = b""
    query = ""
    if route.method in _QUERY_METHODS:
        query = encode_form(params)
    elif params:
        if conn.body_format == "form":
            body = encode_form(params).encode("ascii")
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        else:
            body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode()
            headers.append(("Content-Type", "application/json"))
    url = base + path + (f"?{query}" if query else "")
    return HttpRequest.from_url(route.method, url, headers=tuple(headers), body=body)


def _resource_values(conn: Buildable, route: Route, spec: ActionSpec) -> dict[str, str]:
    values: dict[str, str] = {}
    pairs = (
        (spec.resource.target, (route.target,) if route.target else conn.targets),
        (spec.resource.account, (route.account,) if route.account else conn.accounts),
    )
    for given, templates in pairs:
        for template in templates if given else ():
            found = _template_regex(template).fullmatch(given or "")
            if found:
                values.update({k: v for k, v in found.groupdict().items() if k not in values})
    return values


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


def _path_value(
    conn: Buildable,
    spec: ActionSpec,
    match: re.Match[str],
    values: dict[str, str],
    params: dict[str, JsonValue],
) -> str:
    name, kind = match.group(1), match.group(2)
    value: JsonValue = values.get(name)
    if value is None:
        for key in (name, *conn.param_aliases.get(name, ())):
            if params.get(key) is not None:
                value = params.pop(key)
                break
    params.pop(name, None)
    if value is None or value == "" or isinstance(value, bool | dict | list | float):
        raise ConnectorError(f"missing parameter `{name}` for `{spec.type}`", connector=conn.name)
    text = str(value)
    if kind == ":int" and not text.isdigit():
        raise ConnectorError(f"parameter `{name}` must be an integer", connector=conn.name)
    segments = text.split("/") if kind == "+" else [text]
    if any(s in ("", ".", "..") for s in segments):
        raise ConnectorError(f"parameter `{name}` is not a valid path part", connector=conn.name)
    return "/".join(quote(s, safe="") for s in segments)


def _verify(
    conn: Buildable, request: HttpRequest, base: str, allowed: set[str], asked: str
) -> None:
    parsed = conn.parse(request, base_url=base)
    if parsed.action_type not in allowed:
        raise ConnectorError(
            f"parameters make this `{parsed.action_type}`, not `{asked}`", connector=conn.name
        )


def encode_form(params: dict[str, JsonValue]) -> str:
    """Stripe-style form encoding: nested objects as ``a[b]=…``, lists as ``a[0]=…``."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(key, value, pairs)
    return urlencode(pairs)


def _flatten(key: str, value: JsonValue, pairs: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for sub, item in value.items():
            _flatten(f"{key}[{sub}]", item, pairs)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(f"{key}[{index}]", item, pairs)
    elif isinstance(value, bool):
        pairs.append((key, "true" if value else "false"))
    else:
        pairs.append((key, "" if value is None else str(value)))
