"""``AgentFirewall``: the synchronous client. Only I/O lives here; see ``_base``."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack

import httpx
from pydantic import JsonValue
from tenacity import Retrying

from agentfirewall.client._args import check_seconds
from agentfirewall.client._base import (
    DEFAULT_TIMEOUT,
    MIN_POLL_INTERVAL,
    AnswerBody,
    BaseClient,
    Call,
    build_spec,
    decode_json,
    spec_from,
)
from agentfirewall.client._guard import ActionFields, approval_error, approved_result, denial
from agentfirewall.client._models import (
    ActionResult,
    ActionState,
    ApprovalOutcome,
    DryRunResult,
    ExecutionResult,
    NotApproved,
)
from agentfirewall.client._wire import (
    parse_action_result,
    parse_action_state,
    parse_dry_run,
    parse_execution,
    parse_wait,
)
from agentfirewall.decisions import Decision
from agentfirewall.errors import TokenError
from agentfirewall.jwks import verify_with_jwks
from agentfirewall.tokens import DecisionClaims

__all__ = ["AgentFirewall", "Guard"]

P = ParamSpec("P")
R = TypeVar("R")


class AgentFirewall(BaseClient):
    """Ask a TameFlare server before an agent acts (synchronous).

    ``AgentFirewall(api_key=..., base_url=...)``; both default from ``AAF_API_KEY`` and
    ``AAF_BASE_URL`` (then ``http://localhost:3000/api``). ``transport`` takes any
    ``httpx.BaseTransport`` (for tests: :class:`agentfirewall.testing.FirewallTransport`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        jwks_url: str | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            jwks_url=jwks_url,
        )
        self._check_transport(
            transport, httpx.BaseTransport, "AsyncAgentFirewall takes an AsyncBaseTransport"
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers,
            timeout=self._timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentFirewall:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- actions ----------------------------------------------------------------------

    def request_action(
        self,
        action_type: str,
        *,
        provider: str | None = None,
        account: str | None = None,
        target: str | None = None,
        environment: str | None = None,
        parameters: Mapping[str, JsonValue] | None = None,
        risk_hints: Mapping[str, JsonValue] | None = None,
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Ask for a decision; the action is recorded. A deny is data (``.status``)."""
        spec = build_spec(
            action_type,
            provider=provider,
            account=account,
            target=target,
            environment=environment,
            parameters=parameters,
            risk_hints=risk_hints,
        )
        response = self._send(self._action_call(spec, idempotency_key))
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return parse_action_result(decode_json(response), replayed=replayed)

    def dry_run(self, action_type: str, **fields: Unpack[ActionFields]) -> DryRunResult:
        """What the firewall would answer, and why; nothing is recorded."""
        spec = spec_from("dry_run", action_type, fields)
        return parse_dry_run(decode_json(self._send(self._dry_run_call(spec))))

    def check(self, action_type: str, **fields: Unpack[ActionFields]) -> Decision:
        """``request_action(...).decision``: call ``.raise_for_denial()`` on it to enforce."""
        return self.request_action(action_type, **fields).decision

    def guard(
        self,
        action_type: str,
        *,
        approval_timeout: float = 300.0,
        **fields: Unpack[ActionFields],
    ) -> Guard:
        """A context manager (and decorator) that lets its block run only when allowed."""
        spec_from("guard", action_type, fields)  # a bad type or field fails here, not at first use
        return Guard(self, action_type, check_seconds(approval_timeout, "approval_timeout"), fields)

    def get_action(self, action_request_id: str) -> ActionState:
        return parse_action_state(decode_json(self._send(self._get_call(action_request_id))))

    def wait_for_approval(
        self, action_request_id: str, timeout_seconds: float = 300.0
    ) -> ApprovalOutcome:
        """Long-poll until a human decides or `timeout_seconds` pass.

        Returns :class:`Approved` (truthy, ``.decision_token``) or :class:`NotApproved`
        (falsy; ``.status`` is ``denied``, ``expired`` or ``timeout``).
        """
        return self._wait_for_approval(action_request_id, timeout_seconds, threading.Event())

    def _wait_for_approval(
        self, action_request_id: str, timeout_seconds: float, abandoned: threading.Event
    ) -> ApprovalOutcome:
        """`wait_for_approval`, which ends at its next poll once `abandoned` is set (its
        caller gave up: a cancelled tool call waiting in a worker thread)."""
        deadline = time.monotonic() + check_seconds(timeout_seconds, "timeout_seconds")
        while not abandoned.is_set():
            remaining = deadline - time.monotonic()
            seconds = self._poll_seconds(remaining)
            if seconds == 0 and remaining > 0:  # the last fraction of a second
                abandoned.wait(remaining)
            started = time.monotonic()
            outcome = parse_wait(
                decode_json(self._send(self._wait_call(action_request_id, seconds)))
            )
            if outcome is not None:
                return outcome
            if seconds == 0 or deadline - time.monotonic() <= 0:
                return NotApproved(
                    action_request_id, "timeout", f"no decision within {timeout_seconds:g} seconds"
                )
            if time.monotonic() - started < seconds / 2:  # a server that answers early
                abandoned.wait(min(MIN_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        return NotApproved(action_request_id, "timeout", "the caller stopped waiting")

    def execute(self, action_request_id: str, decision_token: str | None) -> ExecutionResult:
        """Mode A: the server performs the allowed action with its vaulted credential.

        `decision_token` is the allowed result's (or the approval's); ``None`` raises
        TokenError without a request, so ``execute(r.action_request_id, r.decision_token)``
        is safe to write.
        """
        call = self._execute_call(action_request_id, decision_token)
        return parse_execution(decode_json(self._send(call)))

    def verify_decision_token(
        self,
        token: str,
        *,
        action_request_id: str | None = None,
        action_hash: str | None = None,
        agent: str | None = None,
    ) -> DecisionClaims:
        """Check a decision token offline against the server's JWKS (cached); each binding
        given (action id, action hash, agent name) must match (TokenError)."""
        now = time.monotonic()
        document = self._jwks.current(now) or self._fetch_jwks(now)
        try:
            return verify_with_jwks(
                token,
                document,
                now=int(time.time()),
                action_request_id=action_request_id,
                action_hash=action_hash,
                agent=agent,
            )
        except TokenError as exc:
            if exc.code != "bad_signature" or not self._jwks.may_refresh(now):
                raise
        return verify_with_jwks(
            token,
            self._fetch_jwks(now),
            now=int(time.time()),
            action_request_id=action_request_id,
            action_hash=action_hash,
            agent=agent,
        )

    # -- I/O --------------------------------------------------------------------------

    def _fetch_jwks(self, now: float) -> dict[str, Any]:
        return self._jwks.store(decode_json(self._send(self._jwks_call())), now)

    def _send(self, call: Call) -> httpx.Response:
        retrying = Retrying(**self._retry_options(call))
        return retrying(self._send_once, call)

    def _send_once(self, call: Call) -> httpx.Response:
        request = self._build(self._http, call)
        try:
            response = self._http.send(request, stream=True)
            try:  # read a piece at a time: an answer past MAX_ANSWER_BYTES stops the reading
                body = AnswerBody(response, self.base_url)
                if not body.complete:
                    for raw in response.iter_raw():
                        body.feed(raw)
            finally:
                response.close()
        except httpx.TransportError as exc:
            error, chain = self._transport_error(exc)
            raise error from (exc if chain else None)
        return self._check(body.response())


class Guard:
    """``with firewall.guard(...) as result:`` or ``@firewall.guard(...)``.

    Entering asks the firewall; a deny raises ActionDenied, a hold waits up to
    `approval_timeout` seconds and raises ApprovalError unless approved.
    """

    def __init__(
        self,
        firewall: AgentFirewall,
        action_type: str,
        approval_timeout: float,
        fields: ActionFields,
    ) -> None:
        self._firewall, self._type = firewall, action_type
        self._timeout, self._fields = approval_timeout, fields

    def __enter__(self) -> ActionResult:
        result = self._firewall.request_action(self._type, **self._fields)
        if result.status == "denied":
            raise denial(result, self._type)
        if result.status == "pending_approval":
            outcome = self._firewall.wait_for_approval(result.action_request_id, self._timeout)
            if not outcome:
                raise approval_error(outcome)
            return approved_result(result, outcome)
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"`{getattr(func, '__name__', func)}` is a coroutine function: guard it with an "
                "AsyncAgentFirewall's guard (this one would block the event loop while it waits)"
            )

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return func(*args, **kwargs)

        return guarded
