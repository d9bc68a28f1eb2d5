"""What every connector offers, and the pieces all of them share.

A connector turns an :class:`HttpRequest` into a :class:`ParsedAction` (``parse``) and an
action back into a request (``build_request``), lists its actions for the catalogue and
says how to carry its credential (``auth_headers`` / ``auth_header_names``) and which request
headers an approval binds with the request (``binds_header``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, JsonValue

from agentfirewall.actions import ActionSpec, Resource, Risk, is_action_type
from agentfirewall.connectors.bodies import parse_form, refuse_foreign_charset
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.scan import read_json_object
from agentfirewall.errors import ConnectorError
from agentfirewall.policy.globs import RESERVED_SEGMENT

__all__ = ["UNBOUND_HEADERS", "Connector", "fallback_risk", "make_spec", "request_method"]

_METHOD_RE = re.compile(r"[A-Za-z]{1,20}")
_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
_OVERRIDE_QUERY_RE = re.compile(r"(?:^|&)_method(?:=|&|$)", re.IGNORECASE)
_MULTIPART_OVERRIDE_RE = re.compile(rb'(?i)\bname\s*=\s*"?(?:_|%5f)method\b')
_LOW_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PLAIN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_AUTH_SCHEMES = {"bearer": "Bearer", "token": "token"}
#: Request headers no approval binds (``Connector.binds_header``; ``name-*``: every name it
#: begins): what a client's honest retry may change, what the gateway replaces or drops.
UNBOUND_HEADERS = (
    # framing and hop-by-hop: never forwarded as sent (the gateway re-frames the body);
    # `Host`, `Content-Type` and `Content-Encoding` are bound on their own
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "content-length", "upgrade", "expect", "host", "content-type", "content-encoding",
    "x-tameflare-*",
    # credentials: replaced by the gateway, or refreshed by a client between attempts (no
    # approval's digest is a function of a password)
    "authorization", "proxy-authorization", "cookie",
    # what a client says of itself and what it accepts back
    "date", "user-agent", "accept", "accept-*",
    # tracing and request ids, a WebSocket handshake's nonce: new on every attempt
    "sec-websocket-key", "traceparent", "tracestate", "baggage", "b3", "x-b3-*", "sentry-trace",
    "x-request-id", "x-correlation-id", "x-amzn-trace-id", "x-cloud-trace-context",
    # new per call or per attempt in common SDKs (Stripe's telemetry, the OpenAI and
    # Anthropic clients' `x-stainless-*` with their retry count, boto3's invocation id and
    # attempt)
    "idempotency-key", "x-stripe-client-telemetry", "x-stainless-*", "amz-sdk-invocation-id",
    "amz-sdk-request",
)  # fmt: skip


def fallback_risk(method: str) -> Risk:
    """GET/HEAD/OPTIONS low, DELETE high, anything else medium."""
    if method in _LOW_METHODS:
        return "low"
    return "high" if method == "DELETE" else "medium"


def request_method(req: HttpRequest, connector: str) -> str:
    """The upper-cased method, refusing odd tokens and method-override tricks."""
    if req.method not in _PLAIN_METHODS and not _METHOD_RE.fullmatch(req.method):
        raise ConnectorError("refused method: not a plain HTTP method token", connector=connector)
    if req.headers and "method" in "\n".join([h[0] for h in req.headers]).lower():
        for name, _ in req.headers:
            if name.lower() in _OVERRIDE_HEADERS:
                raise ConnectorError(
                    f"refused method override header `{name}`", connector=connector
                )
    if "_method" in req.query and _OVERRIDE_QUERY_RE.search(req.query):
        raise ConnectorError("refused `_method` override in the query", connector=connector)
    if req.body:
        refuse_foreign_charset(req.header("content-type"), connector)
        if _may_name_a_method(req.body):
            _refuse_body_override(req, connector)
    return req.method.upper()


class _MethodNames:
    """Every spelling of ``_method`` (any case), for the large-body JSON scanner to keep."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() == "_method"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_METHOD_NAMES = _MethodNames()


#: ``_method`` in any case. Its literal first byte lets the search skip along at C speed.
_UNDERSCORE_METHOD = re.compile(rb"_(?i:method)")
_ESCAPED_U = re.compile(rb"\\u")


def _may_name_a_method(body: bytes) -> bool:
    """Whether `body` may hold a ``_method`` field in any spelling: escaped (``%5F``,
    ``\\u005f``: any ``%`` or ``\\u``) or not, in any case. A form, JSON or multipart
    name is ``_method`` only with its ``_`` written out or escaped (no other character
    lower-cases to ``_`` or to a letter of ``method``), so the unescaped spelling is the
    byte ``_`` and ``method`` in any case. About 1 ms on 4 MiB."""
    return (
        b"%" in body
        or (b"\\" in body and _ESCAPED_U.search(body) is not None)
        or _UNDERSCORE_METHOD.search(body) is not None
    )


def _refuse_body_override(req: HttpRequest, connector: str) -> None:
    """Refuse a ``_method`` field in a form, JSON or multipart body (Rack and Express
    read it there): the upstream would perform another method than the one named."""
    ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
    body = req.body
    found = False
    if ctype.startswith("multipart/"):
        found = _MULTIPART_OVERRIDE_RE.search(body) is not None
    elif ctype == "application/x-www-form-urlencoded" or (
        not ctype and not body.lstrip().startswith((b"{", b"["))
    ):
        try:
            form = parse_form(body, complete=req.body_complete, connector=connector)
        except ConnectorError:
            if ctype:
                raise
            form = {}  # no content type and not a form: upstreams do not read it as one
        found = any(key.lower() == "_method" for key in form)
    elif ctype == "application/json" or ctype.endswith("+json") or not ctype:
        data = read_json_object(
            body, keep=_METHOD_NAMES, complete=req.body_complete, connector=connector
        )
        found = isinstance(data, dict) and any(key.lower() == "_method" for key in data)
    if found:
        raise ConnectorError("refused `_method` override in the body", connector=connector)


def make_spec(
    action: str,
    *,
    provider: str,
    account: str | None = None,
    target: str | None = None,
    parameters: dict[str, JsonValue] | None = None,
    risk_hints: dict[str, JsonValue] | None = None,
    connector: str = "",
    checked: bool = False,
) -> ActionSpec:
    """Build an ActionSpec without re-validating what the connector already checked.

    Parameters come from strict JSON/form parsing (finite numbers only); the action type
    was validated when the route table compiled (`checked`) or is checked here; resource
    strings are bounded here exactly as :class:`Resource` bounds them. Tests check that
    every spec built this way equals its validated round trip.
    """
    if not checked and not is_action_type(action):
        raise ConnectorError(f"cannot name action `{action[:100]}`", connector=connector)
    if account is not None and not 0 < len(account) <= 512:
        raise ConnectorError("resource account is empty or too long", connector=connector)
    if target is not None and not 0 < len(target) <= 2048:
        raise ConnectorError("resource target is empty or too long", connector=connector)
    if (account is not None and "\x00" in account) or (target is not None and "\x00" in target):
        raise ConnectorError("resource name holds a NUL character", connector=connector)
    resource = _resource(provider, account, target)
    return _constructed(
        ActionSpec,
        {
            "type": action,
            "resource": resource,
            "parameters": parameters if parameters is not None else {},
            "risk_hints": risk_hints if risk_hints is not None else {},
        },
    )


_RESOURCES: dict[tuple[str, str | None, str | None], Resource] = {}
_RESOURCE_CACHE_SIZE = 4096


def _resource(provider: str, account: str | None, target: str | None) -> Resource:
    """Resources are frozen, so equal ones are shared (a bounded cache, reset when full)."""
    key = (provider, account, target)
    found = _RESOURCES.get(key)
    if found is None:
        if len(_RESOURCES) >= _RESOURCE_CACHE_SIZE:
            _RESOURCES.clear()
        values = {"provider": provider, "account": account, "target": target, "environment": None}
        found = _RESOURCES[key] = _constructed(Resource, values)
    return found


_M = TypeVar("_M", bound=BaseModel)


def _constructed(cls: type[_M], values: dict[str, Any]) -> _M:
    """``cls.model_construct(**values)`` for a model without defaults to fill, private
    attributes or extras, minus the generic bookkeeping (the hot path of every parse)."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_set = object.__setattr__


class Connector:
    """Base of every connector. Subclasses set the class attributes and override ``parse``,
    ``build_request`` and ``actions``.

    - `name`: the connector type and the resource provider of its actions;
    - `default_domains`: hosts it serves when configured without domains;
    - `body_limit`: how many body bytes ``parse`` may need (0: it never reads bodies);
    - `auth_header_names`: every header that carries a credential for this upstream
      (lower-case); the proxy strips them from the agent's request;
    - `bound_headers`: the request headers that change what the upstream does, bound to an
      approval with the request (lower-case; ``x-amz-*`` every name it begins, ``*`` every
      header), but those of `unbound_headers`. A connector that declares none (``generic``,
      ``webhook``: unknown APIs) binds every header but :data:`UNBOUND_HEADERS`;
    - `base_url`: the upstream used by ``build_request`` when none is given;
    - `notes`: how it names things, for the catalogue (its module docstring).
    """

    name: str = ""
    description: str = ""
    notes: str = ""
    default_domains: tuple[str, ...] = ()
    body_limit: int = 0
    auth_header_names: tuple[str, ...] = ("authorization",)
    auth_scheme: str = "Bearer"
    auth_header: str = "Authorization"
    bound_headers: tuple[str, ...] = ("*",)
    unbound_headers: tuple[str, ...] = UNBOUND_HEADERS
    base_url: str | None = None

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        """Name the action `req` performs, or raise ConnectorError."""
        raise NotImplementedError

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        """The upstream request that performs `spec`, without credentials."""
        raise NotImplementedError

    def actions(self) -> list[ActionInfo]:
        """Every action this connector can name, for the catalogue."""
        raise NotImplementedError

    def auth_headers(
        self, credential: str, *, auth_type: str | None = None, header: str | None = None
    ) -> list[tuple[str, str]]:
        """The header(s) that carry `credential` upstream.

        By default the connector's own scheme (``Authorization: Bearer …``, GitHub's
        ``token …``, Anthropic's ``x-api-key``). A configured connector may override it:
        `auth_type` ``"bearer"`` or ``"token"`` (``Authorization``), or ``"header"`` (the raw
        credential in `header`, default ``Authorization``).
        """
        if not credential or any(c in credential for c in "\r\n\0"):
            raise ConnectorError(
                "invalid credential: empty or has a line break", connector=self.name
            )
        if auth_type is None:
            name, scheme = self.auth_header, self.auth_scheme
        elif auth_type in _AUTH_SCHEMES:
            name, scheme = "Authorization", _AUTH_SCHEMES[auth_type]
        elif auth_type == "header":
            name, scheme = header or "Authorization", ""
        else:
            raise ConnectorError(f"unknown auth type `{auth_type[:40]}`", connector=self.name)
        if not name or any(c in name for c in "\r\n\0: "):
            raise ConnectorError(f"invalid credential header `{name[:80]}`", connector=self.name)
        return [(name, f"{scheme} {credential}" if scheme else credential)]

    def auth_headers_for(
        self,
        req: HttpRequest,
        credential: str,
        *,
        auth_type: str | None = None,
        header: str | None = None,
    ) -> list[tuple[str, str]]:
        """The credential header(s) for this particular request; by default
        :meth:`auth_headers` (GitHub answers git smart-HTTP with Basic auth instead)."""
        return self.auth_headers(credential, auth_type=auth_type, header=header)

    def binds_header(self, name: str) -> bool:
        """Whether an approval binds the request header `name` (lower-case): a retry that
        adds, drops or changes it is another request."""
        return _listed(name, self.bound_headers) and not _listed(name, self.unbound_headers)

    def encoded(self, parsed: ParsedAction) -> tuple[str, ...]:
        """Where the request `parsed` names carries text base64-encoded: locations as the
        content guard names a message's pieces (``body.content``, ``form.Data``,
        ``parameters.file_changes.additions.*.contents``; ``*`` any one key or index). The
        guard decodes them and scans the text (``agentfirewall.content.encoded``)."""
        return ()

    def encoded_parameters(self, action: str) -> tuple[str, ...]:
        """The same for an action decided from its spec (SDK mode): the locations of its
        parameters that carry text base64-encoded (``parameters.content``)."""
        return ()

    def response_encoded(self, action: str) -> tuple[str, ...]:
        """Where the answer to `action` carries text base64-encoded: locations in its JSON
        body (``body.content``: a file read through GitHub's contents API), decoded and
        scanned by the response content rules. By action, not by request: a request held
        for approval keeps only its action's name."""
        return ()

    def fallback(self, method: str, path: str, *, target: str | None = None) -> ParsedAction:
        """The action for a request on a known domain that no route matches:
        ``<connector>.unknown.<method>``, a name no ordinary wildcard grants (``github.*``
        does not allow ``github.unknown.put``; see agentfirewall/policy/globs.py)."""
        spec = make_spec(
            f"{self.name}.{RESERVED_SEGMENT}.{method.lower()}",
            provider=self.name,
            target=target,
            parameters={"method": method, "path": path[:2048]},
            connector=self.name,
        )
        return ParsedAction(spec, fallback_risk(method), self.name, "fallback")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _listed(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether `patterns` name `name`: exactly, or ``prefix*`` a name it begins."""
    return any(p == name or (p[-1:] == "*" and name.startswith(p[:-1])) for p in patterns)


def json_mapping(value: object) -> Mapping[str, object] | None:
    """`value` when it is a JSON object, else None."""
    return value if isinstance(value, dict) else None
