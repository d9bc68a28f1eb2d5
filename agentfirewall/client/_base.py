"""What the sync and async clients share: configuration, request building, parsing.

:class:`BaseClient` holds every piece of logic that needs no I/O. Each public method of
:class:`~agentfirewall.AgentFirewall` and :class:`~agentfirewall.AsyncAgentFirewall` is
the same three steps: build a :class:`Call` here, send it (with retries) in the subclass,
parse the answer here.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import JsonValue
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from agentfirewall._version import __version__
from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.client._retry import RetryPolicy, transport_error
from agentfirewall.client._wire import error_for_response
from agentfirewall.errors import APIError, AuthenticationError, ServerError, TokenError
from agentfirewall.jwks import JWKSCache, jwks_url_for

__all__ = ["DEFAULT_BASE_URL", "BaseClient", "Call", "build_spec", "trace_headers"]

DEFAULT_BASE_URL = "http://localhost:3000/api"
DEFAULT_TIMEOUT = 30.0
#: The server caps one long-poll at 60 s (docs/api.md).
MAX_POLL_SECONDS = 60
#: Seconds a client waits before polling again when a server answers a long-poll early.
MIN_POLL_INTERVAL = 1.0


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


def _path_id(action_request_id: str) -> str:
    return quote(action_request_id, safe="")


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
        key = api_key if api_key is not None else os.environ.get("AAF_API_KEY")
        if not key:
            raise AuthenticationError("no API key: pass `api_key=` or set AAF_API_KEY")
        self._api_key = key
        self.base_url = (base_url or os.environ.get("AAF_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries, backoff=retry_backoff)
        self.jwks_url = jwks_url or jwks_url_for(self.base_url)
        self._jwks = JWKSCache()

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": f"agentfirewall-python/{__version__}",
        }

    @property
    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout)

    # -- building ---------------------------------------------------------------------

    @staticmethod
    def _action_call(spec: ActionSpec, idempotency_key: str | None) -> Call:
        key = idempotency_key or uuid.uuid4().hex
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
        return Call("GET", f"/v1/actions/{_path_id(action_request_id)}")

    def _wait_call(self, action_request_id: str, seconds: int) -> Call:
        return Call(
            "GET",
            f"/v1/actions/{_path_id(action_request_id)}/wait",
            params={"timeout": str(seconds)},
            read_timeout=seconds + self.timeout,
        )

    @staticmethod
    def _execute_call(action_request_id: str, decision_token: str | None) -> Call:
        if not decision_token:
            raise TokenError(
                f"no decision token for `{action_request_id}`: only an allowed or approved "
                "action can be executed",
                code="missing_token",
            )
        return Call(
            "POST",
            f"/v1/actions/{_path_id(action_request_id)}/execute",
            json={"decision_token": decision_token},
            replay_safe=False,
        )

    def _jwks_call(self) -> Call:
        return Call("GET", self.jwks_url)

    @staticmethod
    def _poll_seconds(remaining: float) -> int:
        """Whole seconds for the next long-poll: never past the caller's deadline."""
        return max(0, min(MAX_POLL_SECONDS, math.floor(remaining)))

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

    def _transport_error(self, exc: httpx.TransportError) -> APIError:
        return transport_error(exc, self.base_url)

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        """Raise the mapped error for a 4xx/5xx answer; return 2xx answers untouched."""
        if response.status_code < 400:
            return response
        raise error_for_response(
            response.status_code, _decode(response), response.headers.get("Retry-After")
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
