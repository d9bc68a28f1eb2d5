"""What every connector offers, and the pieces all of them share.

A connector turns an :class:`HttpRequest` into a :class:`ParsedAction` (``parse``) and an
action back into a request (``build_request``), lists its actions for the catalogue and
says how to carry its credential (``auth_headers`` / ``auth_header_names``) and which request
headers an approval binds with the request (``binds_header``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, JsonValue

from agentfirewall.actions import ActionSpec, Resource, Risk, is_action_type
from agentfirewall.connectors.bodies import refuse_foreign_charset
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.connectors.scan import read_json_object
from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import printable
from agentfirewall.policy.globs import RESERVED_SEGMENT

__all__ = [
    "UNBOUND_HEADERS",
    "Connector",
    "fallback_risk",
    "form_field",
    "form_names",
    "make_spec",
    "override_readable",
    "request_method",
]

_METHOD_RE = re.compile(r"[A-Za-z]{1,20}")
_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
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
    # approval's digest is a function of a password); an AWS session token says who acts,
    # as the `Authorization` it comes with does
    "authorization", "proxy-authorization", "cookie", "x-amz-security-token",
    # what a client says of itself and what it accepts back; the time a request is signed
    # at (AWS SigV4, Azure Shared Key, Google HMAC: new on every attempt)
    "date", "user-agent", "accept", "accept-*", "x-amz-date", "x-ms-date", "x-goog-date",
    # tracing and request ids, a WebSocket handshake's nonce: new on every attempt
    "sec-websocket-key", "traceparent", "tracestate", "baggage", "b3", "x-b3-*", "sentry-trace",
    "x-request-id", "x-correlation-id", "x-amzn-trace-id", "x-cloud-trace-context",
    "uber-trace-id", "elastic-apm-traceparent", "newrelic", "x-newrelic-transaction",
    "x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority",
    "x-datadog-origin", "x-datadog-tags",
    # new per call or per attempt in common SDKs (Stripe's telemetry, the OpenAI and
    # Anthropic clients' `x-stainless-*` with their retry count, the AWS SDKs' invocation id
    # and attempt, Azure's client request id, Google's client with its invocation id and
    # attempt count)
    "idempotency-key", "x-stripe-client-telemetry", "x-stainless-*", "amz-sdk-*",
    "x-ms-client-request-id", "x-goog-api-client",
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
    if req.headers:
        names = "\n".join([h[0] for h in req.headers]).lower()
        if "method" in names:
            for name, _ in req.headers:
                # (CGI-style servers, Puma, PHP's own read `_` in a name as `-`)
                if name.lower().replace("_", "-") in _OVERRIDE_HEADERS:
                    raise ConnectorError(
                        f"refused method override header `{printable(name, 100)}`",
                        connector=connector,
                    )
        if names.count("content-type") > 1:
            _refuse_two_types(req, connector)
    if req.query:
        _refuse_query_override(req.query.encode(errors="replace"), connector)
    if req.body:
        refuse_foreign_charset(req.header("content-type"), connector)
        _refuse_body_override(req, connector)
    return req.method.upper()


def override_readable(method: str, content_type: str | None) -> bool:
    """Whether a method-override middleware may read a ``_method`` field from a body sent
    with `method` and `content_type`: a POST of any kind ``_override_kinds`` names (Rack,
    Symfony and Laravel, Spring's ``HiddenHttpMethodFilter`` and Express's
    ``method-override`` override a POST), and a form or multipart body of any other method
    but GET (Hono's ``methodOverride``: ``_method=DELETE`` in a PUT's form is a DELETE). The
    gateway reads such a body before deciding, whatever the connector, for
    ``request_method`` to refuse its ``_method``; one larger than the inspection limit is
    never allowed (``agentfirewall_proxy.pipeline.decide``)."""
    method = method.upper()
    kinds = _override_kinds(content_type)
    if method == "POST" or not kinds:
        return bool(kinds)
    typed = bool((content_type or "").strip())
    return method != "GET" and typed and not kinds.isdisjoint(("form", "multipart"))


_FORM_TYPE = "application/x-www-form-urlencoded"


def _override_kinds(content_type: str | None) -> frozenset[str]:
    """How method-override middlewares read a body of `content_type`: as a ``form`` (that
    type, Hono's any type it begins, or none: Rack reads an untyped POST as a form), as
    ``json`` (Laravel reads a type naming ``/json`` or ``+json`` anywhere: ``text/json``),
    as ``multipart`` (any ``multipart/*``). A list of types (``text/plain,
    application/json``: two headers joined) is read as each, parsers disagree on which
    counts; empty: no middleware reads a field."""
    text = (content_type or "").lower()
    kinds = {"json"} if "/json" in text or "+json" in text else set()
    medias = [_MEDIA_END.split(part.strip(), maxsplit=1)[0] for part in text.split(",")]
    if not medias[0]:
        kinds.add("form")
    for media in medias:
        if media.startswith(_FORM_TYPE):
            kinds.add("form")
        elif media.startswith("multipart/"):
            kinds.add("multipart")
    return frozenset(kinds)


#: Where a media type ends: its parameters, or a space (PHP reads `type param` as `type`).
_MEDIA_END = re.compile(r"[;\s]")


def _refuse_two_types(req: HttpRequest, connector: str) -> None:
    """Refuse two ``Content-Type`` headers that differ: parsers disagree on which one counts
    (or join them), so the body would be checked as one kind and read as another."""
    types = dict.fromkeys(value for name, value in req.headers if name.lower() == "content-type")
    if len(types) > 1:
        shown = ", ".join(f"`{printable(value, 100)}`" for value in types)
        raise ConnectorError(
            f"refused `Content-Type` headers that differ ({shown}): send one",
            connector=connector,
        )


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
#: What PHP makes a ``_`` at the start of a form field's name (``_reads_as_method``).
_PHP_UNDERSCORES = bytes.maketrans(b".[", b"__")


def _may_name_a_method(body: bytes, *, php: bool = True) -> bool:
    """Whether `body` may hold a ``_method`` field in any spelling: escaped (``%5F``,
    ``\\u005f``: any ``%`` or ``\\u``) or not, in any case, and (`php`: a form or multipart
    body) one PHP reads as ``_method`` (``.method``, ``[method``). A form, JSON or multipart
    name is ``_method`` only with its ``_`` written out or escaped (no other character
    lower-cases to ``_`` or to a letter of ``method``), so the unescaped spelling is the
    byte ``_`` (or ``.``, ``[``) and ``method`` in any case. About 1 ms on 4 MiB, a few
    more with `php` (a translated copy is searched)."""
    return (
        b"%" in body
        or (b"\\" in body and _ESCAPED_U.search(body) is not None)
        or _UNDERSCORE_METHOD.search(body) is not None
        or (php and _UNDERSCORE_METHOD.search(body.translate(_PHP_UNDERSCORES)) is not None)
    )


def _refuse_query_override(query: bytes, connector: str) -> None:
    """Refuse a ``_method`` field in the query, its name read as a form's (``form_names``,
    ``_reads_as_method``): Express's and Hono's query getters decode names (``%5Fmethod``),
    PHP reads ``.method`` and ``+_method`` (a leading space) as ``_method`` too."""
    if _may_name_a_method(query) and any(map(_reads_as_method, form_names(query))):
        raise ConnectorError("refused `_method` override in the query", connector=connector)


def _refuse_body_override(req: HttpRequest, connector: str) -> None:
    """Refuse a ``_method`` field in a body a method-override middleware reads (a form,
    JSON or multipart body, or one without a type: ``_override_kinds``), read in every way
    one of them reads it: the upstream would perform another method than the one named."""
    ctype = req.header("content-type")
    kinds = _override_kinds(ctype)
    body, complete = req.body, req.body_complete
    found = "multipart" in kinds and any(
        map(_reads_as_method, _multipart_names(body, ctype, connector))
    )
    if not found and "form" in kinds and _may_name_a_method(body):
        found = any(map(_reads_as_method, form_names(body, complete)))
    untyped = "form" in kinds and not (ctype or "").strip()
    if (
        not found
        and ("json" in kinds or (untyped and body.lstrip().startswith((b"{", b"["))))
        and _may_name_a_method(body, php=False)
    ):
        data = read_json_object(body, keep=_METHOD_NAMES, complete=complete, connector=connector)
        found = isinstance(data, dict) and any(key.lower() == "_method" for key in data)
    if found:
        raise ConnectorError("refused `_method` override in the body", connector=connector)


#: What separates a form's fields: ``&``, and ``;`` too for older Rack.
_FORM_SEPARATORS = re.compile(rb"[&;]")
_PHP_NAME = str.maketrans(". ", "__")


def form_field(name: str) -> str:
    """The field a form or multipart field `name` sets, lower-cased: as written, as an
    array's name (``_method[]``), or as PHP names it (leading spaces dropped, a dot or a
    space made ``_``, an unclosed ``[`` too: ``.method``, ``[method``)."""
    php = name.lower().lstrip(" ").translate(_PHP_NAME)
    base, bracket, rest = php.partition("[")
    if bracket and "]" not in rest:  # not an array: PHP makes that `[` (and later ones) `_`
        base = f"{base}_{rest.replace('[', '_')}"
    return base


def _reads_as_method(name: str) -> bool:
    """Whether a form or multipart field `name` is read as ``_method`` (any case)."""
    return form_field(name) == "_method"


def form_names(body: bytes, complete: bool = True) -> Iterator[str]:
    """The field names of a form body or a query as Rack and PHP read them: ``+`` a
    space, escapes decoded, whatever the bytes (no UTF-8 check: ``\\xff&_method=DELETE``
    is still read); a prefix's last, cut field left out."""
    pairs = _FORM_SEPARATORS.split(body)
    if not complete:
        pairs.pop()
    for pair in pairs:
        yield unquote_to_bytes(pair.partition(b"=")[0].replace(b"+", b" ")).decode("latin-1")


def _multipart_names(body: bytes, content_type: str | None, connector: str) -> Iterator[str]:
    """Every field name a multipart body may give: read from the ``name`` parameters of
    every part's headers (``_part_headers``), each line as it stands and as parsers join
    lines (folded ones, and as PHP does, any without a colon). More than
    :data:`_MOST_PARTS` parts and names in all cannot be checked: refused."""
    seen = 0
    for block in _part_headers(body, _boundaries(content_type or ""), connector):
        seen += 1 + block.lower().count(b"name")
        if seen > _MOST_PARTS:
            raise _too_many_parts(connector)
        yield from _param_names(block)
        joined = _joined_lines(block)
        if joined != block:
            yield from _param_names(joined)


#: Parts and ``name`` parameters a multipart body is read for at most (PHP reads 1020
#: parts, Rack 4096): the work stays bounded whatever the body.
_MOST_PARTS = 10_000


def _too_many_parts(connector: str) -> ConnectorError:
    message = f"multipart body of more than {_MOST_PARTS} parts or field names: cannot "
    return ConnectorError(f"{message}check it for a `_method` override", connector=connector)


def _joined_lines(block: bytes) -> bytes:
    """`block` with the line breaks a parser removes taken out: before a folded line (it
    begins with a space or a tab) or, as PHP reads part headers, before a line neither
    blank nor holding a colon (PHP appends it to the header above as it stands)."""
    lines = block.split(b"\n")
    parts = lines[:1]
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") or (b":" not in line and line.strip(b"\r")):
            parts[-1] = parts[-1].removesuffix(b"\r")
        else:
            parts.append(b"\n")
        parts.append(line)
    return b"".join(parts)


#: A ``boundary`` parameter as PHP finds one: the word anywhere, then the next ``=``.
_BOUNDARY = re.compile(r'(?i)boundary[^=]*=\s*("[^"]*|[^;,]*)')


def _boundaries(content_type: str) -> set[bytes]:
    """Every boundary a parser may read from `content_type`: each ``boundary`` parameter
    (in any case, PHP's ``xboundary=`` too), its value unquoted, up to ``;`` or ``,`` (PHP),
    trimmed, or up to a space. None: any line beginning with ``--`` is a delimiter."""
    found: set[str] = set()
    for match in _BOUNDARY.finditer(content_type):
        value = match.group(1).removeprefix('"')
        words = value.split(None, 1)
        found.update((value, value.strip(), words[0] if words else ""))
    return {value.encode("latin-1") for value in found if value} or {b""}


def _part_headers(body: bytes, boundaries: set[bytes], connector: str) -> Iterator[bytes]:
    """The headers of every part a parser may find: after each line that begins with
    ``--`` and one of `boundaries` (or more: PHP takes ``--bx`` for ``--b``), up to the
    first CRLF CRLF (a parser that ends them at a bare-LF blank line reads less of them)."""
    starts = set()
    for boundary in boundaries:
        delimiter = b"\n--" + boundary
        at = 0 if body.startswith(delimiter[1:]) else body.find(delimiter)
        while at >= 0:
            starts.add(at)
            if len(starts) > _MOST_PARTS:
                raise _too_many_parts(connector)
            at = body.find(delimiter, at + 1)
    end = 0
    for at in sorted(starts):
        start = body.find(b"\n", at + 1)  # (the delimiter line's end)
        if at < end or start < 0:
            continue  # (in the headers read last: those go on past it)
        end = body.find(b"\r\n\r\n", start)
        end = len(body) if end < 0 else end
        yield body[start + 1 : end]


#: A ``name`` parameter in a part header, as parsers read one: any case, RFC 2231's
#: ``name*`` (``charset'lang'value``) and continuations (``name*0``, ``name*1*``), spaces
#: before ``=`` (groups: the first ``*``, a continuation's number, its ``*``).
_NAME_PARAM = re.compile(rb"[nN][aA][mM][eE][ \t]*(?:(\*)[ \t]*([0-9]*)[ \t]*(\*?)[ \t]*)?=[ \t]*")
#: Bytes of a parameter's name (RFC 9110 tchar): ``filename=`` and ``x-name=`` are others.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: How much of a line a value is read from: ``_method`` in any spelling is far shorter
#: (more can only be spaces before a ``;``, which a parser trims).
_VALUE_SPAN = 4096


def _param_names(text: bytes) -> Iterator[str]:
    """The field names the ``name`` parameters of part header lines `text` may give: each
    value in every reading (``_param_values``, ``_name_decodings``), and a line's
    continuations joined in order (the first and the last of a number given twice)."""
    pieces: dict[int, list[tuple[bytes, bytes]]] = {}
    line, after = -1, 0  # the line of the last parameter (its `\n` before), and its end
    for found in _NAME_PARAM.finditer(text):
        if found.start() and text[found.start() - 1] in _TCHAR:
            continue
        line = max(line, text.rfind(b"\n", after, found.start()))
        after = found.end()
        end = text.find(b"\n", after, after + _VALUE_SPAN)
        star, number, last = found.groups()
        extended = star is not None and (not number or bool(last))
        values = _param_values(text[after : after + _VALUE_SPAN if end < 0 else end], extended)
        if number:
            pieces.setdefault(line, []).append((number.lstrip(b"0").rjust(1, b"0"), values[0]))
        else:
            for value in values:
                yield from _name_decodings(value)
    for found_pieces in pieces.values():
        order = sorted(found_pieces, key=lambda piece: (len(piece[0]), piece[0]))
        first: dict[bytes, bytes] = {}
        for number, value in order:
            first.setdefault(number, value)
        yield from _name_decodings(b"".join(first.values()))
        yield from _name_decodings(b"".join(dict(order).values()))


_QUOTED = {b'"': re.compile(rb'(?:[^"\\]|\\.)*'), b"'": re.compile(rb"(?:[^'\\]|\\.)*")}
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
#: A token as Rack reads one (up to a space or a separator).
_TOKEN = re.compile(rb'[^\s()<>,;:\\"/\[\]?=]*')


def _param_values(text: bytes, extended: bool) -> list[bytes]:
    """A parameter's value at the start of `text` (the rest of its line), as parsers read
    it: a token up to ``;`` (trimmed), up to a space (PHP) or up to a separator (Rack); a
    quoted string (in double quotes, or single ones as PHP allows) as it stands and with
    its backslash escapes undone (Rack, busboy). The first is the one continuations join:
    the token for an RFC 2231 ``*`` value (``''_method`` is no quoted string), else the
    quoted string undone."""
    text = text.removesuffix(b"\r")
    token = text.split(b";", 1)[0].strip()
    rack = _TOKEN.match(token)
    assert rack is not None  # (it matches the empty string)
    values = [token, token.split(None, 1)[0] if token else b"", rack.group()]
    quote = text[:1]
    if quote in _QUOTED:
        inner = _QUOTED[quote].match(text, 1)
        assert inner is not None
        quoted = [_QUOTED_PAIR.sub(rb"\1", inner.group()), inner.group()]
        values = values + quoted if extended else quoted + values
    return values


#: An RFC 2231 value: ``charset'language'percent-encoded``.
_EXTENDED = re.compile(rb"([^']*)'[^']*'(.*)", re.DOTALL)


def _name_decodings(value: bytes) -> Iterator[str]:
    """A field name `value` as it stands, percent-decoded (RFC 7578 lets a name be: a
    ``%5Fmethod``) and as an RFC 2231 value (``UTF-8''%5Fmethod``, in its charset)."""
    yield value.decode("latin-1")
    if b"%" in value:
        yield unquote_to_bytes(value).decode("latin-1")
    extended = _EXTENDED.fullmatch(value)
    if extended is not None:
        raw = unquote_to_bytes(extended.group(2))
        yield raw.decode("latin-1")
        with contextlib.suppress(LookupError, ValueError):  # (no such codec, or a strict one)
            yield raw.decode(extended.group(1).decode("latin-1"), "replace")


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
    - `any_upstream`: True for a connector of any API (``generic``, ``webhook``): a
      method-override middleware may run there, so a body it reads (:func:`override_readable`)
      is never allowed unseen, past the inspection limit (the named APIs read no ``_method``:
      an OpenAI transcription upload past the limit is decided as any unseen body);
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
    any_upstream: bool = False
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
