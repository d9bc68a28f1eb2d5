"""HTTP plumbing shared by every route: JSON errors, bounded bodies, strict models.

Every error leaves as ``{"error": code, "message": ..., ...}`` (docs/api.md).

Input limits (docs/api.md, "Input limits"): a body is at most ``max_body_bytes`` (413);
its JSON nests at most 64 levels and holds no lone surrogate and no NaN; integer fields fit
64 bits and text fields hold no NUL (400/422 naming the field); a URL holds no ``%00``
(400); core errors escaping a route are the caller's (422), so no input reaches the 500
handler.
"""

from __future__ import annotations

import difflib
import json
import math
import typing
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from agentfirewall.errors import ActionSpecError, ConnectorError, PolicyError
from agentfirewall.jsonlimits import int_problem, json_problem, printable

__all__ = [
    "ApiError",
    "NoBody",
    "Strict",
    "check_query",
    "error_response",
    "header",
    "install_error_handlers",
    "json_fast",
    "json_ok",
    "json_text",
    "no_body",
    "nul_in_url",
    "parse_json",
    "parse_model",
    "query_number",
    "read_body",
    "read_json",
    "read_model",
    "repeated_header",
]

M = TypeVar("M", bound=BaseModel)

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class Strict(BaseModel):
    """Base of request bodies: unknown fields are refused, and (`parse_model`) every value
    must have its field's JSON type."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiError(Exception):
    """Raised by handlers; rendered as the JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers
        #: what the body adds (`field`, `line`...); one not known is left out, not null
        self.extra = {k: v for k, v in extra.items() if v is not None}


def _clean(value: Any) -> Any:
    """Error bodies echo input: lone surrogates are escaped so the body always encodes."""
    if isinstance(value, str):
        return printable(value, limit=4000)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = _clean({"error": code, "message": message, **extra})
    return JSONResponse(body, status, headers=headers)


def json_ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status, headers=headers)


class _FastJSONResponse(JSONResponse):
    """A 200 JSONResponse encoded by orjson, its two headers written directly.

    The same status, headers (content-length, then content-type) and body as
    ``JSONResponse`` with orjson's bytes; ``Response.__init__``'s generic header work
    (about 2 µs) is skipped.
    """

    def __init__(self, content: Any) -> None:
        self.status_code = 200
        self.background = None
        self.body = body = orjson.dumps(content)  # about 20 times faster than the json module
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE]

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_JSON_TYPE = (b"content-type", b"application/json")


def json_text(data: Any) -> str:
    """Compact JSON text of plain JSON data."""
    return orjson.dumps(data).decode("utf-8")


def json_fast(data: dict[str, Any]) -> JSONResponse:
    """`json_ok` for plain JSON data (str keys, 64-bit ints) on hot paths: orjson encodes."""
    return _FastJSONResponse(data)


#: An oversized body up to this many times the limit is read and dropped before the 413,
#: so the client can read the answer and reuse its keep-alive connection; a larger one
#: gets the 413 at once with `Connection: close`.
_DRAIN_FACTOR = 4


def _too_large(limit: int, *, close: bool) -> ApiError:
    return ApiError(
        413,
        f"request body is larger than the {limit} byte limit",
        headers={"Connection": "close"} if close else None,
        limit_bytes=limit,
    )


def header(request: Request, name: bytes) -> str | None:
    """``request.headers.get(name)`` for a lower-case `name`, from one pass over the raw
    headers kept in the scope (the first of repeated headers, as Starlette's ``get``):
    the hot path reads three headers without building ``Headers`` and scanning it thrice."""
    value = _first_headers(request.scope).get(name)
    return None if value is None else value.decode("latin-1")


def repeated_header(request: Request, name: bytes) -> bool:
    """Whether the request carries header `name` (lower-case) more than once; found in the
    same pass as `header`'s."""
    scope = request.scope
    _first_headers(scope)
    return name in scope.get("af.repeated", ())


def _first_headers(scope: Scope) -> dict[bytes, bytes]:
    """The raw headers' first values by name, and (``af.repeated``) the names repeated."""
    first: dict[bytes, bytes] | None = scope.get("af.headers")
    if first is None:
        first = {}
        repeated = []
        for key, value in scope["headers"]:
            if key not in first:
                first[key] = value
            else:
                repeated.append(key)
        scope["af.headers"] = first
        if repeated:
            scope["af.repeated"] = frozenset(repeated)
    return first


async def read_body(request: Request) -> bytes:
    """The body, at most ``max_body_bytes`` (413), read from the ASGI messages directly
    (what ``request.stream()`` yields, without its async generator); a second read raises
    as ``stream()`` does."""
    limit: int = request.app.state.settings.max_body_bytes
    declared = header(request, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "`Content-Length` is not a number") from None
        if size > limit * _DRAIN_FACTOR:
            raise _too_large(limit, close=True)
    scope = request.scope
    if scope.get("af.body_read"):
        raise RuntimeError("Stream consumed")
    scope["af.body_read"] = True
    receive = request.receive
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit * _DRAIN_FACTOR:
                raise _too_large(limit, close=True)
            if total <= limit:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    if total > limit:
        raise _too_large(limit, close=False)
    return b"".join(chunks)


async def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    """The parsed JSON body; 400 when malformed, 413 when too large."""
    return parse_json(await read_body(request), allow_empty=allow_empty)


def parse_json(raw: bytes, *, allow_empty: bool = False) -> Any:
    """Parse a request body already read; 400 when malformed."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "request body is empty: expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _diagnose(raw)
    _check_limits(data)
    return data


def _diagnose(raw: bytes) -> Any:
    """orjson refused `raw`: the json module, which is laxer, finds which field is bad."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _not_valid("nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as again:
        raise _not_valid(str(again)) from None
    return data  # an integer past 64 bits, NaN, a lone surrogate: _check_limits decides


def _not_valid(reason: str) -> ApiError:
    return ApiError(400, f"request body is not valid JSON: {printable(reason)}")


def _check_limits(data: Any) -> None:
    found = json_problem(data, check_ints=False)
    if found is None:
        return
    field, problem = found
    status = 422 if "finite" in problem else 400  # a bad value, or a bad document
    message = f"`{field}` {problem}" if field else f"request body {problem}"
    raise ApiError(status, message, field=field or None)


def _check_fields(value: Any, path: str = "", *, free: bool = False) -> None:
    """Integer fields of a validated model fit 64 bits (``1e300`` is a valid int field),
    and its text holds no NUL character, which no PostgreSQL text column holds.

    Free JSON (``JsonValue`` fields) is left alone: it is stored as text, escaped; in
    ``Any`` fields only the integers are checked.
    """
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            kind = str(info.annotation)
            if "JsonValue" not in kind:
                where = f"{path}.{name}".lstrip(".")
                _check_fields(getattr(value, name), where, free="Any" in kind)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_fields(item, f"{path}.{i}", free=free)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_fields(key, f"{path}.{key}", free=free)
            _check_fields(item, f"{path}.{key}", free=free)
    elif isinstance(value, str):
        if not free and "\x00" in value:
            raise ApiError(422, f"`{path}` holds a NUL character (`\\u0000`)", field=path)
    elif isinstance(value, int) and not isinstance(value, bool):
        problem = int_problem(value)
        if problem is not None:
            raise ApiError(422, f"`{path}` {problem}", field=path)


_NO_INPUT = object()


def validation_error(
    exc: PydanticValidationError, data: Any = _NO_INPUT, model: type[BaseModel] | None = None
) -> ApiError:
    """422 naming the field of the first problem; with the validated JSON `data`, the field
    is its path in the body (no union branch, no ``[key]`` label) and a value no branch of
    a union took says what each branch expected; with the `model`, an unknown field is told
    the closest known one (``agent``: did you mean ``agents``?)."""
    errors = exc.errors()
    first = _misspelt(errors, model) or errors[0]
    steps = _body_path(first["loc"], data, first["type"] == "missing")
    loc = ".".join(str(p) for p in steps)
    kind = first["type"]
    if kind == "extra_forbidden":
        message = f"unknown field `{loc}`" + _meant(model, steps)
    elif kind == "missing":
        message = f"missing field `{loc}`"
    else:
        ctx_error = (first.get("ctx") or {}).get("error")
        detail = str(ctx_error) if ctx_error else first["msg"]
        if steps != first["loc"]:  # a union: every branch's expectation
            same = [e["msg"] for e in errors if _body_path(e["loc"], data, False) == steps]
            detail = "; ".join(dict.fromkeys(same))
        message = f"invalid `{loc}`: {detail}" if loc else detail
    return ApiError(422, message, field=loc or None)


def _misspelt(errors: list[Any], model: type[BaseModel] | None) -> Any:
    """An unknown field that is a misspelling of a missing one (``agnet`` beside a missing
    ``agent``): the one error that says it all, whatever order pydantic lists them in."""
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and missing:
            meant = _closest(model, loc)
            if meant is not None and (*loc[:-1], meant) in missing:
                return error
    return None


def _meant(model: type[BaseModel] | None, steps: tuple[int | str, ...]) -> str:
    """`: did you mean `x`?` for an unknown field close to one of its model's (else "")."""
    near = _closest(model, steps)
    return f": did you mean `{near}`?" if near else ""


def _closest(model: type[BaseModel] | None, steps: tuple[int | str, ...]) -> str | None:
    """The field of its model an unknown field at `steps` most likely meant, else None."""
    for step in steps[:-1]:  # down to the model holding the field (through lists, Optional)
        if isinstance(step, int):  # an item of a list
            continue
        info = model.model_fields.get(step) if model is not None else None
        if info is None:
            return None
        model = next((t for t in _types(info.annotation) if _is_model(t)), None)
    if model is None or not steps:
        return None
    names = [info.alias or name for name, info in model.model_fields.items()]
    near = difflib.get_close_matches(str(steps[-1]), names, n=1, cutoff=0.7)
    return near[0] if near else None


def _types(annotation: Any) -> list[Any]:
    """`annotation` and the types inside it (``list[X] | None`` -> X among them)."""
    found, todo = [], [annotation]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(typing.get_args(kind))
    return found


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _body_path(loc: tuple[int | str, ...], data: Any, missing: bool) -> tuple[int | str, ...]:
    """The steps of `loc` found in `data`: pydantic's labels (``str`` for a union's string
    branch, ``[key]`` for a mapping's key) are no field of the body. The last step of a
    missing field is kept."""
    if data is _NO_INPUT:
        return loc
    kept: list[int | str] = []
    for i, step in enumerate(loc):
        if _holds(data, step):
            data = data[step]
        elif not (missing and i == len(loc) - 1):
            continue
        kept.append(step)
    return tuple(kept)


def _holds(data: Any, step: int | str) -> bool:
    """Whether JSON `data` has a member `step` (a key, or an index of a list)."""
    if isinstance(data, dict):
        return step in data
    return isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data)


def nul_in_url(scope: Scope) -> Response | None:
    """The 400 for a path or query holding a NUL character (``%00``), which no id, name or
    value has and no PostgreSQL text column holds; None for every other URL."""
    if "\x00" in scope["path"]:
        return error_response(400, "invalid_request", "the path holds a NUL character (`%00`)")
    if b"%00" not in scope["query_string"] and b"\x00" not in scope["query_string"]:
        return None
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            message = f"`{name}` holds a NUL character (`%00`)"
            return error_response(400, "invalid_request", message, field=name)
    return None


def check_query(request: Request, *known: str) -> None:
    """400 naming a query parameter the route does not read: a misspelt filter
    (``?agnet=Bot``) would otherwise be ignored, and a listing answer everything."""
    for name in request.query_params:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean `{near[0]}`?)" if near else ""
            reads = f"it reads {', '.join(known)}" if known else "it reads none"
            raise ApiError(
                400, f"unknown query parameter `{name[:100]}`{hint}: {reads}", field=name[:100]
            )


def query_number(request: Request, name: str, default: float | None, high: float) -> float | None:
    """Query parameter `name` as a number clamped to 0..`high` (`default` when absent);
    400 naming it when it is no number (``nan`` is none: it would clamp to anything)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ApiError(400, f"`{name}` must be a number, not `{raw[:40]}`", field=name)
    return max(0.0, min(value, high))


class NoBody(Strict):
    """The body of a route that reads none: nothing, or ``{}``."""


async def no_body(request: Request) -> None:
    """For a route that reads no body: none, or ``{}``. A field would be dropped unread (a
    ``reason`` sent with a revocation that no audit event shows), so it is 422."""
    try:
        await read_model(request, NoBody, allow_empty=True)
    except ApiError as exc:
        route = printable(f"{request.method} {request.url.path}", 300)
        message = f"{exc.message}: {route} takes no body (send none, or {{}})"
        raise ApiError(
            exc.status, message, code=exc.code, headers=exc.headers, **exc.extra
        ) from None


async def read_model(request: Request, model: type[M], *, allow_empty: bool = False) -> M:
    """Parse and validate the body into `model` (422 with `field` on the first problem)."""
    return parse_model(await read_body(request), model, allow_empty=allow_empty)


def parse_model(raw: bytes, model: type[M], *, allow_empty: bool = False) -> M:
    """`read_model` for a body already read."""
    data = parse_json(raw, allow_empty=allow_empty)
    if not isinstance(data, dict):
        raise ApiError(422, "request body must be a JSON object")
    try:
        # strict: a JSON string is not a boolean or a number (`{"active": "yes"}` is refused,
        # not read as true); JSON's own forms still fill tuples, enums and datetimes
        parsed = model.model_validate_json(raw if raw.strip() else b"{}", strict=True)
    except PydanticValidationError as exc:
        raise validation_error(exc, data, model) from None
    except RecursionError:
        raise ApiError(400, "request body nests too deeply") from None
    _check_fields(parsed)
    return parsed


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304)
    code = _CODES.get(exc.status_code, "error")
    message = {
        404: "no such endpoint: see docs/api.md",
        405: "method not allowed on this endpoint",
    }.get(exc.status_code, str(exc.detail).lower())
    if exc.status_code == 404 and request.url.path.startswith("/v1/"):  # the SDKs' paths
        message += "; the API is under /api: a base URL ends in `/api` (AAF_BASE_URL)"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # every method the path serves, not only its first route's
        headers["Allow"] = ", ".join(sorted(_methods_of(request)))
    return error_response(exc.status_code, code, message, headers)


def _methods_of(request: Request) -> set[str]:
    """The methods the routes of the request's path accept (each route serves a few)."""
    path = request.url.path
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        regex, accepted = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and accepted and regex.match(path):
            methods |= accepted
    return methods


async def _core_error(_request: Request, exc: Exception) -> Response:
    """A core error escaping a route is about the caller's input: 422, never 500."""
    return error_response(422, "invalid_request", str(exc))


async def _internal(_request: Request, _exc: Exception) -> Response:
    return error_response(500, "internal_error", "the server failed: see its log")


def install_error_handlers() -> dict[Any, Any]:
    return {
        ApiError: _api_error,
        HTTPException: _http_error,
        ActionSpecError: _core_error,
        ConnectorError: _core_error,
        PolicyError: _core_error,
        Exception: _internal,
    }
