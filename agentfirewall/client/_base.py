"""What the sync and async clients share: configuration, request building, parsing.

:class:`BaseClient` holds every piece of logic that needs no I/O. Each public method of
:class:`~agentfirewall.AgentFirewall` and :class:`~agentfirewall.AsyncAgentFirewall` is
the same three steps: build a :class:`Call` here, send it (with retries) in the subclass,
parse the answer here.
"""

from __future__ import annotations

import math
import sys
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import JsonValue
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from agentfirewall._version import __version__
from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.client._args import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
    check_idempotency_key,
    check_number,
    check_url,
    path_id,
    shown_url,
)
from agentfirewall.client._retry import RetryPolicy, transport_error
from agentfirewall.client._wire import error_for_response
from agentfirewall.errors import (
    ActionSpecError,
    AgentFirewallError,
    APIError,
    ServerError,
    TokenError,
)
from agentfirewall.jsonlimits import json_problem, printable
from agentfirewall.jwks import JWKSCache, jwks_url_for

__all__ = [
    "MAX_ANSWER_BYTES",
    "AnswerBody",
    "BaseClient",
    "Call",
    "build_spec",
    "spec_from",
    "trace_headers",
]

DEFAULT_TIMEOUT = 30.0
#: The server caps one long-poll at 60 s (docs/api.md).
MAX_POLL_SECONDS = 60
#: Seconds a client waits before polling again when a server answers a long-poll early.
MIN_POLL_INTERVAL = 1.0
#: The most an answer may hold, decoded: 64 MiB. The largest a TameFlare server gives is an
#: action's state (``get_action``, the long-poll): its spec, within the 1 MiB request limit,
#: and an executed action's upstream answer, 1 MiB of text that JSON escaping can make 6 MiB.
#: More is not the server (a wrong ``base_url``, or a small gzip answer that inflates without
#: end), and reading it whole could take all the agent's memory: reading stops at the limit.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: The encodings a client asks for and decodes itself, each inflated a bounded piece at a
#: time (zlib's ``wbits``: a gzip header; a zlib or a gzip one). httpx's own decoders inflate
#: a whole network read at once, which for zstd can be a gigabyte from 32 KiB.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}
#: The most inflated at once: the memory an answer takes stays near its decoded size.
_PIECE = 1024 * 1024


def trace_headers() -> dict[str, str]:
    """The agent's current OpenTelemetry context (``traceparent``), when it uses OpenTelemetry.

    Never imports it: an agent that has not loaded ``opentelemetry.trace`` sends nothing, and
    the control plane's decision span has no parent.
    """
    if "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call, before any I/O. ``replay_safe`` governs retries (see _retry)."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    replay_safe: bool = True
    read_timeout: float | None = None
    #: False for a public document (the JWKS), which may be on another host.
    authorized: bool = True


def build_spec(
    action_type: str,
    *,
    provider: str | None = None,
    account: str | None = None,
    target: str | None = None,
    environment: str | None = None,
    parameters: Mapping[str, JsonValue] | None = None,
    risk_hints: Mapping[str, JsonValue] | None = None,
) -> ActionSpec:
    """The seed's keyword arguments as a validated ActionSpec (raises ActionSpecError)."""
    for name, value in (("parameters", parameters), ("risk_hints", risk_hints)):
        if value is not None and not isinstance(value, Mapping):
            raise ActionSpecError(
                f"invalid action spec: `{name}` must be a mapping (a dict of JSON values), "
                f"not {type(value).__name__}",
                field=name,
            )
        _check_json(name, value)
    resource = {
        "provider": provider,
        "account": account,
        "target": target,
        "environment": environment,
    }
    return parse_action_spec(
        {
            "type": action_type,
            "resource": {k: v for k, v in resource.items() if v is not None},
            "parameters": dict(parameters or {}),
            "risk_hints": dict(risk_hints or {}),
        }
    )


def _check_json(name: str, value: Mapping[str, JsonValue] | None) -> None:
    """What the spec's model would refuse in `value` (nesting past MAX_DEPTH, NaN, a lone
    surrogate), found without recursion first: past a few hundred levels the model's own
    recursive check words it "cyclic reference detected" under a path of 1,800 characters."""
    found = json_problem(dict(value or {}), check_ints=False)
    if found is not None:
        path, problem = found
        where = printable(f"{name}.{path}" if path else name, 120)
        raise ActionSpecError(f"invalid action spec: `{where}` {problem}", field=name)


#: The keyword arguments of request_action that make the spec (``ActionFields``).
_FIELDS = ("provider", "account", "target", "environment", "parameters", "risk_hints")


def spec_from(where: str, action_type: str, fields: Mapping[str, Any]) -> ActionSpec:
    """`build_spec` for a method taking ``**fields``: a misspelt keyword names `where`."""
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument `{unknown[0]}`: it takes "
            f"{', '.join(_FIELDS)}"
        )
    return build_spec(action_type, **fields)


class BaseClient:
    """Configuration and the pure half of every call."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        jwks_url: str | None = None,
    ) -> None:
        self._api_key = check_api_key(api_key)
        self.base_url = check_base_url(base_url)
        self.timeout = check_number(timeout, "timeout", minimum=0.001)
        self.retry_policy = RetryPolicy(
            max_retries=int(check_number(max_retries, "max_retries", minimum=0, integer=True)),
            backoff=check_number(retry_backoff, "retry_backoff", minimum=0),
        )
        example = jwks_url_for(DEFAULT_BASE_URL)
        self.jwks_url = (
            check_url(jwks_url, "`jwks_url`", example) if jwks_url is not None
            else jwks_url_for(self.base_url)
        )  # fmt: skip
        self._jwks = JWKSCache()

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(base_url={shown_url(self.base_url)!r})"

    @staticmethod
    def _check_transport(transport: object, expected: type, other: str) -> None:
        """A transport of the other client's kind fails at once, not at the first request."""
        if transport is not None and not isinstance(transport, expected):
            raise TypeError(
                f"`transport` must be an httpx.{expected.__name__} for this client, not "
                f"{type(transport).__name__}: {other}"
            )

    @property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "Accept-Encoding": ", ".join(_ENCODINGS),
            "User-Agent": f"agentfirewall-python/{__version__}",
        }

    @property
    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout)

    # -- building ---------------------------------------------------------------------

    @staticmethod
    def _action_call(spec: ActionSpec, idempotency_key: str | None) -> Call:
        key = (
            uuid.uuid4().hex if idempotency_key is None else check_idempotency_key(idempotency_key)
        )
        return Call(
            "POST",
            "/v1/actions",
            json={"action_spec": spec.to_dict()},
            headers={"Idempotency-Key": key},
        )

    @staticmethod
    def _dry_run_call(spec: ActionSpec) -> Call:
        return Call("POST", "/v1/actions/dry-run", json={"action_spec": spec.to_dict()})

    @staticmethod
    def _get_call(action_request_id: str) -> Call:
        return Call("GET", f"/v1/actions/{path_id(action_request_id)}")

    def _wait_call(self, action_request_id: str, seconds: int) -> Call:
        return Call(
            "GET",
            f"/v1/actions/{path_id(action_request_id)}/wait",
            params={"timeout": str(seconds)},
            read_timeout=seconds + self.timeout,
        )

    @staticmethod
    def _execute_call(action_request_id: str, decision_token: str | None) -> Call:
        path = f"/v1/actions/{path_id(action_request_id)}/execute"
        if decision_token is not None and not isinstance(decision_token, str):
            raise TokenError(
                f"the decision token must be a string (`result.decision_token`), not "
                f"{type(decision_token).__name__}",
                code="malformed",
            )
        if not decision_token:
            raise TokenError(
                f"no decision token for `{action_request_id}`: only an allowed or approved "
                "action can be executed (a held one: `wait_for_approval` gives the token)",
                code="missing_token",
            )
        return Call(
            "POST",
            path,
            json={"decision_token": decision_token},
            replay_safe=False,
        )

    def _jwks_call(self) -> Call:
        return Call("GET", self.jwks_url, authorized=False)  # public keys: no API key sent

    @staticmethod
    def _poll_seconds(remaining: float) -> int:
        """Whole seconds for the next long-poll: never past the caller's deadline."""
        return max(0, math.floor(min(MAX_POLL_SECONDS, remaining)))

    # -- sending helpers --------------------------------------------------------------

    def _request_kwargs(self, call: Call) -> dict[str, Any]:
        timeout = self._timeout
        if call.read_timeout is not None:
            timeout = httpx.Timeout(self.timeout, read=call.read_timeout)
        headers = {**call.headers, **trace_headers()}
        return {
            "params": call.params or None,
            "json": call.json,
            "headers": headers or None,
            "timeout": timeout,
        }

    def _retry_options(self, call: Call) -> dict[str, Any]:
        """tenacity arguments for one call: the policy's count, predicate and delays."""
        policy = self.retry_policy

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return policy.delay(exc, state.attempt_number)

        return {
            "stop": stop_after_attempt(policy.max_retries + 1),
            "retry": retry_if_exception(
                lambda e: policy.should_retry(e, replay_safe=call.replay_safe)
            ),
            "wait": wait,
            "reraise": True,
        }

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        """The request for `call`; refused on a closed client, without the key when public."""
        if http.is_closed:
            raise AgentFirewallError(
                f"this {type(self).__name__} is closed (`close()`, or its `with` block ended): "
                "make a new one"
            )
        request = http.build_request(call.method, call.path, **self._request_kwargs(call))
        if not call.authorized:
            del request.headers["Authorization"]
        return request

    def _transport_error(self, exc: httpx.TransportError) -> tuple[APIError, bool]:
        """Our error for an httpx one, and whether httpx's may be chained to it (False when
        its text holds the key, which a traceback would print)."""
        error = transport_error(exc, shown_url(self.base_url))
        if self._api_key not in str(error):
            return error, True
        return type(error)(str(error).replace(self._api_key, "[API key]")), False

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        """Raise the mapped error for a 3xx/4xx/5xx answer; return 2xx answers untouched."""
        if response.status_code < 300:
            return response
        if response.status_code < 400:
            raise _redirected(response)
        raise error_for_response(
            response.status_code, _decode(response), response.headers.get("Retry-After")
        )


class AnswerBody:
    """An answer's body as it arrives (`feed` each network read unless `complete`),
    decoded and capped: more than MAX_ANSWER_BYTES decoded, or an encoding the client did
    not ask for, is a ServerError (not retried) raised before more is read or inflated."""

    def __init__(self, response: httpx.Response, base_url: str) -> None:
        self._response = response
        self._url = shown_url(base_url)
        self._body = bytearray()
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        wbits = None if self.complete else _ENCODINGS.get(encoding)
        self._inflate = None if wbits is None else zlib.decompressobj(wbits)
        if self.complete:  # an in-process transport's answer: in memory, decoded already
            self._keep(response.content)
        elif encoding not in (*_ENCODINGS, "identity", ""):
            raise self._error(f"encoded with `{encoding[:40]}`, which the client does not read")

    @property
    def complete(self) -> bool:
        """True when the whole body came with the answer (an in-process transport's)."""
        return self._response.is_stream_consumed

    def _error(self, what: str) -> ServerError:
        return ServerError(
            f"the answer is {what}: is `{self._url}` the TameFlare server?",
            status_code=self._response.status_code,
            retryable=False,  # sending again would only get the same answer
        )

    def feed(self, raw: bytes) -> None:
        while raw:
            if self._inflate is None:
                piece, raw = raw, b""
            else:
                room = MAX_ANSWER_BYTES + 1 - len(self._body)
                try:
                    piece = self._inflate.decompress(raw, min(room, _PIECE))
                except zlib.error:
                    raise self._error("not readable: its compression is broken") from None
                raw = self._inflate.unconsumed_tail
            self._keep(piece)

    def _keep(self, piece: bytes) -> None:
        self._body += piece
        if len(self._body) > MAX_ANSWER_BYTES:
            self._body = bytearray()  # not kept alive by the error's traceback
            raise self._error(f"larger than {MAX_ANSWER_BYTES} bytes")

    def response(self) -> httpx.Response:
        """The answer with its decoded body read (and no longer encoded)."""
        if self._inflate is not None:
            self._keep(self._inflate.flush())
        headers = [
            (name, value)
            for name, value in self._response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(
            self._response.status_code,
            headers=headers,
            content=bytes(self._body),
            request=self._response.request,
        )


def _redirected(response: httpx.Response) -> APIError:
    """No redirect is followed (it would carry the key elsewhere): say where it pointed."""
    location = response.headers.get("Location")
    where = f" to `{shown_url(location)}`" if location else ""
    return APIError(
        f"the server answered HTTP {response.status_code}, a redirect{where}, which the client "
        f"does not follow: is `{shown_url(str(response.request.url))}` right? Point AAF_BASE_URL "
        "(`base_url`) at the API root itself",
        status_code=response.status_code,
    )


def _decode(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


def decode_json(response: httpx.Response) -> object:
    """The JSON body of a 2xx answer (a non-JSON body is the server's fault)."""
    try:
        return response.json()
    except ValueError:
        raise ServerError(
            f"unexpected answer from the server: not JSON (HTTP {response.status_code})",
            status_code=response.status_code,
        ) from None
