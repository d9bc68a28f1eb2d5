"""``AsyncAgentFirewall``: the asynchronous client. Only I/O lives here; see ``_base``."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack

import anyio
import httpx
from pydantic import JsonValue
from tenacity import AsyncRetrying

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
from agentfirewall.errors import AgentFirewallError, TokenError
from agentfirewall.jwks import verify_with_jwks
from agentfirewall.tokens import DecisionClaims

__all__ = ["AsyncAgentFirewall", "AsyncGuard"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncAgentFirewall(BaseClient):
    """Ask a TameFlare server before an agent acts (asynchronous; the same methods, awaited).

    ``AsyncAgentFirewall(api_key=..., base_url=...)``; both default from ``AAF_API_KEY`` and
    ``AAF_BASE_URL`` (then ``http://localhost:3000/api``). ``transport`` takes any
    ``httpx.AsyncBaseTransport`` (for tests: :class:`agentfirewall.testing.FirewallTransport`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
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
            transport, httpx.AsyncBaseTransport, "AgentFirewall takes a BaseTransport"
        )
        self._transport = transport
        self._http = self._connection_pool()
        #: the event loop the client's connections belong to (see `_http_on_this_loop`)
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._moved = False  # the caller's transport was used on another event loop

    def _connection_pool(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=self._timeout,
            transport=self._transport,
        )

    def _http_on_this_loop(self) -> httpx.AsyncClient:
        """The HTTP client for the running asyncio event loop. The client's own connections
        belong to the loop that opened them: on a new loop once that one is closed
        (``asyncio.run`` twice) they are opened anew (the old ones cannot be used, nor
        closed, from another loop); on two loops at once (two threads) the client refuses.
        A transport of the caller's is the caller's to keep working (`_send_once` words
        its failure)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (another async library: trio)
            return self._http
        used_on = self._loop() if self._loop is not None else None
        if used_on is loop or self._http.is_closed:
            return self._http
        if self._loop is not None:
            if self._transport is not None:
                self._moved = True
            elif used_on is not None and not used_on.is_closed():
                raise AgentFirewallError(
                    f"this {type(self).__name__} is in use on another event loop (another "
                    "thread's): make one client per event loop"
                )
            else:
                self._http = self._connection_pool()
        self._loop = weakref.ref(loop)
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAgentFirewall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- actions ----------------------------------------------------------------------

    async def request_action(
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
        response = await self._send(self._action_call(spec, idempotency_key))
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return parse_action_result(decode_json(response), replayed=replayed)

    async def dry_run(self, action_type: str, **fields: Unpack[ActionFields]) -> DryRunResult:
        """What the firewall would answer, and why; nothing is recorded."""
        spec = spec_from("dry_run", action_type, fields)
        return parse_dry_run(decode_json(await self._send(self._dry_run_call(spec))))

    async def check(self, action_type: str, **fields: Unpack[ActionFields]) -> Decision:
        """``request_action(...).decision``: call ``.raise_for_denial()`` on it to enforce."""
        return (await self.request_action(action_type, **fields)).decision

    def guard(
        self,
        action_type: str,
        *,
        approval_timeout: float = 300.0,
        **fields: Unpack[ActionFields],
    ) -> AsyncGuard:
        """An async context manager (and decorator) that lets its block run only when allowed."""
        spec_from("guard", action_type, fields)  # a bad type or field fails here, not at first use
        timeout = check_seconds(approval_timeout, "approval_timeout")
        return AsyncGuard(self, action_type, timeout, fields)

    async def get_action(self, action_request_id: str) -> ActionState:
        return parse_action_state(decode_json(await self._send(self._get_call(action_request_id))))

    async def wait_for_approval(
        self, action_request_id: str, timeout_seconds: float = 300.0
    ) -> ApprovalOutcome:
        """Long-poll until a human decides or `timeout_seconds` pass.

        Returns :class:`Approved` (truthy, ``.decision_token``) or :class:`NotApproved`
        (falsy; ``.status`` is ``denied``, ``expired`` or ``timeout``).
        """
        deadline = time.monotonic() + check_seconds(timeout_seconds, "timeout_seconds")
        while True:
            remaining = deadline - time.monotonic()
            seconds = self._poll_seconds(remaining)
            if seconds == 0 and remaining > 0:  # the last fraction of a second
                await anyio.sleep(remaining)
            started = time.monotonic()
            response = await self._send(self._wait_call(action_request_id, seconds))
            outcome = parse_wait(decode_json(response))
            if outcome is not None:
                return outcome
            if seconds == 0 or deadline - time.monotonic() <= 0:
                return NotApproved(
                    action_request_id, "timeout", f"no decision within {timeout_seconds:g} seconds"
                )
            if time.monotonic() - started < seconds / 2:  # a server that answers early
                await anyio.sleep(min(MIN_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))

    async def execute(self, action_request_id: str, decision_token: str | None) -> ExecutionResult:
        """Mode A: the server performs the allowed action with its vaulted credential.

        `decision_token` is the allowed result's (or the approval's); ``None`` raises
        TokenError without a request, so ``execute(r.action_request_id, r.decision_token)``
        is safe to write.
        """
        call = self._execute_call(action_request_id, decision_token)
        return parse_execution(decode_json(await self._send(call)))

    async def verify_decision_token(
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
        document = self._jwks.current(now) or await self._fetch_jwks(now)
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
            await self._fetch_jwks(now),
            now=int(time.time()),
            action_request_id=action_request_id,
            action_hash=action_hash,
            agent=agent,
        )

    # -- I/O --------------------------------------------------------------------------

    async def _fetch_jwks(self, now: float) -> dict[str, Any]:
        return self._jwks.store(decode_json(await self._send(self._jwks_call())), now)

    async def _send(self, call: Call) -> httpx.Response:
        retrying = AsyncRetrying(sleep=anyio.sleep, **self._retry_options(call))
        return await retrying(self._send_once, call)

    async def _send_once(self, call: Call) -> httpx.Response:
        http = self._http_on_this_loop()
        request = self._build(http, call)
        try:
            response = await http.send(request, stream=True)
            try:  # read a piece at a time: an answer past MAX_ANSWER_BYTES stops the reading
                body = AnswerBody(response, self.base_url)
                if not body.complete:
                    async for raw in response.aiter_raw():
                        body.feed(raw)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            error, chain = self._transport_error(exc)
            raise error from (exc if chain else None)
        except RuntimeError as exc:
            if not self._moved:
                raise
            raise AgentFirewallError(
                f"the transport given to this {type(self).__name__} failed on a new event "
                f"loop ({type(exc).__name__}: {exc}): make the transport and the client "
                "inside the event loop that uses them"
            ) from exc
        return self._check(body.response())


class AsyncGuard:
    """``async with firewall.guard(...) as result:`` or ``@firewall.guard(...)`` on a coroutine.

    Entering asks the firewall; a deny raises ActionDenied, a hold waits up to
    `approval_timeout` seconds and raises ApprovalError unless approved.
    """

    def __init__(
        self,
        firewall: AsyncAgentFirewall,
        action_type: str,
        approval_timeout: float,
        fields: ActionFields,
    ) -> None:
        self._firewall, self._type = firewall, action_type
        self._timeout, self._fields = approval_timeout, fields

    async def __aenter__(self) -> ActionResult:
        result = await self._firewall.request_action(self._type, **self._fields)
        if result.status == "denied":
            raise denial(result, self._type)
        if result.status == "pending_approval":
            outcome = await self._firewall.wait_for_approval(
                result.action_request_id, self._timeout
            )
            if not outcome:
                raise approval_error(outcome)
            return approved_result(result, outcome)
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"`{getattr(func, '__name__', func)}` is not a coroutine function (`async def`): "
                "guard it with an AgentFirewall's guard, or `async with firewall.guard(...)`"
            )

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await func(*args, **kwargs)

        return guarded
