"""The table-driven connector: a route table plus a few settings make a connector.

Every REST-style connector (github, openai, anthropic, stripe, slack, sendgrid) is an
instance of :class:`RouteConnector`; only its data differs.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec, Risk
from agentfirewall.connectors import build
from agentfirewall.connectors.base import Connector, make_spec, request_method
from agentfirewall.connectors.bodies import (
    FormData,
    multipart_boundary,
    parse_form,
    parse_multipart,
)
from agentfirewall.connectors.build import BuildAlias
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction, risk_rank
from agentfirewall.connectors.paths import split_path
from agentfirewall.connectors.routes import Match, Route, RouteTable, Variant, template_vars
from agentfirewall.connectors.scan import read_json_object
from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import printable

__all__ = ["BuildAlias", "Fields", "RouteConnector"]

_INT_RE = re.compile(r"-?[0-9]{1,18}")
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_QUERY: FormData = {}  # what a body-only field reads of the query (never written)
_FIELD_KINDS = frozenset({"int", "body"})
Fields = Mapping[str, object]


@functools.cache
def format_vars(template: str) -> tuple[str, ...]:
    """Field names of a ``str.format`` template."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What parsing a route needs, worked out once: which path variables become
    parameters, which fields to read (name, is an int, from the body only), and how to
    name the resource (a template over path variables, None, or ``"dynamic"`` when body
    fields may decide)."""

    path_params: tuple[str, ...]
    fields: tuple[tuple[str, bool, bool], ...]
    account: str | None
    target: str | None


_DYNAMIC = "dynamic"


class RouteConnector(Connector):
    """A connector whose behaviour is its route table and settings."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        routes: tuple[Route, ...],
        default_domains: tuple[str, ...] = (),
        base_url: str | None = None,
        body_format: Literal["json", "form", "auto"] = "json",
        body_limit: int = 64 * 1024,
        truncated: Literal["error", "partial"] = "partial",
        accounts: tuple[str, ...] = (),
        targets: tuple[str, ...] = (),
        path_prefixes: tuple[str, ...] = (),
        param_aliases: Mapping[str, tuple[str, ...]] | None = None,
        build_aliases: Mapping[str, BuildAlias] | None = None,
        build_headers: tuple[tuple[str, str], ...] = (),
        auth_scheme: str = "Bearer",
        auth_header: str = "Authorization",
        auth_header_names: tuple[str, ...] = ("authorization",),
        account_headers: tuple[str, ...] = (),
        fallback_risks: tuple[tuple[str, Risk], ...] = (),
    ) -> None:
        self.name = name
        self.description = description
        self.default_domains = default_domains
        self.base_url = base_url
        self.body_format = body_format
        self.body_limit = body_limit
        self.truncated = truncated
        self.accounts = accounts
        self.targets = targets
        self.path_prefixes = tuple(split_path(p) for p in path_prefixes)
        self.param_aliases = dict(param_aliases or {})
        self.build_aliases = dict(build_aliases or {})
        self.build_headers = build_headers
        self.auth_scheme = auth_scheme
        self.auth_header = auth_header
        self.auth_header_names = auth_header_names
        self.fallback_risks = fallback_risks
        #: Request headers naming the account acted in (lower-case; ``header_account``)
        self.account_headers = account_headers
        self.table = RouteTable(routes, connector=name)
        self.by_action: dict[str, list[tuple[Route, Variant | None]]] = {}
        for route in routes:
            self.by_action.setdefault(route.action, []).append((route, None))
            for variant in route.variants:
                self.by_action.setdefault(variant.action, []).append((route, variant))
        self.resource_vars = frozenset(
            v for template in (*accounts, *targets) for v in format_vars(template)
        )
        self.custom_body_parameters = (
            type(self).body_parameters is not RouteConnector.body_parameters
        )
        self.plans = {id(route): self._plan(route) for route in routes}
        #: route template -> where its requests carry text base64-encoded (``encoded``;
        #: a template's other methods carry none of those fields: decoding them costs only)
        self.encoded_at: dict[str, tuple[str, ...]] = {
            route.path: tuple(f"{where}.{field}" for field in route.encoded
                              for where in ("body", "form"))
            for route in routes if route.encoded
        }  # fmt: skip
        #: action -> where its answers carry text base64-encoded (every route naming it)
        self.response_encoded_by: dict[str, tuple[str, ...]] = {}
        for action, named in self.by_action.items():
            found = [f"body.{field}" for route, _ in named for field in route.response_encoded]
            if found:
                self.response_encoded_by[action] = tuple(dict.fromkeys(found))

    def _plan(self, route: Route) -> _Plan:
        path_vars = set(template_vars(route.path))
        fields = tuple(_field_spec(param, route) for param in route.params)
        maybe = path_vars | {name for name, _, _ in fields}
        dynamic = self.custom_body_parameters

        def choose(override: str | None, templates: tuple[str, ...]) -> str | None:
            for template in (override,) if override is not None else templates:
                names = set(format_vars(template))
                if dynamic or (not names <= path_vars and names <= maybe):
                    return _DYNAMIC
                if names <= path_vars:
                    return template
            return None

        account = _DYNAMIC if self.account_headers else choose(route.account, self.accounts)
        return _Plan(
            path_params=tuple(v for v in template_vars(route.path) if v not in self.resource_vars),
            fields=fields,
            account=account,
            target=choose(route.target, self.targets),
        )

    # -- parsing ---------------------------------------------------------------------

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        method = request_method(req, self.name)
        segments = self._strip_prefix(split_path(req.path, connector=self.name), base_url)
        match = self.table.match(method, segments)
        if match is None:
            return self._fallback(method, "/" + "/".join(segments))
        return self._parsed(req, method, match)

    def _fallback(self, method: str, path: str) -> ParsedAction:
        parsed = self.fallback(method, path)
        lowered = path.lower()
        for prefix, risk in self.fallback_risks:
            if lowered.startswith(prefix) and risk_rank(risk) > risk_rank(parsed.risk):
                return ParsedAction(parsed.spec, risk, self.name, parsed.route)
        return parsed

    def _strip_prefix(self, segments: tuple[str, ...], base_url: str | None) -> tuple[str, ...]:
        prefixes = self.path_prefixes
        if base_url:
            prefixes = (build.base_segments(base_url, self.name), *prefixes)
        if not segments:
            return segments
        first = segments[0].lower()
        for prefix in prefixes:
            if prefix and prefix[0].lower() == first and _starts_with(segments, prefix):
                return segments[len(prefix) :]
        return segments

    def _parsed(self, req: HttpRequest, method: str, match: Match) -> ParsedAction:
        route = match.route
        plan = self.plans[id(route)]
        path_values = match.values
        params: dict[str, JsonValue] = {n: path_values[n] for n in plan.path_params}
        hints: dict[str, JsonValue] = {"path_relaxed": True} if match.relaxed else {}
        action, risk = route.action, route.risk
        if route.reads_body:
            body, truncated = self._body(req, method, route)
            query = parse_form(req.query, connector=self.name) if req.query else {}
            for name, is_int, body_only in plan.fields:
                where = _NO_QUERY if body_only else query
                if name in body or (where and name in where):
                    value = self._field(name, is_int, body, where)
                    if value is not None:
                        params[name] = value
            if route.variants:
                action, risk = self._variant(route, body, query)
            if self.custom_body_parameters:
                params.update(self.body_parameters(route, body))
            if truncated:
                hints["body_truncated"] = True
        account, target = plan.account, plan.target
        if account is not None:
            account = (
                account.format_map(path_values)
                if account is not _DYNAMIC
                else self._resource(route.account, self.accounts, match, params, req)
            )
        if target is not None:
            target = (
                target.format_map(path_values)
                if target is not _DYNAMIC
                else self._resource(route.target, self.targets, match, params, None)
            )
        spec = make_spec(
            action,
            provider=self.name,
            account=account,
            target=target,
            parameters=params,
            risk_hints=hints,
            connector=self.name,
            checked=True,
        )
        return ParsedAction(spec, risk, self.name, route.path)

    def encoded(self, parsed: ParsedAction) -> tuple[str, ...]:
        """The body fields the matched route names in `encoded` (a JSON body's or a form's)."""
        return self.encoded_at.get(parsed.route, ())

    def encoded_parameters(self, action: str) -> tuple[str, ...]:
        """The parameters the built request's body carries encoded: the fields of every route
        naming `action` (a build alias's: those it does not base64-encode itself)."""
        alias = self.build_aliases.get(action)
        fields = {f for route, _ in self.by_action.get(alias.action if alias else action, ())
                  for f in route.encoded}  # fmt: skip
        if alias is not None:  # (renamed with its kind: ``raw:mime``)
            renamed = {new: old for old, new in alias.renames.items()}
            named = [(renamed.get(name, name), kind) for name, _, kind in
                     (f.partition(":") for f in fields)]  # fmt: skip
            fields = {f"{name}:{kind}" if kind else name for name, kind in named
                      if name not in alias.base64}  # fmt: skip
        return tuple(f"parameters.{field}" for field in sorted(fields))

    def response_encoded(self, action: str) -> tuple[str, ...]:
        """The JSON answer's fields the routes naming `action` name in `response_encoded`."""
        return self.response_encoded_by.get(action, ())

    def body_parameters(self, route: Route, body: Fields) -> dict[str, JsonValue]:
        """Parameters too nested for a route's field list; connectors may override."""
        return {}

    def _body(self, req: HttpRequest, method: str, route: Route) -> tuple[Fields, bool]:
        if method in _NO_BODY_METHODS or (not req.body and req.body_complete):
            return {}, False
        if not req.body_complete and (self.truncated == "error" or route.variants):
            raise ConnectorError(
                f"request body larger than {self.body_limit} bytes: cannot name the action",
                connector=self.name,
            )
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise ConnectorError(
                f"cannot read a `{encoding[:40]}`-encoded body", connector=self.name
            )
        ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype == "multipart/form-data":
            boundary = multipart_boundary(req.header("content-type") or "", connector=self.name)
            fields = parse_multipart(
                req.body, boundary, complete=req.body_complete, connector=self.name
            )
            return fields, not req.body_complete
        if ctype.startswith("multipart/"):
            raise ConnectorError(f"cannot read a `{ctype}` body here", connector=self.name)
        fmt = self.body_format
        if fmt == "auto":
            fmt = "json" if ctype == "application/json" or ctype.endswith("+json") else "form"
        if fmt == "form":
            return parse_form(req.body, complete=req.body_complete, connector=self.name), (
                not req.body_complete
            )
        keep = None if self.custom_body_parameters else self.body_fields(route)
        data = read_json_object(
            req.body, keep=keep, complete=req.body_complete, connector=self.name
        )
        if not req.body_complete:
            return (data if isinstance(data, dict) else {}), True
        if data is not None and not isinstance(data, dict) and route.variants:
            raise ConnectorError(
                "JSON body is not an object: cannot name the action", connector=self.name
            )
        return (data if isinstance(data, dict) else {}), False

    def body_fields(self, route: Route) -> frozenset[str]:
        """The body fields `route` reads (its parameters and variant fields)."""
        names = [n.partition(":")[0] for n in route.params]
        names.extend(v.field for v in route.variants)
        return frozenset(names)

    def _field(self, name: str, is_int: bool, body: Fields, query: FormData) -> JsonValue:
        value = _single(name, body.get(name), self.name)
        from_query = _single(name, query.get(name), self.name)
        if value is None:
            value = from_query
        elif from_query is not None and from_query != value:
            raise ConnectorError(f"conflicting `{name}` in query and body", connector=self.name)
        if value is not None and is_int:
            value = _as_int(name, value, self.name)
        return value

    def _variant(self, route: Route, body: Fields, query: FormData) -> tuple[str, Risk]:
        if not route.variants:
            return route.action, route.risk
        flat = {v.field: self._field(v.field, False, body, query) for v in route.variants}
        for variant in route.variants:
            if variant.matches(flat):
                return variant.action, variant.risk
        return route.action, route.risk

    def _resource(
        self,
        override: str | None,
        templates: tuple[str, ...],
        match: Match,
        params: Mapping[str, object],
        req: HttpRequest | None,
    ) -> str | None:
        """A resource field that body fields or a header may decide."""
        if req is not None and self.account_headers:
            account = self._header_account(req)
            if account:
                return account
        values = {**match.values, **params}
        for template in (override,) if override is not None else templates:
            names = format_vars(template)
            found = [values.get(n) for n in names]
            if names and None not in found:
                if isinstance(found[0], str) and template == "{" + names[0] + "}":
                    return found[0]
                return template.format_map(
                    {n: _resource_text(v) for n, v in zip(names, found, strict=True)}
                )
        return None

    def header_account(self, name: str, value: str) -> str:
        """The account that account header `name` (lower-case) names by `value` (stripped,
        not empty); connectors may override (Stripe-Context's path of related accounts)."""
        return value

    def _header_account(self, req: HttpRequest) -> str | None:
        """The account the :attr:`account_headers` name, else None. Every line of every
        one of them must name the same account: an upstream reads one of several lines
        (the first, the last, or all joined) or prefers one header (Stripe-Context to
        Stripe-Account), so two accounts are refused, and so are a list in one line
        (``acct_1, acct_2``: two lines joined) and a name written with ``_`` for ``-``
        (``Stripe_Account``: some servers read it as that header, others drop it)."""
        named: dict[str, str] = {}  # account ("": none) -> the line that named it
        for name, value in req.headers:
            key = name.lower()
            if key not in self.account_headers:
                if "_" in key and key.replace("_", "-") in self.account_headers:
                    raise ConnectorError(
                        f"refused header `{printable(name, 100)}`: write its name with `-`",
                        connector=self.name,
                    )
                continue
            value = value.strip()
            if "," in value:
                raise ConnectorError(
                    f"refused `{printable(name, 100)}: {printable(value, 100)}`: names a list"
                    " of accounts, send one",
                    connector=self.name,
                )
            named.setdefault(self.header_account(key, value) if value else "", f"{name}: {value}")
        if len(named) > 1:
            shown = ", ".join(f"`{printable(line, 100)}`" for line in named.values())
            raise ConnectorError(
                f"refused headers naming different accounts ({shown}): send one account",
                connector=self.name,
            )
        return next(iter(named), None) or None

    # -- building, listing, credentials ---------------------------------------------

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        return build.build_request(self, spec, base_url=base_url)

    def actions(self) -> list[ActionInfo]:
        """One row per action, path and condition; methods serving the same action are
        merged (two variants naming one action, ``visibility: public`` and
        ``private: false``, are two rows)."""
        rows: dict[tuple[str, str, str], ActionInfo] = {}
        for route in self.table.routes:
            if not route.listed:
                continue
            named = [
                (route.action, route.risk, None),
                *((v.action, v.risk, v) for v in route.variants),
            ]
            for action, risk, variant in named:
                what, condition = route.description, ""
                if variant is not None:
                    condition = _variant_text(variant)
                    what = f"{variant.description or what} ({condition})"
                key = (action, route.path, condition)
                old = rows.get(key)
                if old is None:
                    rows[key] = ActionInfo(action, route.method, route.path, risk, what)
                elif route.method not in old.method.split(", "):
                    methods = f"{old.method}, {route.method}"
                    rows[key] = ActionInfo(action, methods, route.path, risk, old.description)
        return list(rows.values())


def _variant_text(variant: Variant) -> str:
    if variant.values:
        return f"field `{variant.field}` is `{variant.values[0]}`"
    if variant.prefix:
        return f"field `{variant.field}` starts with `{variant.prefix}`"
    if variant.pattern:
        return f"field `{variant.field}` matches `{variant.pattern}`"
    return f"field `{variant.field}` is present"


def _field_spec(param: str, route: Route) -> tuple[str, bool, bool]:
    """``"amount:int"`` -> ``("amount", True, False)``: a field of `route.params` with its
    kinds, ``int`` (converted to an int) and ``body`` (read from the body only: the
    upstream ignores it in the query, so a query value names nothing)."""
    name, *kinds = param.split(":")
    unknown = set(kinds) - _FIELD_KINDS
    if unknown:
        raise ValueError(
            f"unknown field kind `{sorted(unknown)[0]}` in `{param}` of route "
            f"{route.method} {route.path}: expected `int` or `body`"
        )
    return name, "int" in kinds, "body" in kinds


def _single(name: str, value: object, connector: str) -> JsonValue:
    """A form field's one value (duplicates must agree), or a JSON value as it is."""
    if isinstance(value, tuple):  # only forms and queries give tuples
        if len(set(value)) > 1:
            raise ConnectorError(f"duplicate `{name}` with different values", connector=connector)
        return str(value[0])
    return value  # type: ignore[return-value]


def _as_int(name: str, value: JsonValue, connector: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise ConnectorError(f"`{name}` is not an integer", connector=connector)


def _resource_text(value: object) -> str:
    """A resource field from a value: lists (several recipients) are comma-joined."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _starts_with(segments: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    """Case-insensitive segment-wise prefix test."""
    return len(segments) >= len(prefix) and all(
        a.lower() == b.lower() for a, b in zip(segments, prefix, strict=False)
    )
