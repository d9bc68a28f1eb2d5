"""What one request carries through the gateway: :class:`Flow`, :class:`Refusal`, :class:`Tunnel`.

At the bottom of the gateway's layers: every part of the request path reads and fills the
same flow (``pipeline`` decides on it, ``exchange`` forwards it, the hooks record it), so
it names no part above it. Its spans are a small :class:`Spans` protocol here, which
``tracing.FlowSpans`` implements; how a flow in flight is cut, :class:`Cut`.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentfirewall.connectors import ParsedAction
    from agentfirewall.content import Finding
    from agentfirewall.credentials.awschunked import ChunkResigner
    from agentfirewall.decisions import Decision
    from agentfirewall_proxy.entries import AgentEntry, ConnectorEntry
    from agentfirewall_proxy.scrub import Scrubber

__all__ = ["Abortable", "Cut", "Flow", "Refusal", "Spans", "Tunnel", "scrubber_of"]


class Abortable(Protocol):
    """A flow's upstream side, which a cut aborts: an ``UpstreamConnection``, or a
    passthrough tunnel's transport."""

    def abort(self) -> None: ...


class Spans(Protocol):
    """What the request path asks of a flow's spans (``tracing.FlowSpans``)."""

    #: The status the upstream answered with (an attribute of the request's span).
    upstream_status: int | None

    def hold_started(self) -> None: ...

    def control_calls(self) -> AbstractContextManager[None]: ...

    def hold_ended(self, outcome: str, approval_id: str | None) -> None: ...

    def inject(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]: ...

    def trace_id(self) -> str: ...


class Refusal(Exception):
    """A request refused before it reached any upstream (status, error code, message)."""

    def __init__(self, status: int, error: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


class Cut:
    """A flow's cut handle: one way to stop a flow in flight at once, whatever it waits on.

    The task serving the flow (``exchange``, a passthrough tunnel in ``connection``) makes it
    (``flow.cutter``) and attaches the flow's upstream side to it once there is one
    (``Gateway.attach``). The gateway cuts (the kill switch, its agent suspended or removed,
    a config it cannot apply, the control plane lost past ``--max-config-age``) with
    :meth:`cut`, which keeps the first reason (``Flow.cut_by``), aborts the upstream side
    (nothing more of the request reaches the upstream, not even bytes queued for it) and
    cancels the serving task wherever it waits: a token, the upstream connection opening
    (TCP or TLS), a budget reserved, the request's body read or sent, the response awaited
    or relayed. The task takes the cancellation back (:meth:`taken`) and answers the cut
    itself (``exchange._answer_cut``). A control-plane call the task waits for is not
    cancelled with the wait (``exchange._through``): its outcome would be lost.
    """

    __slots__ = ("_cancelled", "task", "upstream", "why")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        #: The task serving the flow, while a cut may cancel it (None once it answers).
        self.task = task
        #: The flow's upstream side, once it has one.
        self.upstream: Abortable | None = None
        #: Why it was cut (None: it was not).
        self.why: Refusal | None = None
        #: The task the cut cancelled, until it takes the cancellation back.
        self._cancelled: asyncio.Task[Any] | None = None

    def attach(self, upstream: Abortable) -> None:
        """`upstream` is the flow's upstream side now (aborted at once if it was cut)."""
        self.upstream = upstream
        if self.why is not None:
            upstream.abort()

    def cut(self, why: Refusal) -> None:
        """Stop the flow now, for `why` (a flow already cut keeps its first reason)."""
        if self.why is not None:
            return
        self.why = why
        if self.upstream is not None:
            self.upstream.abort()
        task = self.task
        # (a cut made by the serving task itself reaches it at its next check instead)
        if task is not None and task is not asyncio.current_task():
            self._cancelled = task
            task.cancel()

    def taken(self) -> bool:
        """In the serving task's ``except CancelledError``: True when the cut cancelled it,
        the cancellation then taken back (the task answers the cut, and no cut cancels it
        any more); False when something else cancels it too (the gateway stopping)."""
        task, self._cancelled = self._cancelled, None
        if task is None:
            return False
        self.task = None
        return task.uncancel() == 0

    def answering(self) -> None:
        """The serving task answers by itself from here on: a cut no longer cancels it."""
        self.task = None


@dataclass(slots=True, eq=False)
class Flow:
    """One request through the gateway: what was asked, decided, and answered."""

    request_id: str
    method: str
    scheme: str = "http"
    host: str = ""
    port: int = 0
    path: str = "/"
    query: str = ""
    agent: AgentEntry | None = None
    connector: ConnectorEntry | None = None
    parsed: ParsedAction | None = None
    decision: Decision | None = None
    status: int = 0
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    started: float = field(default_factory=time.monotonic)
    #: Set by the kill switch: a held flow is answered 403, a forwarding one is cut.
    killed: bool = False
    #: How a cut stops it while it is in flight (:class:`Cut`), made by the task serving it.
    cutter: Cut | None = None
    #: The client connection's ``written`` count when the flow began: more, and part of
    #: its answer went out (after which nothing else may be written: ``exchange._answer_cut``).
    written_before: int = 0
    #: The approval this flow is held for (``approvals.Holds``).
    approval_id: str | None = None
    #: The action type (kept when ``parsed`` is dropped to park a held request).
    action: str | None = None
    #: What an approval for this request binds (``bind_request``), once it is held.
    bound: dict[str, object] | None = None
    #: Injected secrets replaced in the response (``scrub.py``).
    scrubbed: int = 0
    #: The flow's spans when tracing is on (``tracing.py``), else None.
    trace: Spans | None = None
    #: Content detections in the request (``guard.py``; only when a policy reads them).
    findings: tuple[Finding, ...] = ()
    #: The request's content fields as the engine saw them (``content.secrets`` ...).
    content: dict[str, object] | None = None
    #: Detector names a ``redact`` rule replaces in the request body before forwarding.
    redact: frozenset[str] = frozenset()
    redacted: int = 0
    #: Content detections in the response, and what was done (flag, redact, cut).
    response_findings: int = 0
    #: The scrubber of a computed credential's tokens and the connector's static secrets
    #: (``injection.py``).
    scrubber: Scrubber | None = None
    #: Re-signs a signed aws-chunked body's chunks as they go (``injection.py``).
    body_signer: ChunkResigner | None = None
    #: The budget reservation to settle after the response (``budgets.py``).
    reservation: str | None = None
    #: A covering budget is settled from the response's LLM ``usage``.
    llm_budget: bool = False
    #: What the request spent from the gateway's leased budget slices (``budgetlease.py``).
    leased: list[tuple[Any, float]] | None = None
    #: The request was written upstream.
    sent: bool = False
    #: The status of the upstream's response head (0: none came): what the upstream did,
    #: whatever the agent then got (``status``: a body broken mid-way, a response the
    #: gateway cut or refused); a budget's spend counts by it (``budgets.py``).
    answered: int = 0
    #: The LLM ``usage`` and ``model`` read from the response (``llmusage.py``).
    usage: dict[str, Any] | None = None
    model: str | None = None
    #: ``budget.<name>.*`` values for policy conditions (``budgets.py``).
    budget_view: dict[str, object] | None = None
    #: The replayable decision input (``agentfirewall.policy.record``), once decided.
    input: dict[str, Any] | None = None
    #: A parked flow's parameters, kept for its budget reservation once approved.
    parameters: dict[str, Any] | None = None
    #: The grant that let a held request through without a human (``approvals.py``).
    grant_id: str | None = None
    #: When the gateway's own part ended (monotonic): the request about to go upstream, or
    #: the gateway's own answer about to be written; 0 until then (``traffic_record``).
    handed_off: float = 0.0
    #: When its approval hold began and ended (monotonic; ended 0 while it is held).
    hold: tuple[float, float] | None = None

    @property
    def cut_by(self) -> Refusal | None:
        """Why it was cut in flight (the kill switch, its agent deactivated, a config refused,
        the control plane lost): its answer while none of the upstream's went out."""
        cutter = self.cutter
        return cutter.why if cutter is not None else None

    @property
    def cut(self) -> str:
        """Why it was cut in flight, for its record ("": it was not; the kill switch's cut
        is recorded as `killed`)."""
        by = self.cut_by
        return f"{by.error}: {by.message}" if by is not None else ""


def scrubber_of(flow: Flow) -> Scrubber | None:
    """The injected credential's scrubber, for everything the response carries back: a
    computed credential's (``flow.scrubber``: every token sent for the connector that may
    still be valid, and its static secrets), else the connector's static secrets, those it
    injects and those it injected before a rotation (None: it injects nothing)."""
    if flow.scrubber is not None:
        return flow.scrubber
    return flow.connector.scrubber if flow.connector is not None else None


@dataclass(frozen=True, slots=True)
class Tunnel:
    """What a CONNECT fixed for every request inside it."""

    host: str
    port: int
    agent: AgentEntry
    #: The SHA-256 of the key the CONNECT carried: each request inside re-reads its agent
    #: from the current snapshot (a suspension or level change reaches open tunnels).
    key_hash: str
    #: None for a tunnel opened only to answer its requests with the gateway's refusal.
    connector: ConnectorEntry | None
