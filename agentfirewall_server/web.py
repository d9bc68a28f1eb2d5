"""HTTP plumbing shared by every route: JSON errors, bounded bodies, strict models.

Every error leaves as ``{"error": code, "message": ..., ...}`` (docs/api.md).

Input limits (docs/api.md, "Input limits"): a body is at most ``max_body_bytes`` (413);
its JSON nests at most 64 levels and holds no lone surrogate and no NaN; integer fields fit
64 bits (400/422 naming the field); core errors escaping a route are the caller's (422), so
no input reaches the 500 handler.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from agentfirewall.errors import ActionSpecError, ConnectorError, PolicyError
from agentfirewall.jsonlimits import int_problem, json_problem, printable

__all__ = [
    "ApiError",
    "Strict",
    "error_response",
    "header",
    "install_error_handlers",
    "json_fast",
    "json_ok",
    "json_text",
    "parse_json",
    "parse_model",
    "read_body",
    "read_json",
    "read_model",
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
        self.extra = extra


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
    scope = request.scope
    first: dict[bytes, bytes] | None = scope.get("af.headers")
    if first is None:
        first = {}
        for key, value in scope["headers"]:
            if key not in first:
                first[key] = value
        scope["af.headers"] = first
    value = first.get(name)
    return None if value is None else value.decode("latin-1")


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


def _check_int_fields(value: Any, path: str = "") -> None:
    """Integer fields of a validated model fit 64 bits (``1e300`` is a valid int field).

    Free JSON (``JsonValue`` fields) is left alone: it is stored as text.
    """
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            if "JsonValue" not in str(info.annotation):
                _check_int_fields(getattr(value, name), f"{path}.{name}".lstrip("."))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_int_fields(item, f"{path}.{i}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_int_fields(item, f"{path}.{key}")
    elif isinstance(value, int) and not isinstance(value, bool):
        problem = int_problem(value)
        if problem is not None:
            raise ApiError(422, f"`{path}` {problem}", field=path)


def validation_error(exc: PydanticValidationError) -> ApiError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        message = f"unknown field `{loc}`"
    elif kind == "missing":
        message = f"missing field `{loc}`"
    else:
        ctx_error = (first.get("ctx") or {}).get("error")
        detail = str(ctx_error) if ctx_error else first["msg"]
        message = f"invalid `{loc}`: {detail}" if loc else detail
    return ApiError(422, message, field=loc or None)


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
        raise validation_error(exc) from None
    except RecursionError:
        raise ApiError(400, "request body nests too deeply") from None
    _check_int_fields(parsed)
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
